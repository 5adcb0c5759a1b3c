"""taco.rl.train: the loop, logging, checkpoints and resume, bad input and faults."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from taco.compress.compressor import Compressor
from taco.config import load_params
from taco.layout import Layout
from taco.rl import train as tr
from taco.rl.rows import TrainError, batch_indices
from tests.helpers.training import FakeLLM, train_setup

METRICS = (
    "reward/mean",
    "reward/unscorable",
    "compression/rate",
    "policy/entropy",
    "loss/policy",
    "llm/calls",
    "llm/cache_hit_rate",
    "perf/samples_per_s",
)


def _tsv(reports: Path, name: str) -> list[tuple[int, float]]:
    lines = (reports / "plots" / "metrics" / f"{name}.tsv").read_text().splitlines()
    col = lines[0].split("\t").index("step")
    return [(int(ln.split("\t")[col]), float(ln.split("\t")[-1])) for ln in lines[1:]]


def test_batch_indices_are_seeded_epochs() -> None:
    first_epoch = [i for s in range(3) for i in batch_indices(6, s, 2, seed=0)]
    assert sorted(first_epoch) == list(range(6))  # every row once per epoch
    assert batch_indices(6, 5, 2, 0) == batch_indices(6, 5, 2, 0)
    assert first_epoch != [i for s in range(3) for i in batch_indices(6, s, 2, seed=1)]


def test_cosine_schedule_warms_up_and_decays() -> None:
    params = load_params(Path("/nonexistent.yaml"))
    p = tr.TrainParams(steps=10, warmup_steps=2)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = tr.cosine_schedule(opt, p)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert lrs[2] == pytest.approx(1.0) and lrs[-1] < 0.05
    assert params.train.steps == 60  # defaults load without a file


def test_train_logs_checkpoints_and_saves_a_compressor(tmp_path: Path) -> None:
    params = load_params(train_setup(tmp_path))
    llm = FakeLLM()
    record = tr.train(params, tmp_path, llm=llm, progress=False)
    layout = Layout.of(params, tmp_path)
    for name in METRICS:
        assert [s for s, _ in _tsv(layout.train_reports, name)] == [0, 1, 2, 3], name
    assert all(0 <= v <= 1 for _, v in _tsv(layout.train_reports, "reward/mean"))
    assert (layout.train_checkpoints / "checkpoint.pt").is_file()
    run = json.loads((layout.trained_model / "taco_run.json").read_text())
    assert run["config"]["train"]["samples_per_prompt"] == 3
    assert run["steps"] == 4 and run["bad_steps"] == 0 and run["start_model"].endswith("enc")
    assert llm.calls == 4 * 2 * 3
    comp = Compressor.from_pretrained(str(layout.trained_model), device="cpu")
    start = Compressor.from_pretrained(record["start_model"], device="cpu")
    changed = any(
        not torch.equal(a, b)
        for a, b in zip(comp.model.parameters(), start.model.parameters(), strict=True)
    )
    assert changed
    assert comp.compress("def f(x):\n    return x + 1", rate=0.5).compressed_prompt


def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    pa = load_params(train_setup(a, train={"steps": 6}))
    pb = load_params(train_setup(b, train={"steps": 6}))
    tr.train(pa, a, llm=FakeLLM(), progress=False)

    class Crash(FakeLLM):
        def loglik(self, prompts, continuations, *, reduction="mean"):
            if self.calls >= 4 * 2 * 3:  # dies during step 5, after the step-4 checkpoint
                raise KeyboardInterrupt
            return super().loglik(prompts, continuations, reduction=reduction)

    with pytest.raises(KeyboardInterrupt):
        tr.train(pb, b, llm=Crash(), progress=False)
    assert torch.load(b / "data/checkpoints/train/checkpoint.pt", weights_only=False)["step"] == 4
    record = tr.train(pb, b, llm=FakeLLM(), progress=False)
    assert record["resumed_from_step"] == 4
    ma = Compressor.from_pretrained(str(a / "data/models/taco"), device="cpu").model
    mb = Compressor.from_pretrained(str(b / "data/models/taco"), device="cpu").model
    for x, y in zip(ma.parameters(), mb.parameters(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    ra, rb = (_tsv(d / "data/reports/train", "reward/mean") for d in (a, b))
    assert [s for s, _ in rb] == list(range(6))
    assert [v for _, v in rb] == pytest.approx([v for _, v in ra], abs=1e-6)


def test_a_resumed_runs_record_and_summary_span_the_steps_before_the_kill(
    tmp_path: Path,
) -> None:
    """The run record's first steps (what ``taco summary`` shows) start at step 1 and its
    reward/val curve at step 0 after a kill and resume, not at the resumed steps."""
    from taco import pipeline

    params = _with_val_rows(
        tmp_path, {"steps": 6, "checkpoint_every": 4, "eval_every": 2, "eval_rows": 3}
    )
    checkpoint = Layout.of(params, tmp_path).train_checkpoints / "checkpoint.pt"

    class Crash(FakeLLM):
        def loglik(self, prompts, continuations, *, reduction="mean"):
            if checkpoint.is_file():  # killed right after the step-4 checkpoint
                raise KeyboardInterrupt
            return super().loglik(prompts, continuations, reduction=reduction)

    with pytest.raises(KeyboardInterrupt):
        tr.train(params, tmp_path, llm=Crash(), progress=False)
    record = tr.train(params, tmp_path, llm=FakeLLM(), progress=False)
    assert record["resumed_from_step"] == 4
    rewards = [v for _, v in _tsv(Layout.of(params, tmp_path).train_reports, "reward/mean")]
    assert len(rewards) == 6  # steps 1..6, each once
    first = record["first_steps"]["reward/mean"]
    assert first == pytest.approx(sum(rewards) / 6, abs=1e-5)  # window of 10: all six
    assert first != pytest.approx(sum(rewards[4:]) / 2, abs=1e-5)  # not the resumed two
    assert [s for s, _ in record["val_rewards"]] == [0, 2, 4, 6]
    run = json.loads((Layout.of(params, tmp_path).trained_model / "taco_run.json").read_text())
    assert run["first_steps"] == record["first_steps"]
    assert f"reward/mean      {first:.4f} (first steps)" in pipeline.summary(tmp_path, params)


def test_changed_params_do_not_resume(tmp_path: Path) -> None:
    params = load_params(train_setup(tmp_path, train={"steps": 2}))
    tr.train(params, tmp_path, llm=FakeLLM(), progress=False)
    params = load_params(train_setup(tmp_path, train={"steps": 2, "entropy_coef": 0.1}))
    assert tr.train(params, tmp_path, llm=FakeLLM(), progress=False)["resumed_from_step"] is None


def test_no_training_rows_is_one_clear_error(tmp_path: Path) -> None:
    params = load_params(train_setup(tmp_path))
    (tmp_path / "data/teacher/code/train.jsonl").write_text("")
    with pytest.raises(TrainError, match="no training rows"):
        tr.train(params, tmp_path, llm=FakeLLM(), progress=False)


def test_non_finite_losses_are_skipped_then_stop_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = load_params(train_setup(tmp_path, train={"steps": 4, "max_bad_steps": 1}))
    real = tr.sequence_log_prob
    calls = {"n": 0}

    def sometimes_nan(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        return out * math.nan if calls["n"] in (2, 3) else out

    monkeypatch.setattr(tr, "sequence_log_prob", sometimes_nan)
    with pytest.raises(TrainError, match="non-finite"):
        tr.train(params, tmp_path, llm=FakeLLM(), progress=False)
    bad = _tsv(Layout.of(params, tmp_path).train_reports, "train/bad_steps")
    assert [v for _, v in bad] == [0.0, 1.0, 2.0]


def test_unscorable_samples_are_counted_and_training_completes(tmp_path: Path) -> None:
    params = load_params(train_setup(tmp_path, train={"steps": 3}))
    record = tr.train(params, tmp_path, llm=FakeLLM(fail_every=5), progress=False)
    share = [v for _, v in _tsv(Layout.of(params, tmp_path).train_reports, "reward/unscorable")]
    assert record["steps"] == 3
    assert sum(share) / len(share) == pytest.approx(0.2, abs=0.06)


def test_an_llm_endpoint_failing_20_percent_of_calls(tmp_path: Path) -> None:
    import yaml

    from tests.helpers.openai_server import FakeOpenAIServer
    from tests.helpers.tiny_causal_lm import tiny_causal_lm_folder

    lm = tiny_causal_lm_folder(tmp_path / "lm")  # its tokenizer counts tokens
    path = train_setup(tmp_path, train={"steps": 3, "prompts_per_step": 4, "samples_per_prompt": 4})
    sections = yaml.safe_load(path.read_text())
    with FakeOpenAIServer(fail_rate=0.2, fail_kinds=("500",), seed=3) as server:
        sections["llm"] = {
            "backend": "openai",
            "model": "fake",
            "cache": False,
            "openai": {
                "base_url": server.base_url,
                "api_key_env": None,
                "max_retries": 0,
                "tokenizer": str(lm),
            },
        }
        sections["reward"] = {"name": "taco_rl", "tolerance_tokens": 1000}
        path.write_text(yaml.safe_dump(sections))
        params = load_params(path)
        record = tr.train(params, tmp_path, progress=False)
        failed = server.count("500")
    share = [v for _, v in _tsv(Layout.of(params, tmp_path).train_reports, "reward/unscorable")]
    assert record["steps"] == 3 and failed > 0
    assert 0.05 < sum(share) / len(share) < 0.4
    assert sum(share) * 16 == pytest.approx(failed)  # every failed call, and only those


def test_budget_sampling_trains_at_the_target_rate(tmp_path: Path) -> None:
    params = load_params(train_setup(tmp_path, train={"steps": 2, "sampling": "budget"}))
    record = tr.train(params, tmp_path, llm=FakeLLM(), progress=False)
    assert record["steps"] == 2
    rates = [v for _, v in _tsv(Layout.of(params, tmp_path).train_reports, "compression/rate")]
    assert all(0.3 < r < 0.7 for r in rates)  # encoder-token budget, counted in characters


def _with_val_rows(root: Path, train: dict) -> Any:
    """``train_setup`` plus 5 val rows with teacher outputs; returns the params."""
    from tests.helpers.training import write_prepared, write_teacher

    params = load_params(train_setup(root, train=train))
    val = write_prepared(root, "code", 20, split="val")[-5:]
    (root / "data/prepared/code/val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in val))
    write_teacher(root, "code", val, FakeLLM(), split="val")
    return params


def _val_of(folder: str, params: Any, root: Path) -> float:
    """``reward/val`` of a saved compressor, measured as training measures it."""
    from taco.rl.rows import load_rows
    from taco.tasks.registry import get_task

    rows = load_rows(params, root, "val")[: params.train.eval_rows]
    comp = Compressor.from_pretrained(folder, device="cpu")
    llm = FakeLLM()
    tr.set_budget_units(comp, llm, params.train.budget_tokens)
    return tr.validation_reward(comp, rows, llm=llm, task=get_task("code", params), params=params)


def test_validation_reward_of_the_deployed_policy_is_logged(tmp_path: Path) -> None:
    params = _with_val_rows(tmp_path, {"eval_every": 2, "eval_rows": 3})
    record = tr.train(params, tmp_path, llm=FakeLLM(), progress=False)
    curve = _tsv(Layout.of(params, tmp_path).train_reports, "reward/val")
    assert [s for s, _ in curve] == [0, 2, 4]
    assert [s for s, _ in record["val_rewards"]] == [0, 2, 4]
    assert all(0 < v <= 1 for _, v in curve)
    # step 0 is the start model before any update; the last point is the saved model
    start, saved = record["start_model"], str(Layout.of(params, tmp_path).trained_model)
    assert record["val_rewards"][0][1] == pytest.approx(_val_of(start, params, tmp_path), abs=6e-6)
    assert record["val_rewards"][-1][1] == pytest.approx(_val_of(saved, params, tmp_path), abs=6e-6)
    assert record["kept_step"] == 4


def test_greedy_baseline_scores_the_deployed_compression_of_each_prompt(
    tmp_path: Path,
) -> None:
    """``train.baseline: greedy`` (self-critical): every step also scores what inference
    would deploy for its prompts (one more LLM call per prompt) and logs it as
    ``reward/greedy``; at step 0 that is the start model's deployed reward on those rows."""
    from taco.rl.rows import load_rows
    from taco.tasks.registry import get_task

    params = load_params(
        train_setup(tmp_path, train={"steps": 3, "baseline": "greedy", "prompts_per_step": 2})
    )
    llm = FakeLLM()
    record = tr.train(params, tmp_path, llm=llm, progress=False)
    assert record["steps"] == 3
    greedy = _tsv(Layout.of(params, tmp_path).train_reports, "reward/greedy")
    assert [s for s, _ in greedy] == [0, 1, 2]
    assert all(0 < v <= 1 for _, v in greedy)
    assert llm.calls == 3 * 2 * (params.train.samples_per_prompt + 1)
    # step 0's prompts, compressed by the start model as inference would, score the same
    rows = load_rows(params, tmp_path, "train")
    order = batch_indices(len(rows), 0, 2, params.base.seed)
    comp = Compressor.from_pretrained(record["start_model"], device="cpu")
    tr.set_budget_units(comp, FakeLLM(), params.train.budget_tokens)
    first = tr.validation_reward(
        comp, [rows[i] for i in order], llm=FakeLLM(), task=get_task("code", params), params=params
    )
    assert greedy[0][1] == pytest.approx(first, abs=6e-6)


def test_keep_best_val_saves_the_best_validation_point(tmp_path: Path) -> None:
    """``train.keep: best_val``: the saved weights are those of the best ``reward/val``
    point (the start included), and taco_run.json says which step that was."""
    from taco.config import ConfigError

    over = {"eval_every": 1, "eval_rows": 3, "keep": "best_val", "steps": 6, "head_lr": 0.5}
    params = _with_val_rows(tmp_path, over)
    record = tr.train(params, tmp_path, llm=FakeLLM(), progress=False)
    curve = dict(record["val_rewards"])
    best = max(curve.values())
    assert curve[record["kept_step"]] == best and min(curve) <= record["kept_step"]
    assert len(set(curve.values())) > 1  # the curve moved, so choosing means something
    saved = str(Layout.of(params, tmp_path).trained_model)
    assert _val_of(saved, params, tmp_path) == pytest.approx(best, abs=6e-6)
    # a rerun resumes from the last checkpoint, which carries the best point and its weights
    again = tr.train(params, tmp_path, llm=FakeLLM(), progress=False)
    assert again["resumed_from_step"] == 6 and again["kept_step"] == record["kept_step"]
    assert again["weights_sha256"] == record["weights_sha256"]
    with pytest.raises(ConfigError, match="eval_rows"):
        load_params(train_setup(tmp_path / "x", train={"keep": "best_val", "eval_rows": 0}))


def test_line_units_train_and_are_saved_with_the_model(tmp_path: Path) -> None:
    from taco.config import ConfigError

    params = load_params(
        train_setup(tmp_path, train={"steps": 2, "sampling": "budget", "unit": "line"})
    )
    record = tr.train(params, tmp_path, llm=FakeLLM(), progress=False)
    assert record["steps"] == 2
    comp = Compressor.from_pretrained(str(Layout.of(params, tmp_path).trained_model), device="cpu")
    assert comp.unit == "line"
    code = "def f(x):\n    y = x + 1\n    z = y * 2\n    return z\n"
    kept = comp.compress(code, rate=0.5).compressed_prompt.splitlines()
    lines = code.splitlines()
    assert sum(line in lines for line in kept) >= len(kept) - 1  # whole lines, one partial
    with pytest.raises(ConfigError, match=r"train\.unit"):
        load_params(train_setup(tmp_path, train={"sampling": "bernoulli", "unit": "sentence"}))


def test_position_prior_trains_and_is_saved_with_the_model(tmp_path: Path) -> None:
    """``train.position_prior`` β: training samples and validates with it, and the saved
    model carries it, so inference ranks as training did; null keeps the start model's."""
    from taco.config import ConfigError

    over = {
        "steps": 2,
        "sampling": "budget",
        "position_prior": 1e3,
        "eval_every": 1,
        "eval_rows": 3,
    }
    params = _with_val_rows(tmp_path, over)
    record = tr.train(params, tmp_path, llm=FakeLLM(), progress=False)
    saved = str(Layout.of(params, tmp_path).trained_model)
    comp = Compressor.from_pretrained(saved, device="cpu")
    assert comp.position_prior == 1e3 and record["config"]["train"]["position_prior"] == 1e3
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    kept = comp.compress(text, rate=0.5, force_tokens=()).compressed_prompt.split()
    assert 2 < len(kept) < 10 and kept[:-1] == text.split()[: len(kept) - 1]  # truncation
    assert Compressor.from_pretrained(saved, device="cpu", position_prior=0.0).position_prior == 0
    with pytest.raises(ConfigError, match=r"train\.position_prior"):
        bernoulli = {"sampling": "bernoulli", "position_prior": 1}
        load_params(train_setup(tmp_path / "x", train=bernoulli))
    with pytest.raises(ConfigError, match=r"train\.position_prior"):
        load_params(train_setup(tmp_path / "y", train={"position_prior": -1}))
    paper = {"sampling": "bernoulli", "base_model": saved}  # a start model with a prior
    with pytest.raises(ConfigError, match="position prior of 1000"):
        tr.train(load_params(train_setup(tmp_path / "z", train=paper)), tmp_path / "z")


def test_training_without_dvclive_still_records_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bare GPU box (bench/gpu_check.sh) may lack dvclive: train, warn, keep taco_run.json."""
    monkeypatch.setitem(sys.modules, "dvclive", None)  # import dvclive -> ImportError
    params = load_params(train_setup(tmp_path, train={"steps": 2}))
    record = tr.train(params, tmp_path, llm=FakeLLM(), progress=False)
    layout = Layout.of(params, tmp_path)
    assert record["steps"] == 2 and 0 <= record["last_steps"]["reward/mean"] <= 1
    assert json.loads((layout.trained_model / "taco_run.json").read_text())["steps"] == 2
    assert not (layout.train_reports / "plots").exists()
    assert "dvclive is not installed" in caplog.text


def test_a_summary_torn_by_kill_9_does_not_stop_the_resume(tmp_path: Path) -> None:
    """kill -9 during DVCLive's rewrite of metrics.json leaves it cut; resuming must work."""
    params = load_params(train_setup(tmp_path, train={"steps": 2}))
    tr.train(params, tmp_path, llm=FakeLLM(), progress=False)
    reports = Layout.of(params, tmp_path).train_reports
    summary = reports / "metrics.json"
    assert json.loads(summary.read_text())["step"] == 1
    summary.write_text('{"reward": {"mean": 0.3')  # cut mid-write
    live = tr._open_live(reports, 2)
    assert live.step == 2 and not summary.exists()
    live.log_metric("reward/mean", 0.5)
    live.next_step()
    assert json.loads(summary.read_text())["reward"]["mean"] == 0.5


def test_budgets_count_the_reward_llms_tokens_by_default(tmp_path: Path) -> None:
    """``train.budget_tokens: llm`` (default): every sample keeps at most the reward's rate of
    the LLM's tokens, the rebuilt text included (FakeLLM counts characters, far from the
    encoder's tokens); ``encoder`` budgets land elsewhere."""
    rates = {}
    for units in ("llm", "encoder"):
        root = tmp_path / units
        over = {"sampling": "budget", "steps": 2, "budget_tokens": units, "eval_rows": 0}
        params = load_params(train_setup(root, train=over))
        tr.train(params, root, llm=FakeLLM(), progress=False)
        rates[units] = [
            v for _, v in _tsv(Layout.of(params, root).train_reports, "compression/rate")
        ]
    assert all(0.4 < v <= 0.5 for v in rates["llm"]), rates
    assert max(abs(a - b) for a, b in zip(rates["llm"], rates["encoder"], strict=True)) > 0.005
