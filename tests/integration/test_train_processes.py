"""taco train as real processes: resume after kill -9, and 2-rank data parallelism (gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from taco.compress.compressor import Compressor
from taco.config import load_params
from taco.rl import train as tr
from tests.helpers.paths import ROOT
from tests.helpers.tiny_causal_lm import tiny_causal_lm_folder
from tests.helpers.training import train_setup


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _local_llm_params(root: Path, lm: Path, steps: int) -> Path:
    path = train_setup(root, train={"steps": steps, "checkpoint_every": 2})
    sections = yaml.safe_load(path.read_text())
    sections["llm"] = {"model": str(lm), "device": "cpu", "dtype": "float32", "cache": False}
    path.write_text(yaml.safe_dump(sections))
    return path


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_and_matches(tmp_path: Path) -> None:
    lm = tiny_causal_lm_folder(tmp_path / "lm")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    steps = 30
    pa, pb = _local_llm_params(a, lm, steps), _local_llm_params(b, lm, steps)
    cmd = [sys.executable, "-m", "taco", "train", "--no-progress", "--params"]
    proc = subprocess.Popen([*cmd, str(pb)], cwd=b, env=_env(), stderr=subprocess.DEVNULL)
    ckpt = b / "data/checkpoints/train/checkpoint.pt"
    deadline = time.time() + 120
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if ckpt.is_file():
            step = torch.load(ckpt, weights_only=False)["step"]
            if step >= 4:
                os.kill(proc.pid, signal.SIGKILL)
                killed_at = step
                break
        time.sleep(0.05)
    proc.wait()
    assert killed_at is not None and killed_at < steps, "the run ended before it could be killed"
    assert proc.returncode == -signal.SIGKILL
    done = subprocess.run([*cmd, str(pb)], cwd=b, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    run_b = json.loads((b / "data/models/taco/taco_run.json").read_text())
    assert run_b["resumed_from_step"] is not None and run_b["resumed_from_step"] >= 4

    torch.set_num_threads(1)
    tr.train(load_params(pa), a, progress=False)  # the same run, uninterrupted
    ma = Compressor.from_pretrained(str(a / "data/models/taco"), device="cpu").model
    mb = Compressor.from_pretrained(str(b / "data/models/taco"), device="cpu").model
    for x, y in zip(ma.parameters(), mb.parameters(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


RUNNER = """
import json, sys
import torch.distributed as dist
from pathlib import Path
from tests.helpers.training import FakeLLM
from taco.config import load_params
from taco.rl.train import train

root = Path(sys.argv[1])
record = train(load_params(root / "params.yaml"), root, llm=FakeLLM(), progress=False)
rank = dist.get_rank()
(root / f"rank{rank}.json").write_text(json.dumps(record["weights_sha256"]))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_ranks_with_gloo_end_with_identical_parameters(tmp_path: Path) -> None:
    train_setup(tmp_path, train={"steps": 3, "prompts_per_step": 4})
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.Popen(
        [str(torchrun), "--standalone", "--nproc_per_node=2", str(runner), str(tmp_path)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so a hang can be ended with the whole process group
    )
    try:
        _, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]
    d0 = json.loads((tmp_path / "rank0.json").read_text())
    d1 = json.loads((tmp_path / "rank1.json").read_text())
    assert d0 == d1
    run = json.loads((tmp_path / "data/models/taco/taco_run.json").read_text())
    assert run["world_size"] == 2 and run["weights_sha256"] == d0
    start = Compressor.from_pretrained(run["start_model"], device="cpu").model
    from taco.rl.checkpoint import weights_digest

    assert weights_digest(start) != d0  # it did train
