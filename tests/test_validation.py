"""The Great Expectations gate: good data passes; each kind of corruption fails by name."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from taco.config import load_params
from taco.data.ingest import ingest
from taco.data.prepare import prepare
from taco.data.validate import summary, validate
from tests.helpers.paths import run_taco, shared_data

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def qa_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose prepared QA data (real SQuAD 2.0 sample) passes the gate."""
    root = tmp_path_factory.mktemp("qa")
    shutil.copy(shared_data("qa"), root / "dev.jsonl")
    (root / "params.yaml").write_text(
        "base: {task: qa}\ningest: {format: shared, path: dev.jsonl}\n"
    )
    params = load_params(root / "params.yaml")
    ingest(params, root)
    prepare(params, root)
    return root


@pytest.fixture()
def project(qa_project: Path, tmp_path: Path) -> Path:
    """A private copy of the prepared project, for a test to corrupt."""
    root = tmp_path / "p"
    shutil.copytree(qa_project, root)
    return root


def _rows(root: Path, split: str) -> list[dict]:
    path = root / "data" / "prepared" / "qa" / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(root: Path, split: str, rows: list[dict]) -> None:
    path = root / "data" / "prepared" / "qa" / f"{split}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _failed(report: dict) -> dict[str, dict]:
    return {e["name"]: e for e in report["expectations"] if not e["success"]}


def test_real_prepared_data_passes(qa_project: Path) -> None:
    params = load_params(qa_project / "params.yaml")
    report = validate(params, qa_project)
    assert report["success"], summary(report)
    assert report["evaluated"] >= 30 and report["failed"] == 0
    names = {e["name"] for e in report["expectations"]}
    assert "train: expect_column_values_to_be_in_set(answer_in_context)" in names
    assert "groups: expect_column_values_to_be_between(splits)" in names
    saved = json.loads((qa_project / "data" / "reports" / "validation.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert "passed" in summary(report)


def _null_context(rows: list[dict]) -> None:
    rows[1]["context"] = None


def _empty_context(rows: list[dict]) -> None:
    rows[2]["context"] = "   "


def _answer_missing(rows: list[dict]) -> None:
    rows[3]["references"] = ["an answer that is nowhere in the paragraph"]


def _no_references(rows: list[dict]) -> None:
    rows[4]["references"] = []


def _wrong_task(rows: list[dict]) -> None:
    rows[0]["task"] = "code"


def _too_long(rows: list[dict]) -> None:
    rows[5]["context"] += " word" * 5000


def _long_answer(rows: list[dict]) -> None:
    rows[6]["context"] += " word" * 300
    rows[6]["references"] = [rows[6]["context"]]  # in the context, but over the word limit


def _no_question(rows: list[dict]) -> None:
    rows[7]["question"] = ""


@pytest.mark.parametrize(
    ("corrupt", "expected", "victim"),
    [
        (_null_context, "val: expect_column_values_to_not_be_null(context)", 1),
        (_empty_context, "val: expect_column_values_to_match_regex(context)", 2),
        (_answer_missing, "val: expect_column_values_to_be_in_set(answer_in_context)", 3),
        (_no_references, "val: expect_column_values_to_not_be_null(reference)", 4),
        (_wrong_task, "val: expect_column_values_to_be_in_set(task)", 0),
        (_too_long, "val: expect_column_values_to_be_between(context_words)", 5),
        (_long_answer, "val: expect_column_values_to_be_between(reference_words_max)", 6),
        (_no_question, "val: expect_column_values_to_match_regex(question)", 7),
    ],
)
def test_corrupted_rows_fail_the_named_expectation(
    project: Path, corrupt: Callable[[list[dict]], None], expected: str, victim: int
) -> None:
    rows = _rows(project, "val")
    corrupt(rows)
    _write(project, "val", rows)
    report = validate(load_params(project / "params.yaml"), project)
    failed = _failed(report)
    assert not report["success"]
    assert expected in failed, sorted(failed)
    assert failed[expected]["examples"] == [rows[victim]["id"]]
    assert failed[expected]["unexpected_count"] == 1
    assert expected in summary(report)


def test_duplicate_ids_fail(project: Path) -> None:
    train, test = _rows(project, "train"), _rows(project, "test")
    test[0]["id"] = train[0]["id"]
    _write(project, "test", test)
    failed = _failed(validate(load_params(project / "params.yaml"), project))
    assert set(failed) == {"all: expect_column_values_to_be_unique(id)"}
    assert failed["all: expect_column_values_to_be_unique(id)"]["examples"] == [train[0]["id"]]


def test_a_group_in_two_splits_fails(project: Path) -> None:
    train, test = _rows(project, "train"), _rows(project, "test")
    test[0]["group"] = train[0]["group"]
    _write(project, "test", test)
    failed = _failed(validate(load_params(project / "params.yaml"), project))
    assert set(failed) == {"groups: expect_column_values_to_be_between(splits)"}
    assert failed["groups: expect_column_values_to_be_between(splits)"]["examples"] == [
        train[0]["group"]
    ]


def test_too_few_rows_and_too_many_dropped_fail(project: Path) -> None:
    _write(project, "val", _rows(project, "val")[:3])
    stats_path = project / "data" / "prepared" / "qa" / "stats.json"
    stats = json.loads(stats_path.read_text())
    stats["dropped_share"] = 0.8
    stats_path.write_text(json.dumps(stats))
    failed = _failed(validate(load_params(project / "params.yaml"), project))
    assert set(failed) == {
        "val: expect_table_row_count_to_be_between",
        "stats: expect_column_values_to_be_between(dropped_share)",
    }
    assert failed["val: expect_table_row_count_to_be_between"]["observed_value"] == 3


def test_cli_exits_non_zero_with_a_summary_and_keeps_the_data(project: Path) -> None:
    rows = _rows(project, "val")
    _empty_context(rows)
    _write(project, "val", rows)
    before = {p.name: p.read_bytes() for p in (project / "data" / "prepared" / "qa").iterdir()}
    proc = run_taco("validate", cwd=project)
    assert proc.returncode == 1
    lines = [
        x
        for x in proc.stderr.splitlines()
        if x.startswith("taco: failed: Validation of the qa data FAILED")
    ]
    assert len(lines) == 1
    assert "val: expect_column_values_to_match_regex(context)" in lines[0]
    assert "great_expectations" not in proc.stderr  # GX's INFO flood is silenced
    after = {p.name: p.read_bytes() for p in (project / "data" / "prepared" / "qa").iterdir()}
    assert after == before
    report = json.loads((project / "data" / "reports" / "validation.json").read_text())
    assert report["success"] is False


def test_malformed_prepared_file_names_file_and_line(project: Path) -> None:
    path = project / "data" / "prepared" / "qa" / "test.jsonl"
    path.write_text(path.read_text() + "{not json\n")
    n = len(path.read_text().splitlines())
    with pytest.raises(ValueError, match=rf"test\.jsonl:{n}: malformed JSON"):
        validate(load_params(project / "params.yaml"), project)
