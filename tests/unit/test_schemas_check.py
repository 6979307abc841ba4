"""`eventmart schemas check|export` against throwaway git repositories."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventmart.platform.messages import Event, Message
from eventmart.platform.schemas.check import (
    COMPATIBILITY_FILE,
    check_compatibility_history,
    check_exports,
    check_schemas,
    export_schemas,
    render_schema,
)
from eventmart.platform.schemas.cli import schemas_app

SUBJECT = "eventmart.OrderPlaced"


# Each version of the contract is the same class name (so the same subject), reshaped.
def order_v1() -> type[Message]:
    class OrderPlaced(Event, frozen=True, kw_only=True):
        topic = "orders"
        key_field = "order_id"
        order_id: str
        total_cents: int

    return OrderPlaced


def order_with_optional_note() -> type[Message]:
    """Compatible with v1 both ways: the new field has a default."""

    class OrderPlaced(Event, frozen=True, kw_only=True):
        topic = "orders"
        key_field = "order_id"
        order_id: str
        total_cents: int
        note: str | None = None

    return OrderPlaced


def order_with_required_currency() -> type[Message]:
    """BACKWARD-incompatible with v1: a reader needs `currency`, old data lacks it."""

    class OrderPlaced(Event, frozen=True, kw_only=True):
        topic = "orders"
        key_field = "order_id"
        order_id: str
        total_cents: int
        currency: str

    return OrderPlaced


def order_with_currency_default() -> type[Message]:
    class OrderPlaced(Event, frozen=True, kw_only=True):
        topic = "orders"
        key_field = "order_id"
        order_id: str
        total_cents: int
        currency: str = "EUR"

    return OrderPlaced


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@example.com")
    git(root, "config", "user.name", "Dev")
    git(root, "config", "commit.gpgsign", "false")
    (root / "README").write_text("test repo\n")
    git(root, "add", "README")
    git(root, "commit", "-q", "-m", "init")
    return root


def avro_dir(repo: Path) -> Path:
    return repo / "src" / "contracts" / "avro"


def export_and_commit(repo: Path, cls: type[Message], message: str) -> None:
    export_schemas(avro_dir(repo), [cls])
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def test_export_writes_pretty_sorted_json_with_a_trailing_newline(tmp_path: Path) -> None:
    cls = order_v1()
    result = export_schemas(tmp_path / "avro", [cls])
    path = tmp_path / "avro" / f"{SUBJECT}.avsc"
    assert result.written == [path]
    text = path.read_text()
    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    assert json.loads(text)["name"] == "OrderPlaced"
    assert export_schemas(tmp_path / "avro", [cls]).unchanged == [path]


def test_export_reports_stale_files_and_deletes_nothing(tmp_path: Path) -> None:
    stale = tmp_path / "eventmart.Retired.avsc"
    stale.write_text("{}\n")
    result = export_schemas(tmp_path, [order_v1()])
    assert result.stale == [stale]
    assert stale.exists()


def test_an_empty_set_of_contracts_passes(repo: Path) -> None:
    report = check_schemas(avro_dir(repo), [], repo=repo)
    assert report.ok, report.problems
    assert report.subjects == []


def test_a_compatible_change_passes(repo: Path) -> None:
    export_and_commit(repo, order_v1(), "v1")
    newer = order_with_optional_note()
    export_schemas(avro_dir(repo), [newer])  # uncommitted: the working tree is the newest

    report = check_schemas(avro_dir(repo), [newer], repo=repo)
    assert report.ok, report.problems
    assert report.history_checked
    [subject] = report.subjects
    assert (subject.subject, subject.versions, subject.compared) == (SUBJECT, 2, 1)

    git(repo, "commit", "-qam", "note")
    report = check_schemas(avro_dir(repo), [newer], repo=repo)
    assert report.ok, report.problems
    assert report.subjects[0].versions == 2


def test_an_incompatible_change_in_the_working_tree_fails(repo: Path) -> None:
    export_and_commit(repo, order_v1(), "v1")
    breaking = order_with_required_currency()
    export_schemas(avro_dir(repo), [breaking])

    report = check_schemas(avro_dir(repo), [breaking], repo=repo)
    assert not report.ok
    [problem] = report.problems
    assert "'currency'" in problem
    assert "the working tree" in problem
    assert "BACKWARD" in problem
    assert report.export_problems == []  # the export itself is current


def test_an_incompatible_change_committed_in_history_fails(repo: Path) -> None:
    export_and_commit(repo, order_v1(), "v1")
    export_and_commit(repo, order_with_required_currency(), "breaking")
    bad = git(repo, "rev-parse", "--short", "HEAD").strip()
    latest = order_with_currency_default()
    export_and_commit(repo, latest, "later, compatible with the breaking one")

    report = check_schemas(avro_dir(repo), [latest], repo=repo)
    assert not report.ok
    assert report.subjects[0].versions == 3
    assert any(f"commit {bad}" in p and "'currency'" in p for p in report.problems), report.problems


def test_a_stale_export_is_detected(repo: Path) -> None:
    export_and_commit(repo, order_v1(), "v1")
    report = check_schemas(avro_dir(repo), [order_with_optional_note()], repo=repo)
    assert not report.ok
    [problem] = report.export_problems
    assert "eventmart schemas export" in problem
    assert f"{SUBJECT}.avsc" in problem


def test_missing_and_orphaned_files_are_detected(tmp_path: Path) -> None:
    export_schemas(tmp_path, [order_v1()])
    (tmp_path / "eventmart.Retired.avsc").write_text(
        render_schema(order_v1()).replace("OrderPlaced", "Retired")
    )

    class Other(Event, frozen=True, kw_only=True):
        topic = "other"
        thing: str

    problems = check_exports(tmp_path, [order_v1(), Other])
    assert any("eventmart.Other.avsc: missing" in p for p in problems), problems
    assert any("eventmart.Retired.avsc: stale" in p for p in problems), problems


def test_transitive_override_from_compatibility_json(repo: Path) -> None:
    # v3 reads v2 (which always writes currency) but not v1 (which has none).
    export_and_commit(repo, order_v1(), "v1")
    export_and_commit(repo, order_with_currency_default(), "v2")
    v1_commit = git(repo, "rev-parse", "--short", "HEAD~1").strip()
    latest = order_with_required_currency()
    export_schemas(avro_dir(repo), [latest])

    assert check_schemas(avro_dir(repo), [latest], repo=repo).ok

    (avro_dir(repo) / COMPATIBILITY_FILE).write_text(json.dumps({SUBJECT: "BACKWARD_TRANSITIVE"}))
    report = check_schemas(avro_dir(repo), [latest], repo=repo)
    assert not report.ok
    assert report.subjects[0].compared == 1 + 2  # v2 against v1, the working tree against both
    assert any(f"commit {v1_commit}" in p for p in report.problems), report.problems

    (avro_dir(repo) / COMPATIBILITY_FILE).write_text(json.dumps({SUBJECT: "SIDEWAYS"}))
    assert any("SIDEWAYS" in p for p in check_schemas(avro_dir(repo), [latest]).problems)


def test_layout_only_changes_are_not_new_versions(repo: Path) -> None:
    cls = order_v1()
    export_and_commit(repo, cls, "v1")
    path = avro_dir(repo) / f"{SUBJECT}.avsc"
    path.write_text(json.dumps(json.loads(path.read_text())))  # one line, same schema

    report = check_schemas(avro_dir(repo), [cls], repo=repo)
    assert report.ok, report.problems
    assert report.subjects[0].versions == 1


def test_history_functions_take_plain_paths(repo: Path) -> None:
    export_and_commit(repo, order_v1(), "v1")
    export_schemas(avro_dir(repo), [order_with_required_currency()])
    path = avro_dir(repo) / f"{SUBJECT}.avsc"

    [report], notes, in_git = check_compatibility_history(repo, [path])
    assert notes == []
    assert in_git
    assert report.problems and "'currency'" in report.problems[0]


def test_outside_git_only_the_export_check_runs_and_says_so(tmp_path: Path) -> None:
    cls = order_with_required_currency()
    export_schemas(tmp_path / "avro", [cls])
    report = check_schemas(tmp_path / "avro", [cls], repo=tmp_path)
    assert report.ok
    assert not report.history_checked
    assert any("not a git checkout" in n for n in report.notes)


def test_cli_check_exits_1_and_says_what_broke(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import eventmart.contracts

    # The commands read the contracts package; give them one known class instead.
    monkeypatch.setattr(eventmart.contracts, "all_message_types", lambda: [order_v1()])
    runner = CliRunner()
    avro = ["--avro-dir", str(tmp_path)]

    missing = runner.invoke(schemas_app, ["check", *avro])
    assert missing.exit_code == 1, missing.output
    assert "eventmart schemas export" in missing.output

    exported = runner.invoke(schemas_app, ["export", *avro])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / f"{SUBJECT}.avsc").exists()

    ok = runner.invoke(schemas_app, ["check", *avro])
    assert ok.exit_code == 0, ok.output
    assert "schemas ok" in ok.output

    (tmp_path / "eventmart.Retired.avsc").write_text(
        render_schema(order_v1()).replace("OrderPlaced", "Retired")
    )
    stale = runner.invoke(schemas_app, ["export", *avro])
    assert stale.exit_code == 0 and "stale" in stale.output, stale.output
    failed = runner.invoke(schemas_app, ["check", *avro])
    assert failed.exit_code == 1, failed.output
    assert "stale" in failed.output
    assert "schemas check failed" in failed.output


def test_a_shallow_clone_says_its_history_is_partial(repo: Path, tmp_path: Path) -> None:
    export_and_commit(repo, order_v1(), "v1")
    export_and_commit(repo, order_with_optional_note(), "v2")
    clone = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", f"file://{repo}", str(clone)],
        check=True,
        capture_output=True,
    )
    report = check_schemas(avro_dir(clone), [order_with_optional_note()], repo=clone)
    assert report.ok, report.problems
    assert report.subjects[0].versions == 1
    assert any("shallow clone" in n for n in report.notes)
