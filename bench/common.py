"""What the benchmarks share: figures with their spread, floors, the machine, timing helpers.

A benchmark measures eventmart and, in the same process and on the same machine, one or
more baselines doing the same work (raw sqlite3, the `eventsourcing` library, ...). Each
is run `rounds` times, alternating who goes first, and a figure keeps every sample: the
table shows the median and the min-max spread, and a ratio is the median of the per-round
ratios (paired samples cancel out part of the noise of a shared machine).
"""

from __future__ import annotations

import math
import os
import platform
import sqlite3
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

T = TypeVar("T")

# -- results ------------------------------------------------------------------------------


@dataclass
class Measure:
    """Samples of one implementation doing one piece of work (one sample per round)."""

    label: str
    samples: list[float] = field(default_factory=list)
    # The same work per CPU-second of the bench process, when that means something (the
    # contender ran in this process); steadier than wall time on a shared machine.
    cpu_samples: list[float] = field(default_factory=list)

    # False: shown beside eventmart for information, no ratio (e.g. the same latency
    # measured from another starting point).
    compare: bool = True

    def add(self, rates: tuple[float, float]) -> None:
        self.samples.append(rates[0])
        self.cpu_samples.append(rates[1])

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_samples) if self.cpu_samples else float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def low(self) -> float:
        return min(self.samples) if self.samples else float("nan")

    @property
    def high(self) -> float:
        return max(self.samples) if self.samples else float("nan")


FloorKind = Literal["min", "max", "min_ratio"]


@dataclass(frozen=True)
class Floor:
    """What the issue asks for: a minimum value (`min`), a maximum (`max`, for latencies)
    or a minimum ratio eventmart / `against` (`min_ratio`)."""

    kind: FloorKind
    threshold: float
    against: str | None = None  # the baseline's label, for min_ratio

    def describe(self, unit: str) -> str:
        if self.kind == "min_ratio":
            return f">= {self.threshold:g}x"
        sign = ">=" if self.kind == "min" else "<="
        return f"{sign} {fmt(self.threshold)} {unit}"


@dataclass
class Figure:
    """One measured quantity: eventmart's samples, the baselines' samples, an optional floor.

    `higher_is_better` is False for latencies; ratios are then baseline / eventmart, so a
    ratio above 1 always means "eventmart does better"."""

    benchmark: str
    metric: str
    unit: str
    subject: Measure
    baselines: list[Measure] = field(default_factory=list)
    floor: Floor | None = None
    higher_is_better: bool = True
    note: str = ""

    def ratios(self, baseline: Measure) -> list[float]:
        pairs = zip(self.subject.samples, baseline.samples, strict=False)
        if self.higher_is_better:
            return [s / b for s, b in pairs if b > 0]
        return [b / s for s, b in pairs if s > 0]

    def ratio(self, baseline: Measure) -> float:
        values = self.ratios(baseline)
        return statistics.median(values) if values else float("nan")

    def meets_floor(self) -> bool | None:
        if self.floor is None or not self.subject.samples:
            return None
        f = self.floor
        if f.kind == "min":
            return self.subject.median >= f.threshold
        if f.kind == "max":
            return self.subject.median <= f.threshold
        base = next((b for b in self.baselines if b.label == f.against), None)
        if base is None or not base.samples:
            return None
        return self.ratio(base) >= f.threshold


@dataclass
class BenchResult:
    """What one benchmark module returns: its figures, notes for the reader, and what it
    could not measure (with the reason)."""

    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


# -- formatting ---------------------------------------------------------------------------


def fmt(value: float) -> str:
    """A figure for a table: thousands separated, about three significant digits."""
    if math.isnan(value):
        return "n/a"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_measure(m: Measure) -> str:
    if not m.samples:
        return "n/a"
    if len(m.samples) == 1:
        return fmt(m.median)
    return f"{fmt(m.median)} ({fmt(m.low)}-{fmt(m.high)})"


def fmt_ratio(figure: Figure, baseline: Measure) -> str:
    values = figure.ratios(baseline)
    if not values:
        return "n/a"
    mid = statistics.median(values)
    if len(values) == 1:
        return f"{mid:.2f}x"
    return f"{mid:.2f}x ({min(values):.2f}-{max(values):.2f})"


def table_rows(results: list[BenchResult]) -> list[list[str]]:
    """Rows of the results table: benchmark, metric, eventmart, baseline, ratio, floor, ok.
    A figure with several baselines takes one row per baseline; a ratio floor sits on the
    row of the baseline it is against, a value floor on the figure's first row."""
    rows: list[list[str]] = []
    for result in results:
        first_of_result = True
        for fig in result.figures:
            verdict = fig.meets_floor()
            ok = "" if verdict is None else ("yes" if verdict else "NO")
            floor = fig.floor.describe(fig.unit) if fig.floor else ""
            metric = f"{fig.metric} ({fig.unit})"
            subject = f"{fig.subject.label}: {fmt_measure(fig.subject)}"
            lines: list[Measure | None] = [*fig.baselines] or [None]
            for i, base in enumerate(lines):
                if fig.floor is None:
                    here = False
                elif fig.floor.kind == "min_ratio":
                    here = base is not None and base.label == fig.floor.against
                else:
                    here = i == 0
                rows.append(
                    [
                        result.title if first_of_result else "",
                        metric if i == 0 else "",
                        subject if i == 0 else "",
                        "" if base is None else f"{base.label}: {fmt_measure(base)}",
                        "" if base is None or not base.compare else fmt_ratio(fig, base),
                        floor if here else "",
                        ok if here else "",
                    ]
                )
                first_of_result = False
    return rows


def cpu_rows(results: list[BenchResult]) -> list[list[str]]:
    """Rows of the per-CPU-second table: benchmark, metric, eventmart, baselines, ratio."""
    rows: list[list[str]] = []
    for result in results:
        for fig in result.figures:
            if not fig.subject.cpu_samples:
                continue
            unit = fig.unit.replace("/s", "/CPU-s")
            for i, base in enumerate(fig.baselines or [None]):
                with_cpu = base is not None and base.cpu_samples
                ratio = ""
                if with_cpu:
                    assert base is not None
                    ratio = f"{fig.subject.cpu_median / base.cpu_median:.2f}x"
                rows.append(
                    [
                        result.title if i == 0 else "",
                        f"{fig.metric} ({unit})" if i == 0 else "",
                        f"{fig.subject.label}: {fmt(fig.subject.cpu_median)}" if i == 0 else "",
                        f"{base.label}: {fmt(base.cpu_median)}" if with_cpu and base else "",
                        ratio,
                    ]
                )
    return rows


CPU_HEADER = ["benchmark", "metric", "eventmart", "baseline", "ratio"]
TABLE_HEADER = ["benchmark", "metric", "eventmart", "baseline", "ratio", "floor", "ok"]


# -- the machine --------------------------------------------------------------------------


def _meminfo_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def machine() -> dict[str, str]:
    return {
        "cores": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "ram": f"{_meminfo_gib():.1f} GiB",
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
    }


# -- running ------------------------------------------------------------------------------


class Context:
    """Passed to every benchmark: size of the run, a scratch directory, progress."""

    def __init__(
        self,
        *,
        quick: bool,
        workdir: Path,
        advance: Callable[[str], None] | None = None,
        set_total: Callable[[int], None] | None = None,
        log: Callable[[str], None] | None = None,
        profile_dir: Path | None = None,
    ) -> None:
        self.quick = quick
        # Where to put py-spy profiles of the shop's processes (checkout), if anywhere.
        self.profile_dir = profile_dir
        self.workdir = workdir
        self._advance = advance
        self._set_total = set_total
        self._log = log

    def steps(self, total: int) -> None:
        """Say how many steps this benchmark will report (for the progress bar)."""
        if self._set_total is not None:
            self._set_total(total)

    def step(self, description: str) -> None:
        """One step done; `description` is what comes next."""
        if self._advance is not None:
            self._advance(description)

    def log(self, message: str) -> None:
        if self._log is not None:
            self._log(message)

    def dir(self, name: str) -> Path:
        """A fresh, empty directory under the run's scratch directory."""
        path = self.workdir / name
        n = 1
        while path.exists():
            n += 1
            path = self.workdir / f"{name}-{n}"
        path.mkdir(parents=True)
        return path


class Timer:
    """`with Timer() as t: ...` then `t.wall` (seconds elapsed) and `t.cpu` (CPU seconds
    this process used meanwhile, all threads: on a shared machine the wall time also holds
    the time spent waiting for a CPU, the CPU time does not)."""

    def __enter__(self) -> Timer:
        self._wall0 = time.perf_counter()
        self._cpu0 = time.process_time()
        self._wall1: float | None = None
        self._cpu1 = 0.0
        return self

    def __exit__(self, *_exc: object) -> None:
        self._wall1 = time.perf_counter()
        self._cpu1 = time.process_time()

    @classmethod
    def started(cls) -> Timer:
        """A timer running from now, for a start that is not the top of a block."""
        return cls().__enter__()

    def stop(self) -> tuple[float, float]:
        """Stop; (wall, CPU) seconds."""
        self.__exit__()
        return self.wall, self.cpu

    @property
    def wall(self) -> float:
        end = self._wall1 if self._wall1 is not None else time.perf_counter()
        return end - self._wall0

    @property
    def cpu(self) -> float:
        end = self._cpu1 if self._wall1 is not None else time.process_time()
        return end - self._cpu0

    def rates(self, units: float) -> tuple[float, float]:
        """(units per second, units per CPU-second)."""
        return units / self.wall, units / max(self.cpu, 1e-9)


def alternate(round_: int, items: list[T]) -> list[T]:
    """Rotate the order of the contenders each round: the machine warms up (page cache,
    CPU frequency, other tenants) as a run goes on, and no one should always go first."""
    if not items:
        return items
    k = round_ % len(items)
    return items[k:] + items[:k]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank on sorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc), None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def children_of(pid: int) -> dict[int, str]:
    """Direct child processes of `pid` with their command lines (Linux /proc)."""
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != pid:
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError, IndexError):
            continue
        out[int(entry.name)] = cmd
    return out
