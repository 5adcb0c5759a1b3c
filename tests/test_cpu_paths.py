"""Precision paths on CPUs with and without native bf16: the ``auto`` rule, int8 determinism,
int8/bf16 decisions vs float32 on a trained head (real texts of all three tasks), fallbacks."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from conftest import shared_data
from tiny_causal_lm import tiny_causal_lm_folder

from taco.compressor import Compressor
from taco.device import cpu_flags, cpu_precision, int8_unavailable, resolve_precision
from taco.llm_local import LocalLLM, llm_precision

AMX = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"}
ZEN4 = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}  # native bf16, no AMX
AVX2_ONLY = {"sse4_2", "avx", "avx2", "fma"}  # the slow kind
OLD = {"sse4_2", "avx"}
CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse4_2 avx avx2 fma
bugs\t\t: sysret_ss_attrs

processor\t: 1
flags\t\t: fpu sse4_2 avx avx2 fma
"""
CPU = torch.device("cpu")


# ------------------------------------------------------------------------ the auto rule


@pytest.mark.parametrize(
    ("flags", "precision"),
    [
        (AMX, "bfloat16"),
        (ZEN4, "int8"),
        (AVX2_ONLY, "int8"),
        (OLD, "float32"),
        ({"avx512_bf16"}, "bfloat16"),
        (set(), "float32"),
    ],
    ids=["amx", "avx512_bf16-no-amx", "avx2-only", "no-avx2", "bf16-no-int8", "unknown"],
)
def test_auto_precision_is_a_function_of_the_cpu_flags(flags: set[str], precision: str) -> None:
    got = {cpu_precision(frozenset(flags)) for _ in range(3)} | {cpu_precision(sorted(flags))}
    assert len(got) == 1  # the same answer every time, whatever the flags' order
    assert next(iter(got))[0] == precision
    assert resolve_precision("auto", CPU, flags=flags)[0] == precision
    assert llm_precision("auto", CPU, flags=frozenset(flags))[0] == precision


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    assert cpu_flags(CPUINFO) == frozenset({"fpu", "sse4_2", "avx", "avx2", "fma"})
    assert cpu_flags("processor : 0\n") == frozenset()
    assert cpu_precision(cpu_flags(CPUINFO)) == ("int8", "int8 kernels (AVX2, no VNNI), no AMX")
    assert isinstance(cpu_flags(), frozenset)  # this machine's, whatever it is


def test_explicit_precisions_and_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    for p in ("float32", "bfloat16", "int8"):
        assert resolve_precision(p, CPU, flags=set()) == (p, "asked")
    with pytest.raises(ValueError, match="int8, auto"):
        resolve_precision("int4", CPU)
    monkeypatch.setattr("taco.device.bf16_supported", lambda device: True)
    assert resolve_precision("auto", torch.device("cuda"))[0] == "bfloat16"
    monkeypatch.setattr("taco.device.bf16_supported", lambda device: False)
    assert resolve_precision("auto", torch.device("cuda"))[0] == "float32"
    assert "CPUs only" in (int8_unavailable(torch.device("cuda")) or "")


# --------------------------------------------------------------------------- fallbacks


def test_int8_falls_back_to_float32_with_a_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("taco.device.int8_unavailable", lambda device: "no kernels here")
    with caplog.at_level(logging.WARNING, logger="taco.device"):
        comp = Compressor.from_pretrained(device="cpu", dtype="int8")
    assert comp.precision == "float32" and comp.dtype is torch.float32
    assert "int8 is not available (no kernels here); using float32" in caplog.text
    res = comp.compress("The quick brown fox jumps over the lazy dog.", rate=0.5)
    assert res.metadata["precision"] == "float32"


def test_the_llm_falls_back_too(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path
) -> None:
    folder = tiny_causal_lm_folder(tmp_path / "lm")
    monkeypatch.setattr("taco.device.int8_unavailable", lambda device: "no kernels here")
    with caplog.at_level(logging.WARNING, logger="taco.device"):
        llm = LocalLLM.from_source(str(folder), device="cpu", dtype="int8", max_new_tokens=4)
    assert llm.precision == "float32" and llm.identity["dtype"] == "torch.float32"
    assert "using float32" in caplog.text
    assert llm.generate(["The quick brown fox"])[0] is not None


# ------------------------------------------------------------------------ determinism


@pytest.fixture(scope="module")
def texts() -> dict[str, tuple[list[str], list[str]]]:
    """(contexts, questions) per task: distinct real contexts, meetings cut to 600 words."""
    out = {}
    for task, n in (("qa", 12), ("code", 30), ("summarization", 6)):
        contexts, questions, seen = [], [], set()
        for line in shared_data(task).open(encoding="utf-8"):
            row = json.loads(line)
            if row["context"] in seen:
                continue
            seen.add(row["context"])
            contexts.append(" ".join(row["context"].split(" ")[:600]))
            questions.append(row.get("question", "") if task == "qa" else "")
            if len(contexts) == n:
                break
        out[task] = (contexts, questions)
    return out


@pytest.mark.slow
def test_int8_is_deterministic_across_runs_and_loads(texts, tmp_path) -> None:
    if int8_unavailable(CPU):
        pytest.skip(f"int8 cannot run here: {int8_unavailable(CPU)}")
    Compressor.from_pretrained(device="cpu").save_pretrained(tmp_path / "m")
    contexts = texts["code"][0][:10] + texts["summarization"][0][:2]
    first = Compressor.from_pretrained(tmp_path / "m", device="cpu", dtype="int8")
    second = Compressor.from_pretrained(tmp_path / "m", device="cpu", dtype="int8")
    assert first.precision == second.precision == "int8"
    runs = [first.token_probabilities(contexts) for _ in range(2)]
    runs.append(second.token_probabilities(contexts))
    for other in runs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(runs[0], other, strict=True))
    a = first.compress_many(contexts, rate=0.5)
    b = second.compress_many(contexts, rate=0.5)
    assert [r.kept_spans for r in a] == [r.kept_spans for r in b]
    assert a[0].metadata == {"precision": "int8", "why": "asked", "device": "cpu"}
    with pytest.raises(ValueError, match="int8 compressor cannot be saved"):
        first.save_pretrained(tmp_path / "again")


def test_int8_llm_is_deterministic_and_keyed_apart(tmp_path) -> None:
    if int8_unavailable(CPU):
        pytest.skip(f"int8 cannot run here: {int8_unavailable(CPU)}")
    folder = tiny_causal_lm_folder(tmp_path / "lm")
    prompts = ["The quick brown fox", "def add(a, b):", "Paris"]
    loads = [
        LocalLLM.from_source(str(folder), device="cpu", dtype="int8", max_new_tokens=6)
        for _ in range(2)
    ]
    assert loads[0].precision == "int8" and loads[0].identity["dtype"] == "int8"
    outs = [llm.generate(prompts) for llm in (*loads, loads[0])]
    assert outs[0] == outs[1] == outs[2]
    ll = [llm.loglik(prompts, ["jumps", "return", "France"]) for llm in (*loads, loads[0])]
    assert ll[0] == ll[1] == ll[2]
