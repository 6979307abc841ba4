"""The `eventmart` command line: one entry point for running, operating and checking the shop."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import TextColumn
from rich.table import Table

from eventmart.platform.schemas.cli import schemas_app
from eventmart.platform.settings import Settings
from eventmart.stack.cli import stack_app

app = typer.Typer(
    no_args_is_help=True,
    help="eventmart: an e-commerce backend built as event-driven microservices.",
    pretty_exceptions_show_locals=False,
)
app.add_typer(schemas_app, name="schemas")
app.add_typer(stack_app, name="stack")
dlq_app = typer.Typer(no_args_is_help=True, help="Dead letters: list them and redrive them.")
app.add_typer(dlq_app, name="dlq")
users_app = typer.Typer(no_args_is_help=True, help="Accounts.")
app.add_typer(users_app, name="users")

console = Console()

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where eventmart keeps its files [default: ./.eventmart]."),
]
ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", help="embedded (SQLite, one machine) or distributed (Kafka, ...)."),
]


def load_settings(data_dir: Path | None = None, profile: str | None = None) -> Settings:
    """Settings from the environment, overridden by the command's options."""
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if profile is not None:
        if profile not in ("embedded", "distributed"):
            raise typer.BadParameter("choose 'embedded' or 'distributed'", param_hint="--profile")
        overrides["profile"] = profile
    return Settings(**overrides)


def _platform(data_dir: Path | None, profile: str | None) -> Any:
    from eventmart.platform.infra import Platform

    return Platform(load_settings(data_dir, profile))


@dlq_app.command("list")
def dlq_list(
    group: Annotated[str | None, typer.Option(help="Only this consumer group.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    data_dir: DataDir = None,
    profile: ProfileOpt = None,
) -> None:
    """List dead letters with the reason each failed."""
    from eventmart.platform.dlq import DeadLetters

    letters = DeadLetters(_platform(data_dir, profile).bus).list(group)
    if as_json:
        console.print_json(json.dumps([d.as_dict() for d in letters]))
        return
    table = Table(title=f"{len(letters)} dead letter(s)")
    for col in ("id", "group", "type", "key", "attempts", "reason", "redriven"):
        table.add_column(col)
    for d in letters:
        table.add_row(
            d.id,
            d.group,
            d.message_type,
            d.key,
            str(d.attempts),
            d.reason,
            "yes" if d.redriven else "",
        )
    console.print(table)


@dlq_app.command("redrive")
def dlq_redrive(
    letter_id: Annotated[
        str | None, typer.Argument(help="The dead letter's id (see `list`).")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every dead letter not yet redriven.")
    ] = False,
    group: Annotated[str | None, typer.Option(help="With --all: only this group.")] = None,
    data_dir: DataDir = None,
    profile: ProfileOpt = None,
) -> None:
    """Send dead letters back to the consumer group that failed them."""
    from eventmart.platform.dlq import DeadLetterNotFoundError, DeadLetters

    letters = DeadLetters(_platform(data_dir, profile).bus)
    if all_:
        ids = [d.id for d in letters.list(group) if not d.redriven]
    elif letter_id:
        ids = [letter_id]
    else:
        raise typer.BadParameter("give a dead letter id, or --all")
    for i in ids:
        try:
            letters.redrive(i)
        except DeadLetterNotFoundError as e:
            console.print(f"[red]{e}[/red]; `eventmart dlq list` shows the ids")
            raise typer.Exit(1) from e
        console.print(f"redriven {i}")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="The account's e-mail address.")],
    password: Annotated[str, typer.Option(help="At least 8 characters.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "Administrator",
    admin: Annotated[bool, typer.Option("--admin", help="Make it an administrator.")] = False,
    data_dir: DataDir = None,
    profile: ProfileOpt = None,
) -> None:
    """Create an account (works whether or not the shop is running)."""
    from eventmart.services.identity.domain import IdentityError
    from eventmart.services.identity.service import create_user_offline

    platform = _platform(data_dir, profile)
    try:
        user = create_user_offline(platform, email, password, name, admin=admin)
    except IdentityError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from e
    finally:
        platform.close()
    console.print(f"created {user.role} {user.email} ({user.user_id})")


@app.command()
def replay(
    projection: Annotated[
        str, typer.Argument(help="The read model to rebuild: orders or products.")
    ],
    data_dir: DataDir = None,
    profile: ProfileOpt = None,
) -> None:
    """Rebuild a read model from the log (the shop may keep running meanwhile)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from eventmart.readside.replay import replay as run_replay
    from eventmart.readside.views import UnknownProjectionError

    platform = _platform(data_dir, profile)
    try:
        with Progress(
            TextColumn("[bold]replaying {task.fields[name]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("replay", total=None, name=projection)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = run_replay(platform, projection, progress)
    except UnknownProjectionError as e:
        raise typer.BadParameter(str(e), param_hint="PROJECTION") from e
    finally:
        platform.close()
    console.print(
        f"{result.projection} rebuilt as generation {result.generation} "
        f"(group {result.group}): {result.messages} messages in {result.seconds:.1f}s"
    )


@app.command()
def migrate(
    service: Annotated[
        str | None,
        typer.Option("--service", help="Only this service's database (or 'registry')."),
    ] = None,
    status: Annotated[
        bool,
        typer.Option(
            "--status",
            help="Show each database's revision and head only; exit 1 if any is behind.",
        ),
    ] = False,
    data_dir: DataDir = None,
    profile: ProfileOpt = None,
) -> None:
    """Upgrade every service database and the registry's to the latest migrations.

    Services also do this when they start; run it first to see a long migration through,
    or to check (--status) what a deployment would change: it exits 1 when a database is
    behind or not created yet, so a deploy script can stop there."""
    from eventmart.platform.infra import Platform
    from eventmart.platform.migrations import REGISTRY, MigrationError, Migrations, database_name
    from eventmart.services import SERVICE_INDEX, build_service

    names = [*SERVICE_INDEX, REGISTRY]
    if service is not None and service not in names:
        raise typer.BadParameter(f"choose one of {', '.join(names)}", param_hint="--service")
    settings = load_settings(data_dir, profile)
    platform = Platform(settings)
    table = Table(title="migrations" + (" (status)" if status else ""))
    pending = 0
    for col in ("service", "database", "revision", *(["head"] if status else []), "state"):
        table.add_column(col)
    try:
        for name in [service] if service else names:
            if name == REGISTRY:
                if settings.schema_registry_url:
                    continue  # an external registry keeps its own storage
                db = platform.database(REGISTRY)
                migrations, store = Migrations(db, [REGISTRY]), None
            else:
                store = build_service(name, platform).store
                if store is None:
                    continue
                migrations = store.migrations
            heads = ", ".join(migrations.heads())
            if status:
                found = migrations.status()
                current = "" if found.current is None else ", ".join(found.current) or "none"
                state = (
                    "not created"
                    if found.current is None
                    else "up to date"
                    if found.up_to_date
                    else "behind"
                )
                pending += state != "up to date"
            else:
                outcome = migrations.upgrade() if store is None else store.migrate()
                current = ", ".join(outcome.after)
                if outcome.stamped:
                    state = f"stamped {', '.join(outcome.stamped)} (made before migrations)"
                elif not outcome.changed:
                    state = "up to date"
                else:
                    state = f"upgraded from {', '.join(outcome.before) or 'empty'}"
            where = database_name(migrations.db.url)
            table.add_row(name, where, current, *([heads] if status else []), state)
    except MigrationError as e:
        console.print(table)
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from e
    finally:
        platform.close()
    console.print(table)
    if pending:
        console.print(f"{pending} database(s) to migrate: run `eventmart migrate`.")
        raise typer.Exit(1)


@app.command()
def lag(
    group: Annotated[str | None, typer.Option(help="Only this consumer group.")] = None,
    data_dir: DataDir = None,
    profile: ProfileOpt = None,
) -> None:
    """Consumer lag per group and partition."""
    rows = _platform(data_dir, profile).bus.lag(group)
    table = Table(title="consumer lag")
    for col in ("group", "topic", "partition", "committed", "end", "lag", "owner"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.group,
            r.topic,
            str(r.partition),
            str(r.committed),
            str(r.end_offset),
            str(r.lag),
            r.owner or "",
        )
    console.print(table)


@app.command()
def up(
    instances: Annotated[
        list[str] | None,
        typer.Option("--instances", help="Run N processes of a service, e.g. ordering=2."),
    ] = None,
    data_dir: DataDir = None,
    profile: ProfileOpt = None,
) -> None:
    """Run the whole shop: every service, both gateways, the schema registry."""
    from eventmart.supervisor import Supervisor, SupervisorError, parse_instances

    settings = load_settings(data_dir, profile)
    try:
        counts = parse_instances(instances or [])
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--instances") from e
    email, password = ensure_admin(settings)
    supervisor = Supervisor(settings, counts)
    try:
        supervisor.start()
    except SupervisorError as e:
        supervisor.stop()
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from e
    except KeyboardInterrupt:
        console.print("\nstopping eventmart ...")
        supervisor.stop()
        raise typer.Exit(130) from None
    s = settings
    console.print(
        f"\n[bold green]eventmart is up[/bold green] ({s.profile} profile, data in {s.data_dir})\n"
        f"  storefront     http://{s.host}:{s.web_port}\n"
        f"  ops console    http://{s.host}:{s.web_port}/ops\n"
        f"  web API docs   http://{s.host}:{s.web_port}/docs\n"
        f"  mobile API     http://{s.host}:{s.mobile_port}/docs\n"
        f"  registry       http://{s.host}:{s.registry_port}/subjects\n"
        f"  admin login    {email} / {password}  (kept in {s.data_dir / 'admin-credentials'})\n"
        f"  logs           {s.data_dir / 'logs'}\n"
        "Ctrl-C stops everything."
    )
    supervisor.run_forever()


def ensure_admin(settings: Settings) -> tuple[str, str]:
    """On first start, create an administrator with a random password, kept 0600."""
    import secrets

    from eventmart.platform.infra import Platform
    from eventmart.services.identity.service import create_user_offline

    path = settings.path("admin-credentials")
    if path.exists():
        email, _, password = path.read_text().strip().partition(" ")
        return email, password
    email, password = "admin@eventmart.example", secrets.token_urlsafe(12)
    platform = Platform(settings)
    try:
        create_user_offline(platform, email, password, "Administrator", admin=True)
    finally:
        platform.close()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{email} {password}\n")
    return email, password


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help="The service to run in this process.")],
    port: Annotated[int | None, typer.Option(help="Port [default: from settings].")] = None,
    data_dir: DataDir = None,
    profile: ProfileOpt = None,
) -> None:
    """Run one service (its API, consumers, outbox relay and timers) until stopped."""
    from eventmart.platform.infra import Platform
    from eventmart.platform.runtime import ServiceRuntime
    from eventmart.services import SERVICE_INDEX, build_service

    settings = load_settings(data_dir, profile)
    platform = Platform(settings)
    if service in ("web", "mobile"):
        from eventmart.edge.app import create_bff
        from eventmart.platform.runtime import serve_http

        default = settings.web_port if service == "web" else settings.mobile_port
        kind: Literal["web", "mobile"] = "web" if service == "web" else "mobile"
        serve_http(
            create_bff(kind, platform),
            settings.host,
            port or default,
            settings.gc_young_threshold,
        )
        return
    if service not in SERVICE_INDEX:
        choices = ", ".join([*SERVICE_INDEX, "web", "mobile"])
        raise typer.BadParameter(f"choose one of {choices}", param_hint="SERVICE")
    runtime = ServiceRuntime(build_service(service, platform), platform)
    runtime.serve(settings.host, port or settings.port_base + SERVICE_INDEX[service])


@app.command("serve-registry")
def serve_registry(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8081,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    data_dir: DataDir = None,
    profile: ProfileOpt = None,
) -> None:
    """Serve the schema registry's Confluent-compatible REST API."""
    import uvicorn

    from eventmart.platform.runtime import install_service_defaults
    from eventmart.platform.schemas.rest import create_app

    platform = _platform(data_dir, profile)
    api = create_app(platform.registry)
    install_service_defaults(api, "registry", None)
    uvicorn.run(api, host=host, port=port, log_level="warning")


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    app()
