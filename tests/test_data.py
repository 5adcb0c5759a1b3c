"""`taco prepare`: normalise, dedupe, segment, filter, group split, and the files it writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taco.config import ConfigError, PrepareParams, ValidateParams, from_mapping, load_params
from taco.data.files import DataFileError, words
from taco.data.ingest import ingest, load_shared
from taco.data.prepare import (
    cap,
    dedupe,
    normalise,
    prepare,
    prepare_examples,
    segment,
    segment_text,
    split_by_group,
)
from taco.data.schema import Example, SchemaError
from tests.helpers.paths import shared_data


def ex(
    i: int | str, group: str = "g", context: str = "some words in a context here", **kw
) -> Example:
    return Example(
        id=str(i),
        task=kw.pop("task", "code"),
        context=context,
        group=group,
        references=kw.pop("references", ("a reference",)),
        **kw,
    )


def shared_examples(task: str) -> list[Example]:
    return [Example.from_dict({**r, "task": task}) for r in load_shared(shared_data(task))]


# ------------------------------------------------------------------ pure steps


def test_normalise_keeps_indentation_and_cleans_text() -> None:
    raw = ex(
        1,
        context="\n\ndef f():   \r\n    return 1  \n\n",
        question="  why \n now ",
        references=(" a  b ", "  "),
    )
    out = normalise(raw)
    assert out.context == "def f():\n    return 1"
    assert out.question == "why now"
    assert out.references == ("a b",)
    assert out.group == "g"
    assert normalise(ex(7, group="")).group == "7"


def test_dedupe_drops_exact_duplicates_only() -> None:
    rows = [ex(1), ex(2), ex(3, context="another context entirely"), ex(4, question="q")]
    kept, dropped = dedupe(rows)
    assert [e.id for e in kept] == ["1", "3", "4"]
    assert dropped == 1


def test_segments_cut_at_turn_boundaries_within_the_limit() -> None:
    turns = [f"Speaker {i % 3}: " + " ".join(f"w{i}_{j}" for j in range(30)) for i in range(40)]
    text = "\n".join(turns)
    pieces = segment_text(text, 100)
    assert len(pieces) > 1
    assert all(words(p) <= 100 for p in pieces)
    assert all(line in turns for p in pieces for line in p.split("\n"))  # no turn is cut
    assert "\n".join(pieces).split("\n") == turns  # nothing lost, order kept


def test_segments_cut_at_paragraphs_and_hard_cut_a_giant_line() -> None:
    paras = [" ".join(["p"] * 50), " ".join(["q"] * 50), " ".join(["r"] * 250)]
    pieces = segment_text("\n\n".join(paras), 120)
    assert pieces[0] == "\n\n".join(paras[:2])
    assert all(words(p) <= 120 for p in pieces)
    assert sum(words(p) for p in pieces) == 350
    assert all(piece == piece.strip() for piece in pieces)
    assert all(set(piece.split()) == {"r"} for piece in pieces[1:])  # windows of the giant one


def test_qa_keeps_only_segments_with_an_answer_and_code_is_never_cut() -> None:
    context = "\n\n".join(["alpha " * 60, "the answer is Vistula " + "beta " * 60, "gamma " * 60])
    qa = ex("q1", task="qa", context=context, references=("Vistula",), question="Which?")
    segs = segment(qa, 80)
    assert [s.id for s in segs] == ["q1#1"]
    assert "Vistula" in segs[0].context and segs[0].group == qa.group
    code = ex("c1", task="code", context="x = 1\n" * 500)
    assert segment(code, 80) == [code]
    summ = ex("s1", task="summarization", context=context)
    assert len(segment(summ, 80)) == 3


def test_group_split_has_no_leakage_on_real_data() -> None:
    for task in ("qa", "summarization", "code"):
        splits = split_by_group(shared_examples(task), seed=0, val_fraction=0.1, test_fraction=0.2)
        groups = {s: {e.group for e in rows} for s, rows in splits.items()}
        assert all(groups[s] for s in groups), (task, {s: len(g) for s, g in groups.items()})
        assert not groups["train"] & groups["val"]
        assert not groups["train"] & groups["test"]
        assert not groups["val"] & groups["test"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=80),
    st.integers(min_value=0, max_value=5),
    st.floats(min_value=0.0, max_value=0.5),
    st.floats(min_value=0.0, max_value=0.5),
)
def test_group_split_properties(groups: list[int], seed: int, val: float, test: float) -> None:
    rows = [ex(i, group=f"g{g}") for i, g in enumerate(groups)]
    splits = split_by_group(rows, seed, val, test)
    assert sorted(e.id for s in splits.values() for e in s) == sorted(e.id for e in rows)
    owner: dict[str, str] = {}
    for name, part in splits.items():
        for e in part:
            assert owner.setdefault(e.group, name) == name
    assert splits["train"]  # the last group always goes to training
    assert split_by_group(rows, seed, val, test) == splits  # deterministic


def test_split_depends_on_the_seed() -> None:
    rows = shared_examples("code")
    a = split_by_group(rows, 0, 0.1, 0.2)
    assert split_by_group(rows, 0, 0.1, 0.2) == a
    assert split_by_group(rows, 1, 0.1, 0.2)["test"] != a["test"]


def test_cap_is_a_deterministic_sample_in_original_order() -> None:
    rows = [ex(i) for i in range(100)]
    picked = cap(rows, 10, seed=3)
    assert len(picked) == 10 and picked == cap(rows, 10, seed=3)
    assert [int(e.id) for e in picked] == sorted(int(e.id) for e in picked)
    assert cap(rows, 10, seed=4) != picked
    assert cap(rows, None, 0) == rows


def test_prepare_examples_on_real_meetings_segments_and_counts() -> None:
    p = PrepareParams(max_rows={"train": None, "val": None, "test": None})
    splits, stats = prepare_examples(shared_examples("summarization"), p, seed=0)
    rows = [e for s in splits.values() for e in s]
    assert stats["raw_rows"] == 60
    assert stats["segments_added"] > 500  # QMSum transcripts run to 25k words
    assert max(words(e.context) for e in rows) <= p.segment_words
    assert stats["rows"] == {s: len(splits[s]) for s in splits}
    assert 0 <= stats["dropped_share"] < 0.5
    assert stats["context_words"]["p50"] <= stats["context_words"]["p95"] <= p.segment_words


# ------------------------------------------------------------------ the stage


def _project(tmp_path: Path, task: str, extra: str = "") -> Path:
    shutil.copy(shared_data(task), tmp_path / "dev.jsonl")
    (tmp_path / "params.yaml").write_text(
        f"base: {{task: {task}}}\ningest: {{format: shared, path: dev.jsonl}}\n{extra}"
    )
    return tmp_path / "params.yaml"


def test_prepare_writes_splits_and_stats(tmp_path: Path) -> None:
    params = load_params(_project(tmp_path, "qa"))
    ingest(params, tmp_path)
    stats = prepare(params, tmp_path)
    out = tmp_path / "data" / "prepared" / "qa"
    rows = {
        s: [json.loads(x) for x in (out / f"{s}.jsonl").read_text().splitlines()]
        for s in ("train", "val", "test")
    }
    assert {s: len(r) for s, r in rows.items()} == stats["rows"]
    assert stats["rows"]["val"] <= 64 and stats["rows"]["test"] <= 128
    assert json.loads((out / "stats.json").read_text()) == stats
    for split_rows in rows.values():
        for row in split_rows:
            e = Example.from_dict(row)
            assert e.task == "qa" and any(r in e.context for r in e.references)
    assert not list(out.glob(".*tmp"))  # temp files were renamed away


def test_failed_prepare_leaves_previous_prepared_data(tmp_path: Path) -> None:
    params = load_params(_project(tmp_path, "code"))
    ingest(params, tmp_path)
    prepare(params, tmp_path)
    out = tmp_path / "data" / "prepared" / "code"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    raw = tmp_path / "data" / "raw" / "code" / "records.jsonl"
    lines = raw.read_text().splitlines()
    raw.write_text("\n".join([*lines[:5], '{"id": "broken", "task": "code"', *lines[5:]]) + "\n")
    with pytest.raises(DataFileError, match=r"records\.jsonl:6: malformed JSON"):
        prepare(params, tmp_path)
    missing = json.dumps({"id": "no-context", "task": "code", "references": ["x"]})
    raw.write_text("\n".join([*lines[:3], missing]) + "\n")
    with pytest.raises(SchemaError, match="record 'no-context': required field 'context'"):
        prepare(params, tmp_path)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_prepare_without_raw_snapshot_says_what_to_run(tmp_path: Path) -> None:
    params = load_params(_project(tmp_path, "code"))
    with pytest.raises(DataFileError, match="run `taco ingest` first"):
        prepare(params, tmp_path)


def test_prepare_and_validate_params_reject_bad_values() -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        from_mapping(PrepareParams, {"min_words": 3}, "prepare")
    with pytest.raises(ConfigError, match="unknown split"):
        from_mapping(PrepareParams, {"max_rows": {"dev": 3}}, "prepare")
    with pytest.raises(ConfigError, match="outside the allowed range"):
        from_mapping(PrepareParams, {"test_fraction": 0.9}, "prepare")
    with pytest.raises(ConfigError, match="is not one of"):
        from_mapping(PrepareParams, {"long_context": "cut"}, "prepare")
    with pytest.raises(ConfigError, match="outside the allowed range"):
        from_mapping(ValidateParams, {"max_dropped_share": 1.5}, "validate")
