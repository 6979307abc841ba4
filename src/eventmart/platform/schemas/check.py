"""Export the contracts' Avro schemas into the repo, and check them against their git history.

`export_schemas` writes one `<type name>.avsc` per message class. `check_schemas` fails when
(a) a file differs from what the code derives (the fix: `eventmart schemas export`) or
(b) some version of a file, in the working tree or anywhere in its git history, breaks
the subject's compatibility mode against the version(s) committed before it. Modes come
from an optional `compatibility.json` next to the files (subject -> mode), BACKWARD
otherwise. This is the CI gate that keeps a schema change from breaking consumers long
before a registry would refuse it at deploy time.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import orjson

from eventmart.platform.avro import avro_schema
from eventmart.platform.errors import InvalidSchemaError
from eventmart.platform.messages import Message
from eventmart.platform.schemas.compatibility import (
    LabeledSchema,
    ParsedSchema,
    check_compatibility,
    schemas_to_check,
)
from eventmart.platform.schemas.registry import DEFAULT_COMPATIBILITY, CompatibilityMode

SUFFIX = ".avsc"
COMPATIBILITY_FILE = "compatibility.json"
WORKING_TREE = "the working tree"
EXPORT_HINT = "run `eventmart schemas export` and commit the result"


def render_schema(cls: type[Message]) -> str:
    """The file text of a class's schema: pretty JSON, sorted keys, trailing newline."""
    return (
        orjson.dumps(avro_schema(cls), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
        + "\n"
    )


def schema_file_name(cls: type[Message]) -> str:
    return f"{cls.type_name()}{SUFFIX}"


# --- export ----------------------------------------------------------------------------


@dataclass
class ExportResult:
    """What an export did; `stale` files belong to no class and were left in place."""

    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    stale: list[Path] = field(default_factory=list)


def export_schemas(avro_dir: Path, classes: Iterable[type[Message]]) -> ExportResult:
    """Write every class's schema into `avro_dir`; never deletes (it reports stale files)."""
    result = ExportResult()
    expected = {schema_file_name(cls): render_schema(cls) for cls in classes}
    for name, text in sorted(expected.items()):
        path = avro_dir / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            result.unchanged.append(path)
            continue
        avro_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        result.written.append(path)
    result.stale = [p for p in _schema_files(avro_dir) if p.name not in expected]
    return result


def check_exports(avro_dir: Path, classes: Iterable[type[Message]]) -> list[str]:
    """Problems where the files in `avro_dir` and the schemas the classes derive disagree."""
    problems: list[str] = []
    expected = {schema_file_name(cls): avro_schema(cls) for cls in classes}
    for name, schema in sorted(expected.items()):
        path = avro_dir / name
        if not path.exists():
            problems.append(f"{path}: missing; {EXPORT_HINT}")
            continue
        try:
            on_disk = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            on_disk = None
        # Compared as JSON values, so a checkout's line endings do not matter.
        if on_disk != orjson.loads(orjson.dumps(schema)):
            problems.append(f"{path}: differs from the schema the code derives; {EXPORT_HINT}")
    for path in _schema_files(avro_dir):
        if path.name not in expected:
            problems.append(
                f"{path}: stale, no contract class derives it; delete it if the message type "
                "is retired, or restore the class"
            )
    return problems


def _schema_files(avro_dir: Path) -> list[Path]:
    return sorted(avro_dir.glob(f"*{SUFFIX}")) if avro_dir.is_dir() else []


# --- history ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FileVersion:
    """One version of a schema file: a commit's copy or the working tree's."""

    label: str  # "commit 1a2b3c4 (2025-01-31)" or "the working tree"
    text: str
    committed: bool = True


@dataclass
class SubjectReport:
    """One subject's history check: distinct versions found, pairs compared, what broke."""

    subject: str
    path: Path
    mode: CompatibilityMode
    versions: int = 0
    compared: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    """The outcome of `check_schemas`: what was checked, what is wrong, and caveats."""

    subjects: list[SubjectReport] = field(default_factory=list)
    export_problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    history_checked: bool = False

    @property
    def problems(self) -> list[str]:
        history = [p for s in self.subjects for p in s.problems]
        return [*self.export_problems, *history]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def versions_compared(self) -> int:
        return sum(s.compared for s in self.subjects)


class HistoryCheck(NamedTuple):
    """Per-subject reports of a history check, caveats, and whether git history was read."""

    reports: list[SubjectReport]
    notes: list[str]
    in_git: bool  # False: outside a git checkout, so only the working tree was read


def git_toplevel(path: Path) -> Path | None:
    """The work tree holding `path`, or None outside a git checkout (or without git)."""
    return _git_toplevel(path)[0]


def _git_toplevel(path: Path) -> tuple[Path | None, str]:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        out = _git(probe, "rev-parse", "--show-toplevel")
    except OSError as e:
        return None, f"git is not available: {e}"
    except subprocess.CalledProcessError as e:
        # Say git's reason: "not a git repository" and "dubious ownership" need different fixes.
        reason = (e.stderr or "").strip().splitlines()
        return None, reason[0] if reason else f"git exited with {e.returncode}"
    return Path(out.strip()), ""


def file_histories(repo: Path, paths: Sequence[Path]) -> dict[Path, list[FileVersion]]:
    """Each file's versions, oldest first: every commit that changed it (following renames),
    then the working copy if it differs from the newest commit's."""
    # One `git log --follow` per file (it follows one path only), run side by side.
    with ThreadPoolExecutor(max_workers=8) as pool:
        per_file = pool.map(lambda p: _commits_touching(repo, p), paths)
        commits = dict(zip(paths, per_file, strict=True))
    wanted = [f"{sha}:{git_path}" for log in commits.values() for sha, git_path, _ in log]
    blobs = _read_blobs(repo, wanted)

    histories: dict[Path, list[FileVersion]] = {}
    for path in paths:
        versions = [
            FileVersion(label, blobs[f"{sha}:{git_path}"])
            for sha, git_path, label in commits[path]
            if f"{sha}:{git_path}" in blobs
        ]
        if path.exists():
            text = path.read_text(encoding="utf-8")
            if not versions or versions[-1].text != text:
                versions.append(FileVersion(WORKING_TREE, text, committed=False))
        histories[path] = versions
    return histories


def check_history(
    subject: str,
    path: Path,
    versions: Sequence[FileVersion],
    mode: CompatibilityMode,
) -> SubjectReport:
    """Check each version of one subject against the earlier ones its mode names."""
    report = SubjectReport(subject=subject, path=path, mode=mode)
    parsed: list[tuple[str, ParsedSchema]] = []
    for version in versions:
        try:
            schema = ParsedSchema.parse(version.text)
        except InvalidSchemaError as e:
            if not version.committed:
                report.problems.append(f"{path}: not a valid Avro schema: {e}")
            else:
                report.notes.append(f"{path} at {version.label} skipped: {e}")
            continue
        # A layout-only change is not a new version, as in the registry.
        if parsed and parsed[-1][1].fingerprint == schema.fingerprint:
            continue
        parsed.append((version.label, schema))
    report.versions = len(parsed)
    for i in range(1, len(parsed)):
        label, schema = parsed[i]
        earlier = [LabeledSchema(lbl, s.schema) for lbl, s in parsed[:i]]
        report.compared += len(schemas_to_check(mode, earlier))
        for reason in check_compatibility(schema.schema, earlier, mode, new_label=label):
            report.problems.append(f"{subject} ({mode.value}) at {label}: {reason}")
    return report


def load_compatibility_overrides(avro_dir: Path) -> tuple[dict[str, CompatibilityMode], list[str]]:
    """Subject -> mode from `compatibility.json` (if present), and problems reading it."""
    path = avro_dir / COMPATIBILITY_FILE
    if not path.exists():
        return {}, []
    try:
        raw = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        return {}, [f"{path}: not valid JSON: {e}"]
    if not isinstance(raw, dict):
        return {}, [f"{path}: must map subject names to compatibility modes"]
    modes: dict[str, CompatibilityMode] = {}
    problems: list[str] = []
    valid = ", ".join(m.value for m in CompatibilityMode)
    for subject, value in raw.items():
        try:
            modes[subject] = CompatibilityMode(str(value).upper())
        except ValueError:
            problems.append(f"{path}: {subject!r} has mode {value!r}; valid modes: {valid}")
    return modes, problems


def check_compatibility_history(
    repo: Path | None,
    paths: Sequence[Path],
    *,
    overrides: Mapping[str, CompatibilityMode] | None = None,
    default_mode: CompatibilityMode = DEFAULT_COMPATIBILITY,
) -> HistoryCheck:
    """Check the git history of each schema file (only the working tree outside git)."""
    overrides = overrides or {}
    toplevel, why = _git_toplevel(repo if repo is not None else (paths[0] if paths else Path.cwd()))
    histories: dict[Path, list[FileVersion]]
    notes: list[str] = []
    if toplevel is None:
        notes.append(
            f"not a git checkout ({why}): compatibility with earlier versions was not "
            "checked, only that the exported files match the code"
        )
        histories = {
            p: [FileVersion(WORKING_TREE, p.read_text(encoding="utf-8"), committed=False)]
            for p in paths
        }
    else:
        histories = file_histories(toplevel, paths)
        if _git(toplevel, "rev-parse", "--is-shallow-repository").strip() == "true":
            notes.append(
                "shallow clone: only the fetched commits were compared; fetch the full "
                "history (e.g. actions/checkout with fetch-depth: 0) for a complete check"
            )
    reports: list[SubjectReport] = []
    for path in paths:
        subject = path.name.removesuffix(SUFFIX)
        mode = overrides.get(subject, default_mode)
        report = check_history(subject, path, histories[path], mode)
        if toplevel is not None and report.versions <= 1:
            report.notes.append(f"{subject}: no earlier committed version to compare with")
        reports.append(report)
    return HistoryCheck(reports, notes, in_git=toplevel is not None)


def check_schemas(
    avro_dir: Path,
    classes: Iterable[type[Message]] | None,
    *,
    repo: Path | None = None,
    default_mode: CompatibilityMode = DEFAULT_COMPATIBILITY,
) -> CheckReport:
    """Both checks over a directory of .avsc files; `classes=None` skips the export check."""
    report = CheckReport()
    if classes is not None:
        report.export_problems.extend(check_exports(avro_dir, classes))
    overrides, problems = load_compatibility_overrides(avro_dir)
    report.export_problems.extend(problems)
    paths = _schema_files(avro_dir)
    if not paths:
        report.notes.append(f"no schema files in {avro_dir}: nothing to compare")
        return report
    history = check_compatibility_history(
        repo if repo is not None else avro_dir,
        paths,
        overrides=overrides,
        default_mode=default_mode,
    )
    report.subjects = history.reports
    report.notes.extend(history.notes)
    report.history_checked = history.in_git
    return report


# --- git plumbing ----------------------------------------------------------------------

_RECORD = "\x1e"
_UNIT = "\x1f"


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(cwd), "-c", "core.quotePath=false", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def _commits_touching(repo: Path, path: Path) -> list[tuple[str, str, str]]:
    """(commit, path at that commit, label) for each commit that changed `path`, oldest first."""
    try:
        out = _git(
            repo,
            "log",
            "--follow",
            f"--format={_RECORD}%H{_UNIT}%h{_UNIT}%cs",
            "--name-status",
            "--",
            str(path.resolve()),
        )
    except subprocess.CalledProcessError:
        return []  # e.g. a repository without commits yet
    found: list[tuple[str, str, str]] = []
    for chunk in out.split(_RECORD)[1:]:
        header, _, changes = chunk.partition("\n")
        sha, short, date = header.split(_UNIT)
        for line in changes.splitlines():
            parts = line.split("\t")
            if len(parts) < 2 or parts[0].startswith("D"):
                continue  # a deletion has no content; merges list no changes
            found.append((sha, parts[-1], f"commit {short} ({date})"))
            break
    found.reverse()
    return found


def _read_blobs(repo: Path, specs: Sequence[str]) -> dict[str, str]:
    """Many `commit:path` blobs in one `git cat-file --batch` process (fast for long histories)."""
    if not specs:
        return {}
    done = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "--batch"],
        input="".join(f"{spec}\n" for spec in specs).encode(),
        capture_output=True,
        check=True,
    )
    out = done.stdout
    blobs: dict[str, str] = {}
    pos = 0
    for spec in specs:
        end = out.index(b"\n", pos)
        header = out[pos:end].decode().split(" ")
        pos = end + 1
        if len(header) != 3 or header[1] != "blob":
            continue  # "<spec> missing"
        size = int(header[2])
        blobs[spec] = out[pos : pos + size].decode("utf-8")
        pos += size + 1  # the content is followed by a newline
    return blobs
