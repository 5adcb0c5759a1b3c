"""evaluate / gate / report as real processes: `dvc repro gate` twice in a temporary git + DVC
project (the second skips), `taco gate` exits 0 on a "no", errors are one line with exit 2,
and the report renders (parsed: every image resolves, nothing is fetched)."""

from __future__ import annotations

import base64
import html.parser
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from taco.overlay import deep_merge
from tests.helpers.evaluation import eval_params, eval_setup
from tests.helpers.paths import ROOT, run_taco

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(cwd),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC project holding the tiny evaluation data and this repo's evaluate and gate
    stages (the stages before them are plain files here)."""
    base = tmp_path_factory.mktemp("evaldvc")
    repo = base / "repo"
    repo.mkdir()
    eval_setup(repo, n_rows=4)
    # the LLM cache and the tiny LM live outside the tracked tree
    shutil.move(repo / "lm", base / "lm")
    shutil.copytree(ROOT / "taco", repo / "taco", ignore=shutil.ignore_patterns("__pycache__"))
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    (repo / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": {k: stages[k] for k in ("evaluate", "gate")}}, sort_keys=False)
    )
    tiny = eval_params(base)
    tiny["llm"]["cache_path"] = str(base / "llm-cache.sqlite")
    full = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), tiny)
    (repo / "params.yaml").write_text(yaml.safe_dump(full, sort_keys=False))
    (repo / "llm-cache.sqlite").unlink(missing_ok=True)
    run(["git", "init", "-q"], repo)
    run([sys.executable, "-m", "dvc", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "project"], repo)
    return repo


@pytest.fixture(scope="module")
def first_repro(repo: Path) -> str:
    """The first `dvc repro gate` of the project (its stdout)."""
    return run([sys.executable, "-m", "dvc", "repro", "gate"], repo).stdout


def test_dvc_repro_gate_twice_the_second_skips(repo: Path, first_repro: str) -> None:
    first = first_repro
    assert "Running stage 'evaluate'" in first
    assert "Running stage 'gate'" in first
    gate = json.loads((repo / "data/reports/gate.json").read_text())
    assert set(gate) == {
        "task", "passed", "metric", "checks", "reasons", "recommended_rate", "model", "champion",
    }  # fmt: skip
    assert gate["task"] == "code" and gate["model"] == "data/models/taco"
    assert gate["passed"] == (not gate["reasons"])
    second = run([sys.executable, "-m", "dvc", "repro", "gate"], repo)
    assert "Stage 'evaluate' didn't change, skipping" in second.stdout
    assert "Stage 'gate' didn't change, skipping" in second.stdout
    assert "Running stage" not in second.stdout
    shown = json.loads(run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], repo).stdout)
    assert "code/rate_0.33/trained/bleu" in json.dumps(shown)


def test_gate_says_no_with_exit_0_and_errors_exit_2(
    repo: Path, first_repro: str, tmp_path: Path
) -> None:
    strict = yaml.safe_load((repo / "params.yaml").read_text())
    strict["gate"]["min_score"] = 0.99
    (tmp_path / "strict.yaml").write_text(yaml.safe_dump(strict))
    res = run_taco("gate", "--params", str(tmp_path / "strict.yaml"), cwd=repo)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[-1])["passed"] is False
    gate = json.loads((repo / "data/reports/gate.json").read_text())
    assert any("below the minimum 0.99" in r for r in gate["reasons"])
    other = dict(strict, base={**strict["base"], "task": "qa"})
    (tmp_path / "qa.yaml").write_text(yaml.safe_dump(other))
    res = run_taco("gate", "--params", str(tmp_path / "qa.yaml"), cwd=repo)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        f"taco: error: {repo}/data/reports/eval/metrics.json: the metrics are for code, not "
        "base.task 'qa' (rerun `taco evaluate` for this task)"
    )
    broken = dict(strict, gate={**strict["gate"], "champion": "no/such/model"})
    (tmp_path / "champ.yaml").write_text(yaml.safe_dump(broken))
    res = run_taco("gate", "--params", str(tmp_path / "champ.yaml"), cwd=repo)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("taco: error: gate.champion: ")
    run_taco("gate", cwd=repo)  # leave the project's own decision in place


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        for name in ("src", "href"):
            if (a.get(name) or "").startswith(("http:", "https:", "//")):
                self.external.append(a[name] or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_report_renders_self_contained(repo: Path, first_repro: str) -> None:
    from PIL import Image

    res = run_taco("report", cwd=repo)
    assert res.returncode == 0, res.stderr
    out = repo / "data/reports/run"
    page = _Page()
    page.feed((out / "report.html").read_text())
    assert len(page.images) == 1 + int((repo / "data/reports/train").exists())
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as img:
            img.verify()
    assert not page.external
    text = " ".join(page.text)
    for needed in ("Data version", "Gate decision", "Recommended rate", "trained", "truncate",
                   "Examples at rate 0.33", "answer:"):  # fmt: skip
        assert needed in text, needed
    md = (out / "report.md").read_text()
    assert "## Comparison at equal budget" in md and "(rate_quality.png)" in md
    assert (out / "rate_quality.png").is_file()
