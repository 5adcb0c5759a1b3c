"""taco.eval.evaluate end to end on a tiny split: the tiny causal LM as target LLM (real teacher
outputs), a tiny compressor; the cache makes a rerun free and a retrain pay only for trained;
failed LLM calls are excluded pairwise; bad input is one clear error."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from taco.config import ConfigError, load_params
from taco.errors import StageFailed
from taco.eval import evaluate as ev
from taco.eval import keys
from taco.layout import Layout
from tests.helpers.evaluation import eval_setup
from tests.helpers.openai_server import FakeOpenAIServer
from tests.helpers.training import tiny_encoder_folder, write_params

pytestmark = pytest.mark.slow

N_ROWS = 5


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("eval")
    params = load_params(eval_setup(root, n_rows=N_ROWS))
    summary = ev.run(params, root, no_progress=True)
    return {"root": root, "params": params, "summary": summary}


def read_rows(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / "data/reports/eval/rows.jsonl").open()]


def test_every_compressor_and_rate_is_scored(project: dict[str, Any]) -> None:
    root, summary = project["root"], project["summary"]
    assert summary["compressors"] == [
        "trained",
        "uncompressed",
        "random",
        "truncate",
        "selective_context",
        "start",
    ]  # fmt: skip  (question_overlap: no questions; production: no champion; llmlingua: off)
    metrics = json.loads((root / "data/reports/eval/metrics.json").read_text())
    for rate in (0.33, 0.5):
        assert metrics[keys.count_key("code", rate, "rows")] == N_ROWS
        assert metrics[keys.count_key("code", rate, "unscorable")] == 0
        for c in summary["compressors"]:
            for m in ("bleu", "rouge1", "rouge2", "rougeL", "teacher_bleu", "teacher_rougeL",
                      "teacher_loglik", "achieved_rate", "latency_ms"):  # fmt: skip
                assert math.isfinite(metrics[keys.key("code", rate, c, m)]), (rate, c, m)
            if c != "uncompressed":
                assert metrics[keys.key("code", rate, c, "over_budget")] == 0
                assert metrics[keys.key("code", rate, c, "achieved_rate")] <= rate
            if c != "trained":
                low, high = (
                    metrics[keys.ci_key("code", rate, c, "bleu", p)] for p in ("ci_low", "ci_high")
                )
                assert low <= metrics[keys.ci_key("code", rate, c, "bleu", "delta")] <= high
        assert metrics[keys.key("code", rate, "uncompressed", "teacher_bleu")] == 1.0
    assert keys.recommended_key("code") in metrics


def test_rows_are_the_audit_trail_of_the_metrics(project: dict[str, Any]) -> None:
    root = project["root"]
    rows = read_rows(root)
    assert len(rows) == N_ROWS * 2 * 6
    metrics = json.loads((root / "data/reports/eval/metrics.json").read_text())
    for r in rows:
        if r["compressor"] != "uncompressed":
            assert (
                r["compressed_tokens"]
                <= r["budget"]
                == math.floor(r["rate"] * r["origin_tokens"] + 1e-9)
            )
        assert r["achieved_rate"] == pytest.approx(r["compressed_tokens"] / r["origin_tokens"])
    trained = [
        r["scores"]["bleu"] for r in rows if r["compressor"] == "trained" and r["rate"] == 0.5
    ]
    assert metrics["code/rate_0.5/trained/bleu"] == pytest.approx(np.mean(trained), abs=1e-6)


def test_reports_and_plot_data_are_written(project: dict[str, Any]) -> None:
    from PIL import Image

    eval_dir = project["root"] / "data/reports/eval"
    text = (eval_dir / "report.md").read_text()
    assert "| trained |" in text and "Recommended rate" in text and "rate 0.33" in text
    with Image.open(eval_dir / "rate_quality.png") as img:
        img.verify()
    tsv = (eval_dir / "plots" / "trained.tsv").read_text().splitlines()
    assert tsv[0] == "rate\tscore\tteacher_bleu" and len(tsv) == 3


def test_a_rerun_costs_no_llm_call_and_a_retrain_pays_only_for_trained(
    project: dict[str, Any],
) -> None:
    root, params = project["root"], project["params"]
    again = ev.run(params, root, no_progress=True)
    assert again["llm"]["llm/calls"] == 0
    before = json.loads((root / "data/reports/eval/metrics.json").read_text())
    # "retrain": other weights in the trained folder; every baseline's answers are cached
    model = Layout.of(params, root).trained_model
    record = (model / "taco_run.json").read_text()
    shutil.rmtree(model)
    tiny_encoder_folder(model, classifier=True, seed=7)
    (model / "taco_run.json").write_text(record)
    retrained = ev.run(params, root, no_progress=True)
    calls = retrained["llm"]["llm/calls"]
    assert 0 < calls <= 2 * 2 * N_ROWS  # generate + loglik, at most both rates of trained
    after = json.loads((root / "data/reports/eval/metrics.json").read_text())
    for c in ("truncate", "random", "selective_context", "start"):
        assert after[f"code/rate_0.5/{c}/teacher_bleu"] == before[f"code/rate_0.5/{c}/teacher_bleu"]


def test_failed_llm_calls_are_excluded_pairwise(project: dict[str, Any], tmp_path: Path) -> None:
    """An endpoint that fails some calls: those rows are unscorable for every compressor."""
    src = project["root"]
    for part in ("data", "lm"):
        shutil.copytree(src / part, tmp_path / part)
    params = yaml.safe_load((src / "params.yaml").read_text())
    with FakeOpenAIServer(faults=["500", "ok", "ok", "ok", "ok", "ok", "500"]) as server:
        params["llm"] = {
            "backend": "openai",
            "model": "tiny",
            "max_new_tokens": 8,
            "cache": False,
            "openai": {
                "base_url": server.base_url,
                "api_key_env": None,
                "max_retries": 0,
                "concurrency": 1,
                "tokenizer": str(tmp_path / "lm"),
            },
        }
        params["evaluate"]["selective_context_model"] = str(tmp_path / "lm")
        params["evaluate"]["max_unscorable_fraction"] = 1.0
        loaded = load_params(write_params(tmp_path, params))
        ev.run(loaded, tmp_path, no_progress=True)
        assert server.count("500") == 2
    rows = read_rows(tmp_path)
    metrics = json.loads((tmp_path / "data/reports/eval/metrics.json").read_text())
    lost = {(r["rate"], r["id"]) for r in rows if not r["scorable"]}
    assert 1 <= len(lost) <= 2
    assert all(r["scores"] == {} for r in rows if not r["scorable"])  # never scored as 0
    for rate in (0.33, 0.5):
        gone = {i for r, i in lost if r == rate}
        assert metrics[keys.count_key("code", rate, "unscorable")] == len(gone)
        assert metrics[keys.count_key("code", rate, "rows")] == N_ROWS - len(gone)
        for c in ("trained", "truncate", "uncompressed"):
            kept = [
                r["scores"]["teacher_bleu"]
                for r in rows
                if r["rate"] == rate and r["compressor"] == c and r["id"] not in gone
            ]
            assert metrics[keys.key("code", rate, c, "teacher_bleu")] == pytest.approx(
                np.mean(kept), abs=1e-6
            )
    assert "code/rate_0.5/trained/teacher_loglik" not in metrics  # the endpoint cannot score it
    # more lost rows than allowed: the stage fails with one line saying so
    params["evaluate"]["max_unscorable_fraction"] = 0.0
    with FakeOpenAIServer(faults=["500"]) as server:
        params["llm"]["openai"]["base_url"] = server.base_url
        with pytest.raises(StageFailed, match=r"1 of 5 test rows at rate 0.33 lost an LLM answer"):
            ev.run(load_params(write_params(tmp_path, params)), tmp_path, no_progress=True)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("no_split", r"prepared split not found: .*test.jsonl \(run `taco prepare` first\)"),
        ("empty_split", r"the test split is empty: .*test.jsonl"),
        ("no_model", r"trained model not found: .*models/taco \(run `taco train`\)"),
        ("bad_model", r"trained model .*models/taco does not load: "),
    ],
)
def test_bad_input_is_one_clear_error(
    project: dict[str, Any], tmp_path: Path, breakage: str, message: str
) -> None:
    src = project["root"]
    shutil.copytree(src / "data", tmp_path / "data")
    params = project["params"]
    layout = Layout.of(params, tmp_path)
    if breakage == "no_split":
        layout.split("test").unlink()
    elif breakage == "empty_split":
        layout.split("test").write_text("")
    elif breakage == "no_model":
        shutil.rmtree(layout.trained_model)
    else:
        (layout.trained_model / "config.json").write_text('{"architectures": ["BertFor')
    with pytest.raises(Exception, match=message) as info:
        ev.run(params, tmp_path, no_progress=True)
    assert getattr(info.value, "exit_code", None) == 2  # a UserError: one line, exit 2


def test_a_rate_outside_the_range_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("evaluate:\n  rates: [0.33, 1.5]\n")
    with pytest.raises(ConfigError, match=r"evaluate.rates\[1\]: 1.5 is outside .*\(0.0, 1.0\]"):
        load_params(path)
    path.write_text("evaluate:\n  baselines: [truncate, lingua]\n")
    with pytest.raises(ConfigError, match=r"unknown compressor\(s\) lingua"):
        load_params(path)
