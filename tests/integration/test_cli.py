"""The `taco` command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import taco
from tests.helpers.paths import ROOT, shared_data
from tests.helpers.paths import run_taco as run


def test_help_and_version():
    out = run("--help")
    assert out.returncode == 0 and "compress" in out.stdout and "task-aware" in out.stdout
    assert run("--version").stdout.strip() == f"taco {taco.__version__}"
    sub = run("compress", "--help")
    assert sub.returncode == 0 and "--target-tokens" in sub.stdout and "--force-token" in sub.stdout


def test_compress_file_as_json(tmp_path):
    text = json.loads(shared_data("qa").open().readline())["context"]
    f = tmp_path / "prompt.txt"
    f.write_text(text, encoding="utf-8")
    out = run("compress", "--rate", "0.4", "--force-token", "?", "--json", str(f))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["compressed_tokens"] <= int(0.4 * data["origin_tokens"])
    assert data["ratio"].endswith("x") and data["rate"].endswith("%")
    assert data["taco"]["compressed_prompt"] == data["compressed_prompt"]
    assert all(text[s:e] in data["compressed_prompt"] for s, e in data["taco"]["kept_spans"])


def test_compress_by_sentence():
    text = "Alpha beta gamma delta. Epsilon zeta eta theta iota. Kappa lambda mu."
    out = run("compress", "--rate", "0.5", "--unit", "sentence", "-", stdin=text)
    assert out.returncode == 0, out.stderr
    kept = out.stdout.strip()
    sentences = [s.strip() for s in text.split(".") if s.strip()]
    whole = [s for s in sentences if s in kept]
    assert whole and len(kept) < len(text)  # at least one sentence kept whole, text shorter


def test_compress_stdin_plain_text():
    text = "One two three four five six seven eight."
    out = run("compress", "--target-tokens", "5", "-", stdin=text)
    assert out.returncode == 0, out.stderr
    kept = out.stdout.split()
    assert 0 < len(kept) <= 5
    pos = 0
    for piece in kept:  # pieces of the original, in order
        pos = text.index(piece, pos) + len(piece)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compress", "--rate", "1.5", "-"], "rate must be in (0, 1]"),
        (["compress", "--target-tokens", "-4", "-"], "target_tokens must be an integer >= 0"),
        (["compress", "-"], "one of the arguments --rate --target-tokens is required"),
        (["compress", "--rate", "0.5", "--target-tokens", "3", "-"], "not allowed with"),
        (["compress", "--rate", "abc", "-"], "invalid float value"),
        (
            ["compress", "--rate", "0.5", "/no/such/file.txt"],
            "input file not found: /no/such/file.txt",
        ),
        (["nonsense"], "invalid choice"),
        (["compress", "--rate", "0.5", "--unit", "page", "-"], "invalid choice: 'page'"),
    ],
)
def test_errors_are_one_line_and_exit_2(args, message):
    out = run(*args, stdin="text")
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("taco: error: ") and message in lines[0]


def test_compress_counts_the_budget_in_the_target_llms_tokens(tmp_path):
    """``--tokenizer embedded``: origin and kept counts are SmolLM2 tokens (as `taco train`
    budgets), the kept text fits the rate in those tokens; a bad name is a clear error."""
    from taco.llm.embedded import load_tokenizer

    rows = (json.loads(line) for line in shared_data("code").open())
    text = next(r["context"] for r in rows if len(r["context"]) > 600)
    out = run("compress", "--rate", "0.5", "--tokenizer", "embedded", "--json", "-", stdin=text)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)["taco"]
    tok = load_tokenizer(None)
    count = len(tok(data["compressed_prompt"], add_special_tokens=False)["input_ids"])
    assert data["origin_tokens"] == len(tok(text, add_special_tokens=False)["input_ids"])
    assert data["compressed_tokens"] == count <= data["origin_tokens"] // 2
    assert count > 0.4 * data["origin_tokens"]  # filled, not just under
    bad = run("compress", "--rate", "0.5", "--tokenizer", str(tmp_path / "nope"), "-", stdin="a b")
    assert bad.returncode != 0 and "--tokenizer" in bad.stderr and "Traceback" not in bad.stderr


def _teacher_project(tmp_path, llm: dict) -> None:
    from tests.helpers.training import write_params, write_prepared

    write_prepared(tmp_path, "code", 4, split="train")
    write_params(tmp_path, {"base": {"task": "code"}, "teacher": {"splits": ["train"]}, "llm": llm})


def test_missing_llm_file_is_one_line_and_exit_2(tmp_path):
    _teacher_project(tmp_path, {"model": str(tmp_path / "nope.gguf"), "cache": False})
    out = run("teacher", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"taco: error: llm.model: GGUF file not found: {tmp_path / 'nope.gguf'}"
    )
    assert "Traceback" not in out.stderr


def test_bad_endpoint_url_is_one_line_and_exit_2(tmp_path):
    llm = {"backend": "openai", "model": "m", "openai": {"base_url": "ftp://127.0.0.1/v1"}}
    _teacher_project(tmp_path, llm)
    out = run("teacher", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "llm.openai.base_url: 'ftp://127.0.0.1/v1' must start with http(s)://" in out.stderr


def test_unreachable_endpoint_fails_the_stage_with_exit_1(tmp_path):
    import socket

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = {
        "backend": "openai",
        "model": "m",
        "cache": False,
        "openai": {"base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 0, "timeout_s": 2},
    }
    _teacher_project(tmp_path, llm)
    out = run("teacher", cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("taco: failed: teacher: 4 of 4 train")


def test_crlf_file_comes_back_with_crlf(tmp_path):
    text = "First line of the note.\r\nSecond line here.\r\nThird line ends it.\r\n"
    f = tmp_path / "crlf.txt"
    f.write_bytes(text.encode("utf-8"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "taco", "compress", "--rate", "0.6", str(f)]
    out = subprocess.run(cmd, env=env, capture_output=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    kept = out.stdout.decode("utf-8")[:-1]  # bytes as written; the CLI adds one "\n"
    assert "\r\n" in kept and "\n" not in kept.replace("\r\n", "")


def test_a_named_params_file_that_is_missing_is_an_error(tmp_path):
    out = run("params", "--params", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == f"taco: error: --params {tmp_path / 'nope.yaml'}: file not found"
    assert run("params", cwd=tmp_path).returncode == 0  # no params.yaml here: the defaults
