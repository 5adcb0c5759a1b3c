"""A git + DVC workspace holding this repository's pipeline (taco/, dags/, dvc.yaml,
params.yaml) with a tiny configuration: real GitHub code rows from ../shared/data, a tiny
causal LM as the target LLM and a tiny encoder as the start model, a few training steps."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers.paths import ROOT, shared_data

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def env() -> dict[str, str]:
    """This process's environment with the venv's bin first (the stages' `python`)."""
    return {
        **os.environ,
        **GIT_IDENTITY,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
    }


def run(cmd: list[str], cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, check=False)
    if ok:
        assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return proc


def git(*args: str, cwd: Path) -> str:
    return run(["git", *args], cwd).stdout.strip()


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path → bytes)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def tiny_models(folder: Path) -> dict[str, Path]:
    """A tiny causal LM (target LLM) and a tiny token-classifier compressor (start model)."""
    from tests.helpers.tiny_causal_lm import tiny_causal_lm_folder
    from tests.helpers.training import tiny_encoder_folder

    return {
        "llm": tiny_causal_lm_folder(folder / "llm"),
        "encoder": tiny_encoder_folder(folder / "encoder", classifier=True),
    }


def tiny_params(base: Path, models: dict[str, Path]) -> dict[str, Any]:
    """params.yaml sections for a pipeline run of a few seconds per stage."""
    return {
        "ingest": {
            "format": "shared",
            "path": str(shared_data("code")),
            "remote": str(base / "dvc-remote"),
        },
        "prepare": {"max_context_words": 200, "max_rows": {"train": 32, "val": 8, "test": 16}},
        "llm": {
            "model": str(models["llm"]),
            "device": "cpu",
            "dtype": "float32",
            "max_new_tokens": 8,
        },
        "train": {
            "base_model": str(models["encoder"]),
            "steps": 3,
            "prompts_per_step": 2,
            "samples_per_prompt": 2,
            "device": "cpu",
            "bf16": False,
            "max_seq_len": 128,
            "checkpoint_every": 2,
            "eval_every": 2,
            "eval_rows": 4,
        },
        "airflow": {"schedule": None},
    }


def make_workspace(folder: Path, sections: dict[str, Any]) -> Path:
    """A git + DVC project in ``folder`` with this repository's pipeline code and its
    params.yaml with ``sections`` merged over it (comments kept); committed."""
    from taco.pipeline import set_params

    folder.mkdir(parents=True)
    for name in ("taco", "dags"):
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "bentofile.yaml"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, folder / name)
    set_params(folder / "params.yaml", sections)
    git("init", "-q", cwd=folder)
    run([sys.executable, "-m", "dvc", "init", "-q"], folder)
    run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], folder)
    git("add", "-A", cwd=folder)
    git("commit", "-qm", "workspace", cwd=folder)
    return folder
