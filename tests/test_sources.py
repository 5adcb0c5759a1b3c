"""Loaders of `taco ingest`: official formats, the shared real samples, tables, bad input."""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest

from taco.config import ConfigError, IngestParams, from_mapping, load_params
from taco.data.files import DataFileError
from taco.data.ingest import (
    SourceError,
    ingest,
    load_codesearchnet,
    load_meetingbank,
    load_qmsum,
    load_shared,
    load_source,
    load_squad,
    load_table,
)
from taco.data.schema import Example
from tests.helpers.paths import run_taco, shared_data

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def as_examples(rows: list[dict], task: str) -> list[Example]:
    """Every raw record must fit the Example schema."""
    return [Example.from_dict({**r, "task": task}) for r in rows]


# ------------------------------------------------------------------ official formats


def test_squad_v2_keeps_answerable_questions_with_distinct_answers() -> None:
    rows = list(load_squad(FIXTURES / "squad_v2.json"))
    assert [r["id"] for r in rows] == ["squad-sq2-001", "squad-sq2-003"]
    assert rows[0]["references"] == ["the Rankine cycle", "Rankine cycle"]
    assert rows[0]["group"] == "Steam_engine"
    assert rows[1]["question"] == "On which river does Warsaw stand?"
    for ex in as_examples(rows, "qa"):
        assert all(ref in ex.context for ref in ex.references)


def test_squad_v2_unanswerable_questions_are_optional() -> None:
    rows = list(load_squad(FIXTURES / "squad_v2.json", include_unanswerable=True))
    impossible = [r for r in rows if r["id"] == "squad-sq2-002"]
    assert impossible and impossible[0]["references"] == []


def test_squad_v1_file() -> None:
    rows = list(load_squad(FIXTURES / "squad_v1.json"))
    assert len(rows) == 2
    assert rows[0]["references"] == ["France"]
    assert {r["group"] for r in rows} == {"Normans"}


def test_qmsum_meetings_are_whole_transcripts_grouped_by_series() -> None:
    rows = list(load_qmsum(FIXTURES / "qmsum"))
    by_id = {r["id"]: r for r in rows}
    assert set(by_id) == {"qmsum-Bmr001-g0", "qmsum-Bmr001-g1", "qmsum-ES2002a-g0"}
    ami = by_id["qmsum-ES2002a-g0"]
    assert ami["group"] == "ES2002"  # the AMI series, not the single meeting
    assert ami["context"].splitlines() == [
        "Project Manager: Okay good morning everybody .",
        "Marketing: Morning . Hi .",
        "Project Manager: So today we start the project : a new remote control .",
        "User Interface: Sounds good , let us design it .",
    ]
    assert ami["question"] == "Summarize the whole meeting."
    assert "remote control" in ami["references"][0]
    assert by_id["qmsum-Bmr001-g1"]["group"] == "Bmr001"
    as_examples(rows, "summarization")


def test_meetingbank_segments_grouped_by_meeting() -> None:
    rows = list(load_meetingbank(FIXTURES / "meetingbank.json"))
    assert [r["group"] for r in rows] == [
        "SeattleCityCouncil_06132016",
        "SeattleCityCouncil_06132016",
        "DenverCityCouncil_03042019",
    ]
    assert rows[0]["id"] == "meetingbank-SeattleCityCouncil_06132016_Res 31669"
    assert rows[2]["references"] == ["A proclamation honoring Women's History Month."]


def test_meetingbank_accepts_a_json_array(tmp_path: Path) -> None:
    lines = (FIXTURES / "meetingbank.json").read_text().splitlines()
    (tmp_path / "validation.json").write_text(json.dumps([json.loads(x) for x in lines]))
    assert len(list(load_meetingbank(tmp_path))) == 3


def test_codesearchnet_jsonl_and_gz_strip_docstrings(tmp_path: Path) -> None:
    plain = list(load_codesearchnet(FIXTURES / "codesearchnet.jsonl"))
    gz = tmp_path / "python_test_0.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write((FIXTURES / "codesearchnet.jsonl").read_text())
    assert [r["context"] for r in load_codesearchnet(gz)] == [r["context"] for r in plain]
    by_name = {r["context"].split("(")[0].removeprefix("def "): r for r in plain}
    flask = by_name["get_debug_flag"]
    assert flask["references"] == ["Get whether debug mode should be enabled for the app."]
    assert '"""' not in flask["context"]
    assert "FLASK_DEBUG environment variable" not in flask["context"]
    assert flask["group"] == "pallets/flask"
    py2 = by_name["say"]  # Python 2 code does not parse: the textual fallback still strips it
    assert "Print x to stdout" not in py2["context"] and "print x" in py2["context"]


def test_generic_csv_jsonl_parquet_with_field_mapping(tmp_path: Path) -> None:
    fields = {"id": "ticket", "context": "body", "references": "summary", "group": "customer"}
    csv_rows = list(load_table(FIXTURES / "table.csv", "csv", fields))
    assert [r["id"] for r in csv_rows] == ["t-1", "t-2", "t-3"]
    assert csv_rows[2]["group"] == "globex"
    assert csv_rows[0]["references"] == ["Printer jams on duplex."]
    jsonl_rows = list(load_table(FIXTURES / "table.jsonl", "jsonl", fields))
    assert jsonl_rows[1]["references"] == ["VPN login fails after password change.", "VPN broken."]
    import pandas as pd

    pd.read_csv(FIXTURES / "table.csv").to_parquet(tmp_path / "t.parquet")
    parquet_rows = list(load_table(tmp_path / "t.parquet", "parquet", fields))
    assert [r["context"] for r in parquet_rows] == [r["context"] for r in csv_rows]
    as_examples(csv_rows + jsonl_rows + parquet_rows, "tickets")


# ------------------------------------------------------------------ the shared real samples


@pytest.mark.parametrize(
    ("task", "count", "groups"), [("qa", 600, 12), ("summarization", 60, 33), ("code", 1500, 234)]
)
def test_shared_dev_files(task: str, count: int, groups: int) -> None:
    rows = list(load_shared(shared_data(task)))
    assert len(rows) == count
    assert len({r["group"] for r in rows}) == groups
    examples = as_examples(rows, task)
    assert all(ex.references and ex.context for ex in examples)
    if task == "qa":
        assert all(ex.question for ex in examples)
        assert all(any(r in ex.context for r in ex.references) for ex in examples)


def test_ingest_writes_a_deterministic_snapshot(tmp_path: Path) -> None:
    shutil.copy(shared_data("qa"), tmp_path / "dev.jsonl")
    (tmp_path / "params.yaml").write_text(
        "base: {task: qa}\ningest: {format: shared, path: dev.jsonl}\n"
    )
    params = load_params(tmp_path / "params.yaml")
    snap = ingest(params, tmp_path)
    out = tmp_path / "data" / "raw" / "qa"
    first = (out / "records.jsonl").read_bytes()
    assert snap["records"] == 600 and snap["groups"] == 12 and snap["format"] == "shared"
    assert json.loads((out / "snapshot.json").read_text()) == snap
    ingest(params, tmp_path)
    assert (out / "records.jsonl").read_bytes() == first


# ------------------------------------------------------------------ bad input


def test_malformed_json_line_names_file_and_line() -> None:
    path = FIXTURES / "malformed.jsonl"
    with pytest.raises(DataFileError, match=r"malformed\.jsonl:2: malformed JSON"):
        list(load_shared(path))


def test_cli_reports_a_bad_source_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(
        f"base: {{task: qa}}\ningest: {{format: shared, path: {FIXTURES / 'malformed.jsonl'}}}\n"
    )
    proc = run_taco("ingest", cwd=tmp_path)
    assert proc.returncode == 2
    # the stage's log (resolved params) may come first; the error is one line, and the last
    errors = [line for line in proc.stderr.splitlines() if line.startswith("taco: ")]
    assert errors == [
        f"taco: error: {FIXTURES / 'malformed.jsonl'}:2: malformed JSON (Expecting ',' delimiter)"
    ]
    assert proc.stderr.strip().splitlines()[-1] == errors[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()  # nothing half-written


def test_missing_field_names_field_and_record(tmp_path: Path) -> None:
    path = tmp_path / "dev.jsonl"
    path.write_text('{"id": "x-1", "context": "some text", "answers": ["text"]}\n{"id": "x-2"}\n')
    with pytest.raises(SourceError, match=r"dev\.jsonl:2: record 'x-2': required field 'context'"):
        list(load_shared(path))
    bad = tmp_path / "csn.jsonl"
    bad.write_text('{"repo": "a/b", "path": "p.py", "func_name": "f", "code": "def f(): pass"}\n')
    with pytest.raises(SourceError, match="required field 'docstring' is missing"):
        list(load_codesearchnet(bad))


def test_empty_source_says_so(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n")
    params = IngestParams(format="jsonl", path="empty.jsonl")
    with pytest.raises(SourceError, match="yielded no records"):
        load_source(params, "mytask", tmp_path)


def test_missing_source_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"nope\.json"):
        load_source(IngestParams(format="squad", path="nope.json"), "qa", tmp_path)


def test_format_must_fit_the_task() -> None:
    with pytest.raises(SourceError, match=r"produces 'qa' data but base\.task is 'code'"):
        load_source(IngestParams(format="squad", path="x.json"), "code")


def test_hf_dataset_offline_gives_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    params = IngestParams(format="squad", path="hf:rajpurkar/squad_v2")
    with pytest.raises(SourceError, match="Hugging Face Hub is not reachable") as info:
        load_source(params, "qa")
    assert "rajpurkar/squad_v2" in str(info.value)


def test_url_source_is_downloaded_and_read() -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(FIXTURES))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/squad_v2.json"
        rows = load_source(IngestParams(format="squad", path=url), "qa")
    finally:
        server.shutdown()
    assert [r["id"] for r in rows] == ["squad-sq2-001", "squad-sq2-003"]
    assert rows[0]["source"] == "SQuAD (squad_v2.json)"


def test_hf_rows_go_through_the_format_converter(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    hf_squad = [  # the row layout of the Hub's `squad_v2` dataset
        {
            "id": "5733be284776f41900661182",
            "title": "University_of_Notre_Dame",
            "context": "Architecturally, the school has a Catholic character.",
            "question": "What character does the school have?",
            "answers": {"text": ["Catholic", "Catholic"], "answer_start": [34, 34]},
        },
        {"id": "x2", "title": "T", "context": "c", "question": "q", "answers": {"text": []}},
    ]
    calls = []

    def fake_load_dataset(name: str, config: str | None, split: str) -> list[dict]:
        calls.append((name, config, split))
        return hf_squad

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    params = IngestParams(format="squad", path="hf:rajpurkar/squad_v2", hf_split="validation")
    rows = load_source(params, "qa")
    assert calls == [("rajpurkar/squad_v2", None, "validation")]
    assert len(rows) == 1 and rows[0]["references"] == ["Catholic"]
    assert rows[0]["group"] == "University_of_Notre_Dame"


def test_unreachable_url_gives_one_clear_error() -> None:
    params = IngestParams(format="squad", path="http://127.0.0.1:9/dev-v2.0.json")
    with pytest.raises(SourceError, match="network is not reachable"):
        load_source(params, "qa")


def test_ingest_params_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        from_mapping(IngestParams, {"format": "python", "colour": "red"}, "ingest")
    with pytest.raises(ConfigError, match="is not one of"):
        from_mapping(IngestParams, {"format": "xml"}, "ingest")
    with pytest.raises(ConfigError, match=r"ingest\.path: required"):
        from_mapping(IngestParams, {"format": "squad"}, "ingest")
    with pytest.raises(ConfigError, match="unknown Example field"):
        from_mapping(IngestParams, {"format": "csv", "path": "a.csv", "fields": {"x": "y"}}, "i")
