"""The `eventmart` command line."""

import typer

app = typer.Typer(no_args_is_help=True, help="eventmart: event-driven e-commerce backend.")


def main() -> None:
    app()
