"""The `teacher` stage: outputs per prepared split, resumable through the cache, failure gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from taco.cli import main
from taco.config import Params, load_params
from taco.data.schema import Example
from taco.tasks.registry import get_task
from taco.tasks.teacher import TeacherError, run_teacher
from tests.helpers.openai_server import FakeOpenAIServer, echo_responder
from tests.helpers.paths import shared_data
from tests.helpers.tiny_causal_lm import tiny_causal_lm_folder

QA_ROWS = [
    Example(f"q{i}", "qa", f"Paris is the capital of France {i}.", f"Capital {i}?", ("Paris",))
    for i in range(5)
]


def write_project(root: Path, examples: list[Example], llm: dict[str, Any], task: str) -> Path:
    """A params.yaml and prepared splits under ``root``; returns the params path."""
    prepared = root / "data" / "prepared" / task
    prepared.mkdir(parents=True)
    for split, rows in {"train": examples[:3], "val": examples[3:4], "test": examples[4:]}.items():
        lines = [json.dumps(ex.to_dict()) for ex in rows]
        (prepared / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    params = {
        "base": {"task": task, "data_dir": str(root / "data")},
        "llm": {"cache_path": str(root / "cache.sqlite"), **llm},
        "teacher": {"chunk_size": 2},
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def read_split(root: Path, task: str, split: str) -> list[dict[str, Any]]:
    path = root / "data" / "teacher" / task / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_teacher_writes_every_split_and_reruns_from_the_cache(tmp_path: Path) -> None:
    model = tiny_causal_lm_folder(tmp_path / "tiny")
    llm = {"model": str(model), "dtype": "float32", "max_new_tokens": 6}
    params = write_project(tmp_path, QA_ROWS, llm, "qa")

    assert main(["teacher", "--params", str(params)]) == 0
    train = read_split(tmp_path, "qa", "train")
    assert [r["id"] for r in train] == ["q0", "q1", "q2"]
    assert all(isinstance(r["output"], str) and r["context_tokens"] > 0 for r in train)
    assert [r["id"] for r in read_split(tmp_path, "qa", "test")] == ["q4"]
    meta = json.loads((tmp_path / "data" / "teacher" / "qa" / "meta.json").read_text())
    assert meta["splits"] == {
        s: {"rows": n, "failed": 0} for s, n in [("train", 3), ("val", 1), ("test", 1)]
    }
    assert "Question: {question}" in meta["template"]
    assert meta["metrics"]["llm/cache_misses"] == 5.0

    again = run_teacher(load_params(params))
    assert again["metrics"]["llm/calls"] == 0.0 and again["metrics"]["llm/cache_hits"] == 5.0
    assert read_split(tmp_path, "qa", "train") == train


def test_teacher_limit_and_split_options(tmp_path: Path) -> None:
    params = write_project(tmp_path, QA_ROWS, {"model": "unused"}, "qa")
    with FakeOpenAIServer() as server:
        overlay = yaml.safe_load(params.read_text())
        overlay["llm"].update(backend="openai", openai={"base_url": server.base_url})
        params.write_text(yaml.safe_dump(overlay))
        meta = run_teacher(load_params(params), splits=["train"], limit=2)
    assert meta["splits"] == {"train": {"rows": 2, "failed": 0}}
    rows = read_split(tmp_path, "qa", "train")
    prompt = get_task("qa", load_params(params)).prompt(QA_ROWS[0].context, QA_ROWS[0].question)
    assert rows[0]["output"] == echo_responder(prompt)


def test_teacher_fails_when_too_many_answers_are_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = write_project(tmp_path, QA_ROWS, {"model": "m"}, "qa")
    with FakeOpenAIServer(fail_rate=1.0, fail_kinds=("401",)) as server:
        overlay = yaml.safe_load(params.read_text())
        overlay["llm"].update(backend="openai", openai={"base_url": server.base_url})
        params.write_text(yaml.safe_dump(overlay))
        with pytest.raises(TeacherError, match="got no answer"):
            run_teacher(load_params(params))
        assert main(["teacher", "--params", str(params)]) == 1
    assert "max_failed_fraction" in capsys.readouterr().err


def test_missing_prepared_split_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = write_project(tmp_path, QA_ROWS, {}, "qa")
    (tmp_path / "data" / "prepared" / "qa" / "val.jsonl").unlink()
    assert main(["teacher", "--params", str(params)]) == 2
    assert "prepared split not found" in capsys.readouterr().err


@pytest.mark.slow
def test_teacher_with_the_embedded_smollm2_on_real_code(tmp_path: Path) -> None:
    rows = []
    with shared_data("code").open() as fh:
        for line in list(fh)[:5]:
            raw = json.loads(line)
            rows.append(Example(raw["id"], "code", raw["context"], "", (raw["reference"],)))
    params = write_project(tmp_path, rows, {"max_new_tokens": 12}, "code")
    meta = run_teacher(load_params(params))
    assert meta["llm"]["model"] == "embedded:SmolLM2-135M-Instruct.Q4_1.gguf"
    assert meta["template"] == Params().tasks.templates["code"]  # the embedded default's
    outputs = [
        r["output"] for s in ("train", "val", "test") for r in read_split(tmp_path, "code", s)
    ]
    assert len(outputs) == 5 and all(o and o.strip() for o in outputs)
