"""The compressor's int8 graph on ONNX Runtime: built once per model and cached by its
weights, safe under concurrent first loads, and a fallback (never an error) when it cannot
be built; shorter encoder chunks (``chunk_tokens``)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from taco.compress.compressor import Compressor
from taco.compress.onnx_int8 import OnnxTokenClassifier, model_digest
from taco.errors import ArgumentError, ArgumentTypeError
from tests.helpers.paths import ROOT, shared_data

TEXT = "The quick brown fox jumps over the lazy dog, then naps in the warm afternoon sun."


def graphs(cache: Path) -> list[Path]:
    return sorted((cache / "onnx").glob("*/*"))


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    Compressor.from_pretrained(device="cpu").save_pretrained(tmp_path / "m")
    return tmp_path / "m"


@pytest.mark.slow
def test_the_graph_is_built_once_and_keyed_by_the_weights(
    model_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("TACO_CACHE_DIR", str(tmp_path / "cache"))
    with caplog.at_level(logging.INFO, logger="taco.compress.onnx_int8"):
        first = Compressor.from_pretrained(model_folder, device="cpu", dtype="int8")
        built = graphs(tmp_path / "cache")
        stamp = built[0].stat().st_mtime_ns
        second = Compressor.from_pretrained(model_folder, device="cpu", dtype="int8")
    assert isinstance(first.model, OnnxTokenClassifier)
    assert [p.name for p in built] == ["model.int8.onnx"]  # no temporary files left behind
    assert caplog.text.count("building its int8 ONNX graph") == 1
    assert graphs(tmp_path / "cache") == built and built[0].stat().st_mtime_ns == stamp
    assert np.array_equal(
        first.token_probabilities([TEXT])[0], second.token_probabilities([TEXT])[0]
    )
    # another head, another graph
    fp32 = Compressor.from_pretrained(model_folder, device="cpu")
    digest = model_digest(fp32.model)
    with torch.no_grad():
        fp32.model.classifier.bias.add_(0.5)
    assert model_digest(fp32.model) != digest
    fp32.save_pretrained(tmp_path / "other")
    Compressor.from_pretrained(tmp_path / "other", device="cpu", dtype="int8")
    assert len(graphs(tmp_path / "cache")) == 2


@pytest.mark.slow
def test_int8_probabilities_track_float32(model_folder: Path) -> None:
    text = " ".join(
        json.loads(shared_data("summarization").open().readline())["context"].split()[:600]
    )
    fp32 = Compressor.from_pretrained(model_folder, device="cpu").token_probabilities([text])[0]
    int8 = Compressor.from_pretrained(model_folder, device="cpu", dtype="int8")
    assert int8.metadata["runtime"] == "onnxruntime"
    p = int8.token_probabilities([text])[0]
    assert p.shape == fp32.shape
    # int8 noise (measured: correlation 0.91-0.93, mean |diff| 0.010-0.013 on this text);
    # a misaligned or mislabelled graph would correlate near 0
    assert np.corrcoef(p, fp32)[0, 1] > 0.85
    assert float(np.abs(p - fp32).mean()) < 0.03
    # its idle threads sleep, so torch work after a run (an LLM, the policy) gets the cores
    options = int8.model.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_a_failed_export_falls_back_to_torch_int8_with_a_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(model, dest):
        raise RuntimeError("exporter says no\nmore detail")

    monkeypatch.setenv("TACO_CACHE_DIR", str(tmp_path / "cache"))  # nothing built yet
    monkeypatch.setattr("taco.compress.onnx_int8.build_int8", broken)
    with caplog.at_level(logging.INFO, logger="taco.compress.onnx_int8"):
        comp = Compressor.from_pretrained(device="cpu", dtype="int8")
    assert comp.precision == "int8" and comp.metadata["runtime"] == "torch"
    assert (
        "not ONNX Runtime (its int8 ONNX graph could not be built or loaded: exporter says no)"
        in caplog.text
    )
    assert comp.compress(TEXT, rate=0.5).compressed_prompt


@pytest.mark.slow
def test_a_damaged_cached_graph_is_rebuilt(
    model_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TACO_CACHE_DIR", str(tmp_path / "cache"))
    first = Compressor.from_pretrained(model_folder, device="cpu", dtype="int8")
    (graph,) = graphs(tmp_path / "cache")
    graph.write_bytes(graph.read_bytes()[:1000])  # e.g. a disk that filled up
    again = Compressor.from_pretrained(model_folder, device="cpu", dtype="int8")
    assert again.metadata["runtime"] == "onnxruntime"
    assert np.array_equal(
        first.token_probabilities([TEXT])[0], again.token_probabilities([TEXT])[0]
    )


def test_a_missing_onnxruntime_falls_back_too(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with caplog.at_level(logging.INFO, logger="taco.compress.onnx_int8"):
        comp = Compressor.from_pretrained(device="cpu", dtype="int8")
    assert comp.metadata["runtime"] == "torch"
    assert "onnxruntime is not installed" in caplog.text


LOAD = """
import hashlib, sys
from taco.compress.compressor import Compressor
c = Compressor.from_pretrained(sys.argv[1], device="cpu", dtype="int8")
p = c.token_probabilities([sys.argv[2]])[0]
print(c.metadata["runtime"], str(c.model.path), hashlib.sha256(p.tobytes()).hexdigest())
"""


@pytest.mark.slow
def test_concurrent_first_loads_share_one_graph(model_folder: Path, tmp_path: Path) -> None:
    env = {**os.environ, "TACO_CACHE_DIR": str(tmp_path / "cache")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOAD, str(model_folder), TEXT],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    lines = [o[0].strip().splitlines()[-1].split() for o in outs]
    assert lines[0] == lines[1] and lines[0][0] == "onnxruntime"
    assert [p.name for p in graphs(tmp_path / "cache")] == ["model.int8.onnx"]


def test_chunk_tokens_cut_shorter_chunks_and_are_checked() -> None:
    comp = Compressor.from_pretrained(device="cpu", chunk_tokens=16)
    text = " ".join(["word"] * 100)
    doc = comp.prepare(text)
    assert len(doc.chunks) >= 100 // 16 and all(e - s <= 16 for s, e in doc.chunks)
    assert doc.chunks[0][0] == 0 and doc.chunks[-1][1] == doc.al.n_tokens
    assert comp.metadata["chunk_tokens"] == "16"
    for bad, err in ((4, ArgumentError), (1.5, ArgumentTypeError), (True, ArgumentTypeError)):
        with pytest.raises(err, match="chunk_tokens"):
            Compressor.from_pretrained(device="cpu", chunk_tokens=bad)


def test_a_killed_build_leaves_nothing_behind_after_the_next_one(
    model_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build killed part-way leaves its ``.build-<pid>-*`` folder; the next build removes
    it (its process is gone) and keeps a live process's folder."""
    monkeypatch.setenv("TACO_CACHE_DIR", str(tmp_path / "cache"))
    fp32 = Compressor.from_pretrained(model_folder, device="cpu")
    folder = tmp_path / "cache" / "onnx" / model_digest(fp32.model)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (folder / f".build-{dead}-abc").mkdir(parents=True)
    (folder / f".build-{dead}-abc" / "raw.onnx").write_bytes(b"x" * 1000)
    (folder / f".build-{os.getpid()}-live").mkdir()
    Compressor.from_pretrained(model_folder, device="cpu", dtype="int8")
    left = sorted(p.name for p in folder.iterdir())
    assert left == [f".build-{os.getpid()}-live", "model.int8.onnx"]
