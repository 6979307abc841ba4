"""Local Kafka, PostgreSQL, Cassandra and Temporal as plain processes, for development and CI.

`eventmart stack up|down|status` on the command line; from Python (pytest fixtures)::

    from eventmart import stack

    addresses = stack.up(["kafka", "postgres"], data_dir=tmp)  # {"kafka": "127.0.0.1:9092", ...}
    ...
    stack.down(data_dir=tmp)

Each engine lives in `<data_dir>/stack/<engine>/`: its data, generated configuration, a pid
file and one log file. Importing this package starts and connects nothing.
"""

from eventmart.stack.api import ENGINES, down, engine, settings_environment, stack_dir, status, up
from eventmart.stack.base import EngineStatus, StackError

__all__ = [
    "ENGINES",
    "EngineStatus",
    "StackError",
    "down",
    "engine",
    "settings_environment",
    "stack_dir",
    "status",
    "up",
]
