"""Precision paths on CPUs with and without native bf16: the ``auto`` rule, int8 determinism,
int8/bf16 decisions vs float32 on a trained head (real texts of all three tasks), fallbacks."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from taco.compress.compressor import Compressor, calibration_texts
from taco.compress.onnx_int8 import RUNTIME_ENV
from taco.device import cpu_candidates, cpu_flags, int8_unavailable, precision_candidates
from taco.llm.local import LocalLLM, cpu_precision, llm_precision
from tests.helpers.paths import shared_data
from tests.helpers.tiny_causal_lm import tiny_causal_lm_folder

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
    ("flags", "compressor", "llm"),
    [
        (AMX, ("bfloat16", "float32"), "bfloat16"),
        (ZEN4, ("int8", "bfloat16", "float32"), "bfloat16"),
        (AVX2_ONLY, ("int8", "float32"), "float32"),
        (OLD, ("float32",), "float32"),
        ({"avx512_bf16"}, ("bfloat16", "float32"), "bfloat16"),
        (set(), ("float32",), "float32"),
    ],
    ids=["amx", "avx512_bf16-no-amx", "avx2-only", "no-avx2", "bf16-no-int8", "unknown"],
)
def test_auto_is_a_function_of_the_cpu_flags(flags: set[str], compressor, llm) -> None:
    got = {cpu_candidates(frozenset(flags)) for _ in range(3)} | {cpu_candidates(sorted(flags))}
    assert len(got) == 1  # the same answer every time, whatever the flags' order
    assert next(iter(got))[0] == compressor
    assert precision_candidates("auto", CPU, flags=flags)[0] == compressor
    assert {cpu_precision(frozenset(flags)), cpu_precision(sorted(flags))} == {
        cpu_precision(set(flags))
    }
    assert llm_precision("auto", CPU, flags=frozenset(flags))[0] == llm


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    assert cpu_flags(CPUINFO) == frozenset({"fpu", "sse4_2", "avx", "avx2", "fma"})
    assert cpu_flags("processor : 0\n") == frozenset()
    assert cpu_candidates(cpu_flags(CPUINFO)) == (
        ("int8", "float32"),
        "int8 kernels (AVX2, no VNNI), no native bf16",
    )
    assert isinstance(cpu_flags(), frozenset)  # this machine's, whatever it is


def test_explicit_precisions_and_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    for p in ("float32", "bfloat16", "int8"):
        assert precision_candidates(p, CPU, flags=set()) == ((p,), "asked")
    with pytest.raises(ValueError, match="int8, auto"):
        precision_candidates("int4", CPU)
    monkeypatch.setattr("taco.device.bf16_supported", lambda device: True)
    assert precision_candidates("auto", torch.device("cuda"))[0] == ("bfloat16", "float32")
    monkeypatch.setattr("taco.device.bf16_supported", lambda device: False)
    assert precision_candidates("auto", torch.device("cuda"))[0] == ("float32",)
    assert "CPUs only" in (int8_unavailable(torch.device("cuda")) or "")
    assert llm_precision("int8", CPU) == ("int8", "asked")


# --------------------------------------------------------------------------- fallbacks


def test_int8_falls_back_to_float32_with_a_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither ONNX Runtime (forced off) nor torch's int8 kernels: float32, two log lines."""
    monkeypatch.setenv(RUNTIME_ENV, "torch")
    monkeypatch.setattr("taco.device.int8_unavailable", lambda device: "no kernels here")
    with caplog.at_level(logging.INFO):
        comp = Compressor.from_pretrained(device="cpu", dtype="int8")
    assert comp.precision == "float32" and comp.dtype is torch.float32
    assert f"not ONNX Runtime ({RUNTIME_ENV}=torch)" in caplog.text
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


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_int8_is_deterministic_across_runs_and_loads(
    tmp_path, runtime: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if int8_unavailable(CPU):
        pytest.skip(f"int8 cannot run here: {int8_unavailable(CPU)}")
    monkeypatch.setenv(RUNTIME_ENV, runtime)
    Compressor.from_pretrained(device="cpu").save_pretrained(tmp_path / "m")
    contexts = read_task("code", 0, 10)[0] + read_task("summarization", 0, 2)[0]
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
    assert a[0].metadata == {
        "precision": "int8",
        "runtime": runtime,
        "chunk_tokens": "window",
        "why": "asked",
        "device": "cpu",
    }
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


# ------------------------------------------------- decisions vs float32 on a trained head


def read_task(task: str, skip: int, n: int) -> tuple[list[str], list[str], list[str]]:
    """(contexts, questions, targets) of ``n`` distinct contexts after the first ``skip``;
    meeting transcripts cut to 600 words; targets: the reference (and question) words."""
    contexts, questions, targets, seen = [], [], [], set()
    for line in shared_data(task).open(encoding="utf-8"):
        row = json.loads(line)
        if row["context"] in seen:
            continue
        seen.add(row["context"])
        if len(seen) <= skip:
            continue
        refs = row.get("answers") or [row.get("reference", "")]
        contexts.append(" ".join(row["context"].split(" ")[:600]))
        questions.append(row.get("question", "") if task == "qa" else "")
        targets.append(" ".join([*refs, row.get("question", "")]))
        if len(contexts) == n:
            break
    return contexts, questions, targets


def probe_trained_folder(folder) -> None:
    """The embedded MiniLM with a keep/drop head fitted (logistic regression, float32) to
    task-aware labels on real texts of all three tasks: ``overlap`` labels (the words shared
    with the reference answer/summary/docstring and the question, half of the tokens kept).
    A head whose scores mean something: an untrained head's nearly tie, and any noise flips
    them (83% agreement)."""
    from taco.compress.encoder import collate
    from taco.rl.warmstart import labelled_rows, overlap_labels

    comp = Compressor.from_pretrained(device="cpu", dtype="float32")
    docs, labels = [], []
    for task, n in (("qa", 24), ("code", 48), ("summarization", 4)):
        contexts, questions, targets = read_task(task, TEST_TEXTS[task], n)
        task_docs = [comp.prepare(c, q) for c, q in zip(contexts, questions, strict=True)]
        docs += task_docs
        labels += overlap_labels([d.al for d in task_docs], targets, 0.5)
    rows = labelled_rows(comp, docs, labels)
    feats, ys = [], []
    with torch.inference_mode():
        for start in range(0, len(rows), 8):
            batch = rows[start : start + 8]
            inputs = collate([(r[0], r[1]) for r in batch], comp.pad_id, comp.device)
            hidden = comp.model.base_model(**inputs).last_hidden_state
            for b, r in enumerate(batch):
                lab = torch.from_numpy(r[2])
                keep = lab != -100
                feats.append(hidden[b, : len(lab)][keep].clone())
                ys.append(lab[keep])
    x, y = torch.cat(feats), torch.cat(ys)
    head = torch.nn.Linear(x.shape[1], 2)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(head.parameters(), lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y) + 1e-4 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        comp.model.classifier.weight.copy_(head.weight)
        comp.model.classifier.bias.copy_(head.bias)
    comp.save_pretrained(folder)


TEST_TEXTS = {"qa": 20, "code": 40, "summarization": 3}  # distinct contexts read per task


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    for task in TEST_TEXTS:
        shared_data(task)  # skips with the reason when ../shared/data is absent
    folder = tmp_path_factory.mktemp("probe") / "model"
    probe_trained_folder(folder)
    return folder


def keep_masks(comp: Compressor, task: str) -> list[np.ndarray]:
    """Per real text of ``task``: which words ``comp`` keeps at rate 0.5."""
    contexts, questions, _ = read_task(task, 0, TEST_TEXTS[task])
    results = comp.compress_many(contexts, rate=0.5, questions=questions)
    return [
        np.isin(comp.prepare(t).al.word_start, [s for s, _ in r.kept_spans])
        for t, r in zip(contexts, results, strict=True)
    ]


@pytest.fixture(scope="module")
def reference(trained) -> dict[float, dict[str, list[np.ndarray]]]:
    """float32's decisions per position prior and task."""
    out = {}
    for prior in (0.0, 20.0):
        fp32 = Compressor.from_pretrained(trained, device="cpu", position_prior=prior)
        out[prior] = {task: keep_masks(fp32, task) for task in TEST_TEXTS}
    return out


def test_calibration_texts_are_real_prose_and_code() -> None:
    texts = calibration_texts()
    assert texts == calibration_texts() and len(texts) >= 4
    assert sum(len(t.split()) for t in texts) > 1000


@pytest.mark.slow
@pytest.mark.parametrize("prior", [0.0, 20.0], ids=["content-head", "position-prior"])
@pytest.mark.parametrize("kind", ["avx2-only", "avx512_bf16-no-amx"])
def test_auto_agrees_with_float32_on_real_texts_of_every_task(
    trained, reference, prior: float, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever ``auto`` picks on a CPU of this kind (a fast path only where its decisions
    pass the calibration check) keeps >= 99% of float32's word decisions on QA, code and
    meeting texts, and is the same choice at every load."""
    if int8_unavailable(CPU):
        pytest.skip(f"int8 cannot run here: {int8_unavailable(CPU)}")
    flags = AVX2_ONLY if kind == "avx2-only" else ZEN4
    monkeypatch.setattr("taco.device.cpu_flags", lambda cpuinfo=None: frozenset(flags))
    auto = Compressor.from_pretrained(trained, device="cpu", dtype="auto", position_prior=prior)
    assert auto.metadata["why"].startswith("auto: ")
    if kind == "avx2-only" and prior:
        again = Compressor.from_pretrained(
            trained, device="cpu", dtype="auto", position_prior=prior
        )
        assert again.metadata == auto.metadata
    for task, ref in reference[prior].items():
        same = sum(int((a == b).sum()) for a, b in zip(ref, keep_masks(auto, task), strict=True))
        share = same / sum(a.size for a in ref)
        assert share >= 0.99, f"{task}: {share:.2%} of decisions agree ({auto.metadata})"


@pytest.mark.slow
def test_auto_falls_back_to_float32_when_no_fast_path_agrees(
    trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taco.device.cpu_flags", lambda cpuinfo=None: frozenset(ZEN4))
    monkeypatch.setattr("taco.compress.compressor.AGREEMENT", 1.01)  # nothing can pass
    comp = Compressor.from_pretrained(trained, device="cpu", dtype="auto")
    assert comp.precision == "float32"
    why = comp.metadata["why"]
    for path in ("int8 (onnxruntime, 128-token chunks)", "int8 (onnxruntime)", "bfloat16 (torch)"):
        assert f"{path} decisions = float32 on only" in why, why
    assert comp.chunk_tokens is None and comp.metadata["chunk_tokens"] == "window"


@pytest.mark.slow
def test_auto_tries_short_chunks_first_then_full_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The order of ``auto``'s tries on the slow kind: int8 with 128-token chunks, then int8
    on full windows, then float32 (each passes or fails on the agreement threshold)."""
    if int8_unavailable(CPU):
        pytest.skip(f"int8 cannot run here: {int8_unavailable(CPU)}")
    monkeypatch.setattr("taco.device.cpu_flags", lambda cpuinfo=None: frozenset(AVX2_ONLY))
    monkeypatch.setattr("taco.compress.compressor.AGREEMENT", 0.0)  # the first try passes
    first = Compressor.from_pretrained(device="cpu", dtype="auto")
    assert (first.precision, first.chunk_tokens) == ("int8", 128)
    assert first.metadata["chunk_tokens"] == "128"
    assert first.metadata["runtime"] == "onnxruntime"
    assert "int8 (onnxruntime, 128-token chunks) decisions = float32 on" in first.metadata["why"]
    text = " ".join(calibration_texts())
    doc = first.prepare(text)
    assert max(e - s for s, e in doc.chunks) <= 128 < doc.al.n_tokens
    assert first.compress(text, rate=0.5).metadata["chunk_tokens"] == "128"
    # an explicit chunk length is the only one tried
    asked = Compressor.from_pretrained(device="cpu", dtype="auto", chunk_tokens=256)
    assert (asked.precision, asked.chunk_tokens) == ("int8", 256)
    assert "256-token chunks" in asked.metadata["why"]


@pytest.mark.parametrize(
    ("device", "says"),
    [
        ("banana", "use cpu, cuda, cuda:N or auto"),
        ("mps", "taco runs on cpu or cuda"),
        ("cuda:99", "(no CUDA GPU here|this machine has cuda:0 to)"),
    ],
)
def test_a_device_that_is_not_here_is_a_clear_error(device: str, says: str) -> None:
    from taco.device import resolve_device
    from taco.errors import ArgumentError

    with pytest.raises(ArgumentError, match=f"device '{device}'.*{says}"):
        resolve_device(device)
    assert resolve_device("cpu") == CPU
