"""`make bench`: every benchmark in sequence, a table of the figures, and the results section
of docs/benchmarks.md rewritten with them.

    python -m bench                         # the embedded profile's figures (~8 min)
    python -m bench --quick                 # a short run of the same
    python -m bench --only bus --only relay
    python -m bench --no-write              # print, leave docs/benchmarks.md alone
    python -m bench --profile distributed   # Kafka / PostgreSQL / Cassandra figures
    python -m bench --all                   # both profiles

The distributed figures use the engines of `eventmart stack up --data-dir
/var/tmp/bench-stack` (`--stack-dir`): those already running there are used as they are,
the missing ones are started through `eventmart.stack` and stopped again at the end
(unless `--keep-stack`).

A benchmark is not a test: it prints figures and ratios against baselines run beside it
in the same process, and marks which figures meet the floors the issue asked for. A piece
that cannot run says why ("not measured: ...") and the others go on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from bench.common import (
    CPU_HEADER,
    TABLE_HEADER,
    BenchResult,
    Context,
    Figure,
    Floor,
    Measure,
    cpu_rows,
    load_average,
    machine,
    table_rows,
)

BENCHMARKS = ["event_store", "bus", "relay", "projection", "checkout"]
DISTRIBUTED = ["kafka_bus", "relay_postgres_kafka", "checkout_distributed"]
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
START = "<!-- results:start -->"
END = "<!-- results:end -->"
STACK_DIR = Path("/var/tmp/bench-stack")

console = Console()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="eventmart's benchmarks: figures and ratios against baselines.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller workloads, one round")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS + DISTRIBUTED)}",
    )
    parser.add_argument("--no-write", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument(
        "--profile",
        choices=["embedded", "distributed", "all"],
        default="embedded",
        help="which profile's figures to measure [default: embedded]",
    )
    parser.add_argument("--all", action="store_true", help="both profiles (--profile all)")
    parser.add_argument("--distributed", action="store_true", help="same as --profile distributed")
    parser.add_argument(
        "--stack-dir",
        type=Path,
        default=STACK_DIR,
        help=f"data dir of the engines (eventmart stack up --data-dir) [default: {STACK_DIR}]",
    )
    parser.add_argument(
        "--port-offset",
        type=int,
        default=0,
        help="port offset for engines the bench has to start [default: 0]",
    )
    parser.add_argument(
        "--keep-stack", action="store_true", help="leave running the engines the bench started"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--json", type=Path, help="also write every sample to this JSON file")
    parser.add_argument(
        "--profile-dir",
        type=Path,
        help="record py-spy profiles (--gil: Python CPU) of every shop process during each "
        "checkout window here",
    )
    args = parser.parse_args(argv)
    if args.profile_dir is not None and importlib.import_module("bench.checkout").py_spy() is None:
        parser.error(
            "--profile-dir needs py-spy, on PATH or in .tools/bin: "
            "python3 -m venv .tools && .tools/bin/pip install py-spy"
        )
    if args.all:
        args.profile = "all"
    elif args.distributed and args.profile == "embedded":
        args.profile = "distributed"
    known = BENCHMARKS + DISTRIBUTED
    for name in args.only or []:
        if name not in known:
            parser.error(f"--only {name}: choose from {', '.join(known)}")
    return args


def selected(args: argparse.Namespace) -> list[str]:
    if args.only:
        return [n for n in [*BENCHMARKS, *DISTRIBUTED] if n in args.only]
    return {
        "embedded": BENCHMARKS,
        "distributed": DISTRIBUTED,
        "all": [*BENCHMARKS, *DISTRIBUTED],
    }[args.profile]


# -- the distributed pieces -------------------------------------------------------------------


class Stack:
    """The distributed profile's engines, those of `eventmart stack up --data-dir
    <folder>`: an engine already running there is used as it is; one that is not is
    started (eventmart.stack.up) on first need and stopped by `down()` at the end."""

    def __init__(self, folder: Path, port_offset: int, *, keep: bool = False) -> None:
        self.folder = folder
        self.port_offset = port_offset
        self.keep = keep
        self.addresses: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.started: list[str] = []

    def up(self, *engines: str) -> dict[str, str] | None:
        """The addresses of `engines`, starting those not running; None if one cannot
        start (`error` says why)."""
        from eventmart import stack

        missing = [e for e in engines if e not in self.addresses and e not in self.errors]
        if missing:
            running = {
                s.name: s.address
                for s in stack.status(missing, self.folder)
                if s.state == "running"
            }
            self.addresses.update(running)
            to_start = [e for e in missing if e not in running]
            if to_start:
                console.print(
                    f"[dim]starting {', '.join(to_start)} (eventmart stack up --data-dir "
                    f"{self.folder}); already running: {', '.join(running) or 'none'}[/dim]"
                )
                self.folder.mkdir(parents=True, exist_ok=True)
                # PostgreSQL runs as its own user, which must reach its data directory.
                self.folder.chmod(self.folder.stat().st_mode | 0o011)
                try:
                    found = stack.up(to_start, self.folder, port_offset=self.port_offset)
                    self.addresses.update(found)
                    self.started += to_start
                except Exception as e:
                    hint = (
                        f"run `eventmart stack up --data-dir {self.folder}` "
                        "(and `make stack-deps` once)"
                    )
                    for name in to_start:
                        first = f"{e}".splitlines()[0] if f"{e}" else type(e).__name__
                        self.errors[name] = f"{name} did not start: {first}; {hint}"
        if any(e in self.errors for e in engines):
            return None
        return {e: self.addresses[e] for e in engines}

    def error(self, *engines: str) -> str:
        return "; ".join(self.errors[e] for e in engines if e in self.errors)

    def down(self) -> None:
        if not self.started or self.keep:
            return
        from eventmart import stack

        try:
            stack.down(self.started, self.folder)
        except Exception as e:
            console.print(f"[yellow]stack down failed: {e}[/yellow]")


def _kafka_bus(ctx: Context, stack: Stack) -> BenchResult:
    result = BenchResult("kafka_bus", "Kafka bus")
    addresses = stack.up("kafka")
    if addresses is None:
        result.skipped.append(f"not measured: {stack.error('kafka')}")
        return result
    try:
        kafka_bus = importlib.import_module("bench.kafka_bus")
    except ImportError as e:
        result.skipped.append(f"not measured: bench.kafka_bus is not there yet ({e})")
        return result
    run = getattr(kafka_bus, "run", None)
    if run is None:
        result.skipped.append("not measured: bench.kafka_bus has no run(bootstrap, n, size)")
        return result
    n = 20_000 if ctx.quick else 100_000
    ctx.steps(1)
    ctx.step(f"KafkaBus vs raw confluent-kafka, {n:,} records")
    rounds = 1 if ctx.quick else 5
    data: dict[str, Any] = run(addresses["kafka"], n, 200, rounds=rounds)
    floor = float(data["floor"])
    samples: dict[str, list[tuple[float, float]]] = data["samples"]

    def measure(label: str, key: str) -> Measure:
        m = Measure(label)
        for rates in samples[key]:
            m.add(rates)
        return m

    raw = ("raw_produce", "raw confluent-kafka")
    per_batch = ("raw_produce_flush_per_batch", "raw, flush per 1000")
    sides = {"produce": [raw, per_batch], "consume": [("raw_consume", "raw confluent-kafka")]}
    for kind, raw_keys in sides.items():
        result.figures.append(
            Figure(
                "kafka_bus",
                f"{kind}, 200-byte values",
                "msgs/s",
                measure("eventmart KafkaBus", f"bus_{kind}"),
                [measure(label, key) for key, label in raw_keys],
                floor=Floor("min_ratio", floor, "raw confluent-kafka"),
            )
        )
    result.notes.append(
        f"bench.kafka_bus.run: {n:,} records of 200 bytes (CloudEvents headers, 1,000 keys, "
        f"8 partitions), sends and consumer batches of {data.get('batch', '?')}, "
        f"{rounds} round(s), each side twice a round in mirrored order; both sides "
        "idempotent, acks=all, commit per batch. Raw produce flushes once at the end (the "
        "ratio's baseline); 'raw, flush per 1000' waits for acknowledgements at the "
        "adapter's points."
    )
    return result


def _relay_postgres_kafka(ctx: Context, stack: Stack) -> BenchResult:
    from bench import relay

    addresses = stack.up("kafka", "postgres")
    if addresses is None:
        result = BenchResult("relay_postgres_kafka", "outbox relay PG -> Kafka")
        result.skipped.append(f"not measured: {stack.error('kafka', 'postgres')}")
        return result
    return relay.run_distributed(ctx, addresses)


def _checkout_distributed(ctx: Context, stack: Stack) -> BenchResult:
    from bench import checkout

    addresses = stack.up("kafka", "postgres", "cassandra")
    if addresses is None:
        result = BenchResult("checkout_distributed", "checkout e2e (distributed)")
        result.skipped.append(f"not measured: {stack.error('kafka', 'postgres', 'cassandra')}")
        return result
    return checkout.run_distributed(ctx, addresses)


# -- running ----------------------------------------------------------------------------------


def run_all(args: argparse.Namespace, workdir: Path) -> list[BenchResult]:
    names = selected(args)
    results: list[BenchResult] = []
    stack = Stack(args.stack_dir, args.port_offset, keep=args.keep_stack)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            overall = progress.add_task("benchmarks", total=len(names))
            for name in names:
                current = progress.add_task(f"  {name}", total=None)

                def advance(description: str, current: TaskID = current, name: str = name) -> None:
                    progress.advance(current)
                    progress.update(current, description=f"  {name}: {description}")

                def set_total(total: int, current: TaskID = current) -> None:
                    progress.update(current, total=total, completed=0)

                ctx = Context(
                    quick=args.quick,
                    workdir=workdir,
                    advance=advance,
                    set_total=set_total,
                    log=lambda message: progress.console.print(f"    {message}"),
                    profile_dir=args.profile_dir,
                )
                started = time.perf_counter()
                result = _run_one(name, ctx, stack)
                result.seconds = time.perf_counter() - started
                results.append(result)
                task = progress.tasks[current]
                progress.update(
                    current,
                    completed=task.total or 1,
                    total=task.total or 1,
                    description=f"  {name}: done in {result.seconds:.0f} s",
                )
                progress.advance(overall)
    finally:
        stack.down()
    return results


def _run_one(name: str, ctx: Context, stack: Stack) -> BenchResult:
    distributed: dict[str, Callable[[Context, Stack], BenchResult]] = {
        "kafka_bus": _kafka_bus,
        "relay_postgres_kafka": _relay_postgres_kafka,
        "checkout_distributed": _checkout_distributed,
    }
    try:
        if name in distributed:
            return distributed[name](ctx, stack)
        module = importlib.import_module(f"bench.{name}")
        result: BenchResult = module.run(ctx)
        return result
    except KeyboardInterrupt:
        raise
    except Exception as e:
        console.print(f"[red]{name} failed:[/red]")
        console.print(traceback.format_exc(limit=6))
        failed = BenchResult(name, name)
        failed.skipped.append(f"not measured: {type(e).__name__}: {e}".splitlines()[0])
        return failed


# -- output -----------------------------------------------------------------------------------


def print_results(results: list[BenchResult], info: dict[str, str]) -> None:
    table = Table(title="eventmart benchmarks", show_lines=False)
    for col in TABLE_HEADER:
        table.add_column(col, overflow="fold")
    for row in table_rows(results):
        style = "red" if row[-1] == "NO" else ("green" if row[-1] == "yes" else None)
        table.add_row(*row, style=style)
    console.print(table)
    rows = cpu_rows(results)
    if rows:
        cpu = Table(title="per CPU-second of the bench process (less sensitive to neighbours)")
        for col in CPU_HEADER:
            cpu.add_column(col, overflow="fold")
        for row in rows:
            cpu.add_row(*row)
        console.print(cpu)
    for r in results:
        for note in r.notes:
            console.print(f"[dim]{r.title}: {note}[/dim]")
        for skip in r.skipped:
            console.print(f"[yellow]{r.title}: {skip}[/yellow]")
    console.print(
        f"[dim]{info['cores']} cores, {info['ram']}, {info['python']}, SQLite {info['sqlite']}; "
        f"load average {info['load_before']} before, {info['load_after']} after[/dim]"
    )


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def results_markdown(results: list[BenchResult], info: dict[str, str], command: str) -> str:
    out = [
        START,
        "",
        f"Generated by `{command}` on {info['date']} (took {info['took']}).",
        "",
        f"- machine: {info['cores']} cores ({info['cpu']}), {info['ram']} RAM, {info['os']}",
        f"- Python {info['python']}, SQLite {info['sqlite']}",
        f"- load average (1/5/15 min) before: {info['load_before']}, after: "
        f"{info['load_after']} — a shared machine: other work ran beside the bench",
        "",
        "Figures are medians with the min-max spread of the rounds in parentheses; a ratio is "
        "eventmart / baseline (baseline / eventmart for times), the median of the per-round "
        "ratios. `ok` says whether the floor is met.",
        "",
        _markdown_table(TABLE_HEADER, table_rows(results)),
        "",
    ]
    rows = cpu_rows(results)
    if rows:
        out += [
            "The same work per CPU-second of the bench process (wall-clock rates above also "
            "count the time spent waiting for a CPU that neighbours held):",
            "",
            _markdown_table(CPU_HEADER, rows),
            "",
        ]
    notes = [(r.title, n) for r in results for n in r.notes]
    skipped = [(r.title, s) for r in results for s in r.skipped]
    if notes:
        out += ["Workloads and details:", ""]
        out += [f"- **{title}**: {note}" for title, note in notes]
        out.append("")
    if skipped:
        out += ["Not measured:", ""]
        out += [f"- **{title}**: {skip}" for title, skip in skipped]
        out.append("")
    out.append(END)
    return "\n".join(out)


def write_doc(section: str, doc: Path = DOC) -> None:
    text = doc.read_text() if doc.exists() else ""
    if START in text and END in text:
        before = text[: text.index(START)]
        after = text[text.index(END) + len(END) :]
        doc.write_text(before + section + after)
    else:
        doc.write_text(text.rstrip() + "\n\n## Results\n\n" + section + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raw_args = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "bench", *raw_args])
    info = {
        **machine(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_before": load_average(),
    }
    workdir = Path(tempfile.mkdtemp(prefix="eventmart-bench-"))
    started = time.perf_counter()
    try:
        results = run_all(args, workdir)
    finally:
        if args.keep:
            console.print(f"scratch directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    info["load_after"] = load_average()
    info["took"] = f"{(time.perf_counter() - started) / 60:.1f} min"
    print_results(results, info)
    if args.json is not None:
        payload = {"command": command, "machine": info, "results": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(payload, indent=2, default=str))
        console.print(f"samples written to {args.json}")
    if not args.no_write:
        write_doc(results_markdown(results, info, command))
        console.print(f"results written to {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
