"""`python -m eventmart` is the `eventmart` command (used by `eventmart up` for its children)."""

from eventmart.cli import main

main()
