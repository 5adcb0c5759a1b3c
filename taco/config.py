"""params.yaml → frozen, self-validating config dataclasses (unknown keys are rejected).

Every pipeline stage owns one section of params.yaml. The section's dataclass is declared
here and is a field of ``Params``; ``load_params`` reads the file, rejects unknown
sections and keys with a message that names them, and builds the dataclasses.
Each dataclass may define ``validate(self) -> None`` that raises ``ConfigError``.
Each key's default and help live on its field (``key(default, help)``): the defaults are
the only ones (params.yaml repeats them, a test holds the two equal) and the help is what
``explain`` (``taco params --explain``, ``taco <stage> --help``) prints.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from taco.errors import UserError

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A params.yaml value is missing, unknown or out of range (the message names it)."""


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML value to the annotated type ``tp``, or raise ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {tp}"
        )
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        item_tp = args[0] if args else Any
        return tuple(_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        key_tp, val_tp = args if args else (Any, Any)
        return types.MappingProxyType(
            {
                _convert(k, key_tp, where): _convert(v, val_tp, f"{where}.{k}")
                for k, v in value.items()
            }
        )
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, str | Path):
            raise ConfigError(f"{where}: expected a path string, got {value!r}")
        return Path(value)
    return value


#: Keys that were renamed: old dotted key -> new dotted key (the error names the new one).
RENAMED = {"warmstart.teacher": "warmstart.labels"}


def from_mapping(cls: type[T], data: Any, where: str) -> T:
    """Build the frozen dataclass ``cls`` from a mapping; unknown keys raise ConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    for key in unknown:
        new = RENAMED.get(f"{where.rsplit(':', 1)[-1]}.{key}")
        if new:
            raise ConfigError(f"{where}.{key}: renamed to {new}; rename the key in your params")
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(str, unknown))}; "
            f"allowed: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: required key '{name}' is missing")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def to_dict(obj: Any) -> Any:
    """A plain, YAML/JSON-serialisable view of a config object (for logs and run records)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def check_range(
    where: str, value: float, low: float, high: float, *, low_open: bool = False
) -> None:
    """Raise ConfigError unless ``low (<|<=) value <= high``; the message names the range."""
    ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigError(
            f"{where}: {value!r} is outside the allowed range {bracket}{low}, {high}]"
        )


def key(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """One params key: ``dataclasses.field`` with its ``default`` (or ``factory`` for a
    mutable default) and its ``help`` as ``metadata["help"]``, the text that
    ``taco params --explain`` and ``taco <stage> --help`` show."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"help": help})


# ---------------------------------------------------------------------------------------
# Sections. Each stage adds its frozen dataclass and a field of ``Params``; every key is
# declared with ``key(default, "help")`` (or ``dataclasses.field(metadata={"help": ...})``).
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BaseParams:
    """Shared settings: the seed and where things live."""

    seed: int = key(
        0, "seed of every random choice: split order, row caps, sampling, the fresh head"
    )
    task: str = key("code", "qa | summarization | code | a task added with register_task")
    data_dir: Path = key(
        Path("data"), "folder of every pipeline output, relative to the repository"
    )


# --- data stages (ingest / prepare / validate): owned by the data engineer -------------

INGEST_FORMATS = (
    "python",
    "squad",
    "qmsum",
    "meetingbank",
    "codesearchnet",
    "shared",
    "jsonl",
    "csv",
    "parquet",
)
SPLITS = ("train", "val", "test")


def _check_split_keys(where: str, mapping: Mapping[str, Any]) -> None:
    unknown = sorted(set(mapping) - set(SPLITS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown split(s) {', '.join(unknown)}; allowed: {', '.join(SPLITS)}"
        )


@dataclasses.dataclass(frozen=True)
class IngestParams:
    """`taco ingest`: which source becomes the raw snapshot, and the DVC remote it is pushed to."""

    format: typing.Literal[INGEST_FORMATS] = key(  # type: ignore[valid-type]
        "python", f"{' | '.join(INGEST_FORMATS)}; python = this Python's stdlib"
    )
    path: str | None = key(
        None, "file or folder, http(s) URL or hf:NAME[:CONFIG]; python: null = the stdlib"
    )
    hf_split: str = key("validation", "split read from a Hugging Face dataset (path hf:NAME)")
    fields: Mapping[str, str] = key(
        factory=lambda: types.MappingProxyType({}),
        help="jsonl/csv/parquet: Example field -> column, e.g. {context: text}",
    )
    include_unanswerable: bool = key(False, "squad v2: keep unanswerable questions (no references)")
    exclude: tuple[str, ...] = key(
        ("test", "tests", "idlelib", "turtledemo", "lib2to3", "site-packages"),
        "python: folder names the miner skips",
    )
    max_files: int | None = key(None, "python: mine only the first N files (sorted); null = all")
    remote: str = key(
        "../taco-dvc-remote",
        "DVC remote of `taco data push`: a folder (relative to the repo) or s3:// gs:// ssh://",
    )

    def validate(self) -> None:
        if self.format != "python" and self.path is None:
            raise ConfigError(f"ingest.path: required for format '{self.format}'")
        allowed = {"id", "context", "question", "references", "group", "source"}
        unknown = sorted(set(self.fields) - allowed)
        if unknown:
            raise ConfigError(
                f"ingest.fields: unknown Example field(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        if self.max_files is not None:
            check_range("ingest.max_files", self.max_files, 1, 10**9)


@dataclasses.dataclass(frozen=True)
class PrepareParams:
    """`taco prepare`: dedupe, length limits (in whitespace words), segmentation, group split."""

    min_context_words: int = key(
        5, "rows with a shorter context are dropped (whitespace words, ~1.3 LLM tokens each)"
    )
    max_context_words: int = key(2000, "rows with a longer context (once segmented) are dropped")
    min_reference_words: int = key(1, "rows whose shortest reference is shorter are dropped")
    max_reference_words: int = key(256, "rows whose longest reference is longer are dropped")
    long_context: typing.Literal["keep", "segment"] = key(
        "segment",
        "keep | segment: cut long contexts at paragraph/turn boundaries (code is never cut)",
    )
    segment_words: int = key(400, "segment: the most words per piece")
    val_fraction: float = key(0.1, "share of rows in val, assigned whole groups at a time")
    test_fraction: float = key(0.2, "share of rows in test, assigned whole groups at a time")
    max_rows: Mapping[str, int | None] = key(
        factory=lambda: types.MappingProxyType({"train": 128, "val": 32, "test": 32}),
        help="a deterministic sample of at most N rows per split; null = all (the default: "
        "the rows training and evaluation read, so the teacher answers no unused prompt)",
    )

    def validate(self) -> None:
        check_range("prepare.min_context_words", self.min_context_words, 0, 10**7)
        check_range(
            "prepare.max_context_words", self.max_context_words, self.min_context_words, 10**7
        )
        check_range("prepare.min_reference_words", self.min_reference_words, 0, 10**6)
        check_range(
            "prepare.max_reference_words", self.max_reference_words, self.min_reference_words, 10**6
        )
        check_range("prepare.segment_words", self.segment_words, 16, 10**7)
        check_range("prepare.val_fraction", self.val_fraction, 0.0, 0.5)
        check_range("prepare.test_fraction", self.test_fraction, 0.0, 0.5)
        _check_split_keys("prepare.max_rows", self.max_rows)
        for split, n in self.max_rows.items():
            if n is not None:
                check_range(f"prepare.max_rows.{split}", n, 1, 10**9)


@dataclasses.dataclass(frozen=True)
class ValidateParams:
    """`taco validate`: the Great Expectations gate's thresholds."""

    min_rows: Mapping[str, int] = key(
        factory=lambda: types.MappingProxyType({"train": 32, "val": 8, "test": 8}),
        help="fewest rows each split must have",
    )
    max_dropped_share: float = key(
        0.5, "most of the candidate rows prepare may drop (duplicates, lengths)"
    )
    require_answer_in_context: bool = key(True, "qa: every row's gold answer occurs in its context")
    example_ids: int = key(5, "failing record ids listed per failed expectation")

    def validate(self) -> None:
        _check_split_keys("validate.min_rows", self.min_rows)
        for split, n in self.min_rows.items():
            check_range(f"validate.min_rows.{split}", n, 0, 10**9)
        check_range("validate.max_dropped_share", self.max_dropped_share, 0.0, 1.0)
        check_range("validate.example_ids", self.example_ids, 0, 1000)


# --- llm / tasks / teacher / reward (issue 4: reward LLMs) --------------------------------


@dataclasses.dataclass(frozen=True)
class OpenAIParams:
    """The OpenAI-compatible chat-completions endpoint (vLLM, Ollama, llama.cpp, OpenAI, Azure)."""

    base_url: str = key(
        "http://127.0.0.1:8000/v1",
        "endpoint root: vLLM/llama.cpp :8000/v1, Ollama :11434/v1, https://api.openai.com/v1",
    )
    api_key_env: str | None = key(
        "OPENAI_API_KEY",
        "NAME of the env var holding the API key (never the key itself); null = no key",
    )
    api_key_header: typing.Literal["authorization", "api-key"] = key(
        "authorization", "authorization (Bearer) | api-key (Azure)"
    )
    timeout_s: float = key(60.0, "seconds one request may take")
    max_retries: int = key(
        5, "retries on timeouts, 429 (Retry-After honoured), 5xx and malformed bodies"
    )
    backoff_base_s: float = key(1.0, "first retry wait in seconds (exponential, with jitter)")
    backoff_max_s: float = key(60.0, "cap of every retry wait in seconds, Retry-After included")
    concurrency: int = key(8, "requests in flight")
    tokenizer: str | None = key(
        None, "local tokenizer folder for token counts; null = the embedded SmolLM2 one"
    )

    def validate(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"llm.openai.base_url: {self.base_url!r} must start with http(s)://")
        check_range("llm.openai.timeout_s", self.timeout_s, 0.0, 3600.0, low_open=True)
        check_range("llm.openai.max_retries", self.max_retries, 0, 100)
        check_range("llm.openai.backoff_base_s", self.backoff_base_s, 0.0, 3600.0)
        check_range("llm.openai.backoff_max_s", self.backoff_max_s, 0.0, 3600.0)
        check_range("llm.openai.concurrency", self.concurrency, 1, 1024)


@dataclasses.dataclass(frozen=True)
class LLMParams:
    """The target/reward LLM shared by teacher, train and evaluate (see taco/llm/base.py)."""

    backend: typing.Literal["local", "openai"] = key(
        "local", "local (transformers) | openai (any OpenAI-compatible chat endpoint)"
    )
    model: str | None = key(
        None,
        "local: folder, .gguf file or hub id (online only), null = embedded SmolLM2-135M; "
        "openai: the endpoint's model name",
    )
    dtype: typing.Literal["auto", "float32", "bfloat16", "float16", "int8"] = key(
        "auto",
        "local: auto = bf16 on CUDA and on CPUs with avx512_bf16/amx_bf16, else float32; "
        "int8 = dynamic int8 linear layers on CPU (1.3-1.5x float32 without native bf16, but "
        "it breaks SmolLM2-135M: no greedy answer equals float32's, reward Spearman 0.80; "
        "docs/results.md), never auto",
    )
    device: str = key("auto", "local: cpu | cuda | cuda:N | auto (cuda when available)")
    batch_size: int = key(8, "local: prompts per forward pass (left padding)")
    max_new_tokens: int = key(32, "greedy decoding length of teacher and reward outputs")
    seed: int = key(
        42, "openai: sent with temperature 0 (endpoints that honour it answer reproducibly)"
    )
    cache: bool = key(True, "SQLite answer cache shared by every stage and process")
    cache_path: Path | None = key(
        None, "null = $TACO_CACHE_DIR/llm-cache.sqlite (default ~/.cache/taco)"
    )
    openai: OpenAIParams = key(factory=OpenAIParams, help="the endpoint of backend openai")

    def validate(self) -> None:
        if self.backend == "openai" and not self.model:
            raise ConfigError("llm.model: the openai backend needs the endpoint's model name")
        check_range("llm.batch_size", self.batch_size, 1, 4096)
        check_range("llm.max_new_tokens", self.max_new_tokens, 1, 100_000)


@dataclasses.dataclass(frozen=True)
class TaskParams:
    """Prompt-template overrides per task (``{context}`` required, ``{question}`` optional)."""

    templates: Mapping[str, str] = key(
        factory=lambda: types.MappingProxyType(
            {
                "code": "Summarize the following code in one sentence (which may be "
                "compressed).\n{context}\nSummary:"
            }
        ),
        help="task -> prompt template: {context} is compressed, {question} never is",
    )

    def validate(self) -> None:
        for name, template in self.templates.items():
            if "{context}" not in template:
                raise ConfigError(f"tasks.templates.{name}: the template needs a {{context}} field")


@dataclasses.dataclass(frozen=True)
class TeacherParams:
    """`taco teacher`: target-LLM outputs on the uncompressed prompts of the prepared splits."""

    splits: tuple[str, ...] = key(SPLITS, "prepared splits the teacher answers")
    chunk_size: int = key(64, "prompts per LLM call (progress and cache granularity)")
    max_failed_fraction: float = key(
        0.1, "the stage fails when more answers than this share are missing"
    )

    def validate(self) -> None:
        unknown = sorted(set(self.splits) - set(SPLITS))
        if unknown:
            raise ConfigError(f"teacher.splits: unknown split(s) {', '.join(unknown)}")
        check_range("teacher.chunk_size", self.chunk_size, 1, 10**6)
        check_range("teacher.max_failed_fraction", self.max_failed_fraction, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class RewardParams:
    """Reward constants (docs/algorithm.md §1): target rate c, tolerance τ, floor, penalties."""

    name: str = key(
        "loglik",
        "loglik (exp mean log-prob of the teacher output: one forward pass) | taco_rl (the "
        "paper: generate + task metric vs the teacher output) | gold (generate + metric vs gold)",
    )
    rate: float = key(0.5, "c: target share of the context's LLM tokens kept")
    tolerance_tokens: float = key(
        30.0,
        "tau: |L_c - c*L_o| > tau gives window_penalty (L_o/L_c: original/compressed LLM tokens)",
    )
    floor: float = key(0.1, "L_c <= floor*L_o gives floor_penalty (no LLM call)")
    floor_penalty: float = key(-0.4, "reward of a compression below the floor")
    window_penalty: float = key(-0.1, "reward of a compression outside the tolerance window")

    def validate(self) -> None:
        check_range("reward.rate", self.rate, 0.0, 1.0, low_open=True)
        check_range("reward.tolerance_tokens", self.tolerance_tokens, 0.0, 10**9)
        check_range("reward.floor", self.floor, 0.0, 1.0)


# --- warmstart / train (issue 5: REINFORCE training) -------------------------------------


@dataclasses.dataclass(frozen=True)
class WarmstartParams:
    """`taco warmstart`: supervised keep/drop labels so a fresh encoder starts sensibly.

    Skipped when ``train.base_model`` already is a 2-label token classifier (a compressor).
    """

    labels: typing.Literal["self_information", "llm", "overlap", "none"] = key(
        "none",
        "self_information (local LM surprisal) | llm (deletion-only compression by llm) | "
        "overlap (spans sharing words with the teacher output) | none (no warm start)",
    )
    rate: float = key(0.5, "share of context tokens labelled keep")
    position_bias: float = key(
        0.7, "self_information: 0 = pure surprisal ... 1 = keep the start (truncation)"
    )
    overlap_position_bias: float = key(
        0.0, "overlap: 0 = most overlapping spans (ties: earlier) ... 1 = the start"
    )
    max_examples: int = key(256, "training rows labelled (the first N)")
    epochs: int = key(2, "passes of the cross-entropy loop over the labelled rows")
    batch_size: int = key(16, "encoder rows per cross-entropy step")
    lr: float = key(5e-5, "learning rate of the encoder")
    head_lr: float = key(1e-3, "learning rate of the fresh keep/drop head")
    max_seconds: float | None = key(
        90.0, "time budget of the cross-entropy loop in seconds; null = none"
    )
    min_alignment: float = key(
        0.8, "llm: share of its output words found in order, else the row is dropped"
    )
    max_new_tokens: int = key(256, "llm: length of the compressed text it writes")

    def validate(self) -> None:
        check_range("warmstart.rate", self.rate, 0.0, 1.0, low_open=True)
        check_range("warmstart.position_bias", self.position_bias, 0.0, 1.0)
        check_range("warmstart.overlap_position_bias", self.overlap_position_bias, 0.0, 1.0)
        check_range("warmstart.max_examples", self.max_examples, 1, 10**9)
        check_range("warmstart.epochs", self.epochs, 1, 10**6)
        check_range("warmstart.batch_size", self.batch_size, 1, 10**6)
        check_range("warmstart.lr", self.lr, 0.0, 1.0, low_open=True)
        check_range("warmstart.head_lr", self.head_lr, 0.0, 1.0, low_open=True)
        if self.max_seconds is not None:
            check_range("warmstart.max_seconds", self.max_seconds, 0.0, 10**9, low_open=True)
        check_range("warmstart.min_alignment", self.min_alignment, 0.0, 1.0)
        check_range("warmstart.max_new_tokens", self.max_new_tokens, 1, 100_000)


@dataclasses.dataclass(frozen=True)
class TrainParams:
    """`taco train`: TACO-RL (REINFORCE) fine-tuning of the compressor (see taco/rl/train.py)."""

    base_model: str | None = key(
        None,
        "null = embedded MiniLM with a fresh head (warm-started unless warmstart.labels: none); "
        "a compressor folder skips the warm start",
    )
    steps: int = key(60, "optimiser steps")
    prompts_per_step: int = key(2, "prompts per step, over all ranks (torchrun)")
    samples_per_prompt: int = key(
        8, "k compressions sampled per prompt (one encoder pass serves all k)"
    )
    level: typing.Literal["word", "token"] = key(
        "word",
        "word (one action per word, p = mean sub-token p, as inference ranks) | token (the paper)",
    )
    sampling: typing.Literal["bernoulli", "budget"] = key(
        "budget",
        "budget (inference's top-k on Gumbel-noised scores at train.rate) | bernoulli (the paper)",
    )
    unit: typing.Literal["word", "sentence", "line"] = key(
        "word",
        "what the budget keeps whole: word | sentence | line (saved as the model's taco_unit)",
    )
    rate: float | None = key(None, "budget sampling: share of tokens kept; null = reward.rate")
    budget_tokens: typing.Literal["llm", "encoder"] = key(
        "llm", "units of sampling budgets and reward/val: llm (the reward's L_o/L_c) | encoder"
    )
    baseline: typing.Literal["loo", "none", "greedy"] = key(
        "loo",
        "loo (leave-one-out over k) | none (the paper) | greedy (self-critical: the deployed "
        "compression's reward, +1 LLM call per prompt)",
    )
    normalize_advantages: bool = key(False, "divide advantages by their standard deviation")
    logprob: typing.Literal["sum", "mean"] = key(
        "sum", "per-sequence log-prob of bernoulli sampling: sum over actions | mean (paper-like)"
    )
    entropy_coef: float = key(0.01, "weight of the entropy bonus in the loss")
    temperature: float = key(
        3.0,
        "budget sampling explores with scores / tau (the deployed top-k is the same at any tau)",
    )
    position_prior: float | None = key(
        20.0,
        "beta: words (spans) rank by logit p(keep) - beta * where they start (0..1); 20 = "
        "truncation until RL moves the scores; saved with the model; null = the start model's",
    )
    lr: float = key(1e-5, "learning rate of the encoder")
    head_lr: float = key(1e-3, "learning rate of the keep/drop head (1e-4 after a warm start)")
    weight_decay: float = key(0.01, "AdamW weight decay of the encoder")
    warmup_steps: int = key(0, "linear warm-up steps before the cosine decay")
    grad_clip: float = key(1.0, "gradient-norm clipping")
    freeze_embeddings: bool = key(
        True, "keep the input word embeddings fixed (2-3x cheaper backward + step)"
    )
    train_layers: int | None = key(None, "train only the top N encoder layers (+ head); null = all")
    bf16: bool | typing.Literal["auto"] = key(
        "auto", "bf16 autocast: auto (CUDA, or CPUs with AMX/AVX512-BF16) | true | false"
    )
    device: str = key("auto", "cpu | cuda | cuda:N | auto (cuda when available)")
    max_seq_len: int = key(512, "encoder window in tokens (longer prompts are cut into chunks)")
    force_tokens: tuple[str, ...] = key(
        ("\n",), 'words always kept, never actions ("\\n" keeps line breaks)'
    )
    keep_digits: bool = key(False, "always keep words with digits")
    max_rows: int | None = key(None, "training rows used; null = all")
    checkpoint_every: int = key(20, "steps between checkpoints (a rerun after a crash resumes)")
    eval_every: int = key(
        10, "steps between reward/val: the deployed (greedy, budgeted) policy on val rows"
    )
    eval_rows: int = key(32, "first N val rows with a teacher output; 0 = no validation")
    keep: typing.Literal["last", "best_val"] = key(
        "last", "saved weights: last | best_val (the best reward/val point, the start included)"
    )
    max_bad_steps: int = key(5, "non-finite losses skipped before the run stops")
    nproc_per_node: int = key(
        1,
        "processes `taco train` runs (one per GPU): > 1 relaunches it under torchrun "
        "--standalone --nproc_per_node=N (data-parallel); 1 = this process",
    )

    def validate(self) -> None:
        check_range("train.steps", self.steps, 1, 10**9)
        check_range("train.prompts_per_step", self.prompts_per_step, 1, 10**6)
        check_range("train.samples_per_prompt", self.samples_per_prompt, 1, 1024)
        check_range("train.entropy_coef", self.entropy_coef, 0.0, 10.0)
        check_range("train.temperature", self.temperature, 0.0, 100.0, low_open=True)
        if self.position_prior is not None:
            check_range("train.position_prior", self.position_prior, 0.0, 1000.0)
            if self.position_prior and self.sampling != "budget":
                raise ConfigError("train.position_prior needs train.sampling: budget")
        if self.rate is not None:
            check_range("train.rate", self.rate, 0.0, 1.0, low_open=True)
        if self.sampling == "budget" and self.level != "word":
            raise ConfigError("train.sampling: budget sampling needs train.level: word")
        if self.unit != "word" and self.sampling != "budget":
            raise ConfigError("train.unit: sentence/line units need train.sampling: budget")
        check_range("train.lr", self.lr, 0.0, 1.0, low_open=True)
        check_range("train.head_lr", self.head_lr, 0.0, 1.0, low_open=True)
        check_range("train.weight_decay", self.weight_decay, 0.0, 10.0)
        check_range("train.warmup_steps", self.warmup_steps, 0, self.steps)
        if self.keep == "best_val" and not self.eval_rows:
            raise ConfigError("train.keep: best_val needs validation (train.eval_rows > 0)")
        check_range("train.grad_clip", self.grad_clip, 0.0, 10**6, low_open=True)
        check_range("train.max_seq_len", self.max_seq_len, 16, 1_000_000)
        check_range("train.checkpoint_every", self.checkpoint_every, 1, 10**9)
        check_range("train.eval_every", self.eval_every, 1, 10**9)
        check_range("train.eval_rows", self.eval_rows, 0, 10**6)
        check_range("train.max_bad_steps", self.max_bad_steps, 0, 10**9)
        check_range("train.nproc_per_node", self.nproc_per_node, 1, 1024)
        if self.max_rows is not None:
            check_range("train.max_rows", self.max_rows, 1, 10**9)
        if self.train_layers is not None:
            check_range("train.train_layers", self.train_layers, 0, 1024)


# --- evaluate / gate (issue 16: evaluation against every baseline, the gate) -------------

#: Every compressor `taco evaluate` knows besides ``trained`` (always evaluated).
EVAL_BASELINES = (
    "uncompressed",
    "random",
    "truncate",
    "selective_context",
    "question_overlap",
    "start",
    "production",
    "llmlingua",
)
#: Rates the ``evaluate.curve`` option adds to ``evaluate.rates`` (the rate-quality curve).
CURVE_RATES = (0.2, 0.25, 0.75)


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    """`taco evaluate`: trained vs every baseline at equal token budgets on the test split."""

    max_rows: int | None = key(
        32, "first N test rows with a teacher output (null = all); sized for a 5-minute run"
    )
    rates: tuple[float, ...] = key(
        dataclasses.MISSING,
        "fractions of the context's LLM tokens kept, each in (0, 1]",
        factory=lambda: (0.33, 0.5),
    )
    curve: bool = key(False, "add the rates 0.2, 0.25 and 0.75 (a fuller rate-quality curve)")
    baselines: tuple[str, ...] = key(
        dataclasses.MISSING,
        "compressors compared with trained: " + ", ".join(EVAL_BASELINES),
        factory=lambda: EVAL_BASELINES,
    )
    selective_context_model: str | None = key(
        None,
        "causal LM whose self-information ranks words for selective_context (null = the "
        "target LLM when it is local, else the embedded SmolLM2)",
    )
    llmlingua_python: str | None = key(
        None,
        "python of the llmlingua 0.2.2 side venv (`make llmlingua-venv`: "
        ".venv-llmlingua/bin/python); null = the llmlingua baseline is skipped",
    )
    bootstrap_samples: int = key(2000, "paired bootstrap resamples per confidence interval")
    confidence: float = key(0.95, "confidence level of the intervals")
    max_unscorable_fraction: float = key(
        0.1, "fail when more test rows than this lost an LLM answer (they are never scored 0)"
    )
    examples: int = key(3, "example compressions shown side by side in the reports")

    def all_rates(self) -> tuple[float, ...]:
        """``rates`` plus the curve's rates when ``curve`` is on, sorted, without repeats."""
        return tuple(sorted(set(self.rates) | (set(CURVE_RATES) if self.curve else set())))

    def validate(self) -> None:
        if self.max_rows is not None:
            check_range("evaluate.max_rows", self.max_rows, 1, 10**9)
        if not self.rates:
            raise ConfigError("evaluate.rates: give at least one rate in (0, 1]")
        for i, rate in enumerate(self.rates):
            check_range(f"evaluate.rates[{i}]", rate, 0.0, 1.0, low_open=True)
        unknown = sorted(set(self.baselines) - set(EVAL_BASELINES))
        if unknown:
            raise ConfigError(
                f"evaluate.baselines: unknown compressor(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(EVAL_BASELINES)}"
            )
        check_range("evaluate.bootstrap_samples", self.bootstrap_samples, 100, 10**6)
        check_range("evaluate.confidence", self.confidence, 0.5, 1.0, low_open=True)
        check_range("evaluate.max_unscorable_fraction", self.max_unscorable_fraction, 0.0, 1.0)
        check_range("evaluate.examples", self.examples, 0, 100)


@dataclasses.dataclass(frozen=True)
class GateParams:
    """`taco gate`: pass/fail of the trained compressor, from the evaluation's metrics.

    A "no" is a normal outcome (exit 0): the decision and its reasons go to gate.json."""

    metric: str | None = key(
        None,
        "the gated score, a metric of metrics.json (e.g. bleu, f1, teacher_bleu, "
        "teacher_loglik); null = what the reward trained for, on held-out rows: "
        "teacher_loglik (reward.name loglik), teacher_bleu (taco_rl), the task's own metric "
        "against the gold references (gold)",
    )
    rates: tuple[float, ...] | None = key(None, "rates gated (null = evaluate.rates)")
    min_score: float | None = key(
        None, "minimum score of trained at every gated rate (null = no floor)"
    )
    min_gain_vs_start: float = key(
        0.0, "minimum relative gain of trained over start (0.0 = not worse on average)"
    )
    min_gain_vs_best: float = key(
        0.0, "minimum relative gain of trained over the best other compressor (baselines)"
    )
    require_ci: bool = key(
        False, "the gains also need their confidence interval's lower bound above zero"
    )
    max_rate_deviation: float = key(
        0.05, "maximum |achieved - requested| rate of trained (fraction of LLM tokens)"
    )
    max_latency_ms_per_1k_tokens: float = key(
        10000.0,
        "maximum compression latency of trained, ms per 1,000 context tokens (wall clock: "
        "a loaded machine inflates it; the default only catches a pathological model)",
    )
    max_quality_loss: float = key(
        0.05,
        "operating point: the recommended rate is the smallest rate whose score stays within "
        "this share of the uncompressed prompt's, the CI's lower bound included",
    )
    min_gain_vs_champion: float = key(
        0.0, "minimum relative gain of trained over the champion on the same rows"
    )
    champion: str | None = key(
        None,
        "the model to beat: null (none), a compressor folder, or production (the "
        "production-labelled model of base.task in the BentoML store)",
    )

    def validate(self) -> None:
        if self.rates is not None:
            for i, rate in enumerate(self.rates):
                check_range(f"gate.rates[{i}]", rate, 0.0, 1.0, low_open=True)
        for name in ("min_gain_vs_start", "min_gain_vs_best", "min_gain_vs_champion"):
            check_range(f"gate.{name}", getattr(self, name), -1.0, 100.0)
        check_range("gate.max_rate_deviation", self.max_rate_deviation, 0.0, 1.0)
        check_range(
            "gate.max_latency_ms_per_1k_tokens",
            self.max_latency_ms_per_1k_tokens,
            0.0,
            10**9,
            low_open=True,
        )
        check_range("gate.max_quality_loss", self.max_quality_loss, 0.0, 1.0)


# --- package / serve (issue 17: BentoML packaging and the compression service) ----------

#: BentoML's rule for model and bento names (lower case; letters, digits, "-", "_", ".").
BENTO_NAME = re.compile(r"^[a-z0-9]([-._a-z0-9]*[a-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class PackageParams:
    """`taco package`: register the gated model in the BentoML store and build its bento."""

    name: str = key("taco", "BentoML model and bento name prefix: models are <name>-<task>")
    build: bool = key(True, "build the bento from bentofile.yaml after registering the model")

    def validate(self) -> None:
        if not BENTO_NAME.match(self.name):
            raise ConfigError(
                f"package.name: {self.name!r} is not a BentoML name (lower-case letters, "
                "digits, '-', '_' and '.', starting and ending with a letter or digit)"
            )


@dataclasses.dataclass(frozen=True)
class UpstreamParams:
    """The OpenAI-compatible endpoint behind the compressing proxy (vLLM, Ollama, OpenAI, Azure)."""

    base_url: str = key(
        "http://127.0.0.1:8000/v1",
        "the endpoint's base URL; the proxy posts to <base_url>/chat/completions",
    )
    api_key_env: str | None = key(
        "OPENAI_API_KEY",
        "NAME of the env var holding the upstream key (never the key); unset or null: the "
        "client's own Authorization/api-key header is forwarded",
    )
    api_key_header: typing.Literal["authorization", "api-key"] = key(
        "authorization", "authorization (Bearer, OpenAI/vLLM/Ollama) | api-key (Azure)"
    )
    timeout_s: float = key(120.0, "seconds to wait for the upstream (connect and each read)")

    def validate(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"serve.upstream.base_url: {self.base_url!r} must start with http(s)://"
            )
        check_range("serve.upstream.timeout_s", self.timeout_s, 0.0, 3600.0, low_open=True)


@dataclasses.dataclass(frozen=True)
class ProxyParams:
    """Which chat messages the proxy compresses (a request's `taco` field overrides each key)."""

    roles: tuple[str, ...] = key(("user",), "roles whose message text is compressed")
    min_tokens: int = key(256, "messages shorter than this (encoder tokens) pass unchanged")
    rate: float | None = key(None, "fraction of tokens kept; null = the service's default rate")
    keep_question: bool = key(
        True,
        "the last user message's last paragraph is its question: read by the encoder, "
        "kept verbatim",
    )

    def validate(self) -> None:
        allowed = {"system", "developer", "user", "assistant", "tool"}
        unknown = sorted(set(self.roles) - allowed)
        if unknown:
            raise ConfigError(
                f"serve.proxy.roles: unknown role(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        check_range("serve.proxy.min_tokens", self.min_tokens, 0, 10**9)
        if self.rate is not None:
            check_range("serve.proxy.rate", self.rate, 0.0, 1.0, low_open=True)


@dataclasses.dataclass(frozen=True)
class ServeParams:
    """The BentoML service (`make serve`, taco/serving/service.py): model, limits, proxy."""

    host: str = key("127.0.0.1", "address `taco serve` binds (0.0.0.0 exposes it to the network)")
    port: int = key(3000, "port `taco serve` listens on")
    model: str | None = key(
        None,
        "BentoML model tag to serve; null = the production model of base.task, else the "
        "latest packaged candidate",
    )
    default_rate: float | None = key(
        None,
        "rate when a request gives none; null = the model's recommended_rate, else 0.5",
    )
    device: str = key("auto", "cpu, cuda, cuda:N or auto")
    dtype: typing.Literal["float32", "bfloat16", "int8", "auto"] = key(
        "float32",
        "encoder precision; auto: the fastest path whose decisions match float32's on >= 99% "
        "of calibration words (bf16 where native, else int8 on ONNX Runtime with 128-token "
        "chunks), checked at startup",
    )
    workers: int = key(1, "server processes (each loads the model)")
    timeout_s: float = key(
        300.0, "seconds a request may take, a proxied LLM answer included (BentoML's timeout)"
    )
    max_request_bytes: int = key(1_048_576, "larger request bodies get 413")
    max_prompt_chars: int = key(200_000, "longer prompts/contexts/questions get 422")
    max_batch_items: int = key(64, "most requests in one /compress list")
    batch_max_size: int = key(32, "adaptive batching: most requests merged into one call")
    batch_max_latency_ms: int = key(
        60_000, "adaptive batching: BentoML's bound on queueing + encoding (503 beyond it)"
    )
    api_key_env: str | None = key(
        None,
        "NAME of the env var holding the service's API key (Authorization: Bearer or x-api-key);"
        " null = no key",
    )
    upstream: UpstreamParams = dataclasses.field(
        default_factory=UpstreamParams, metadata={"help": "the LLM endpoint behind the proxy"}
    )
    proxy: ProxyParams = dataclasses.field(
        default_factory=ProxyParams,
        metadata={"help": "what POST /v1/chat/completions compresses by default"},
    )

    def validate(self) -> None:
        check_range("serve.port", self.port, 1, 65535)
        if self.default_rate is not None:
            check_range("serve.default_rate", self.default_rate, 0.0, 1.0, low_open=True)
        check_range("serve.workers", self.workers, 1, 256)
        check_range("serve.timeout_s", self.timeout_s, 0.0, 86400.0, low_open=True)
        check_range("serve.max_request_bytes", self.max_request_bytes, 1024, 2**31)
        check_range("serve.max_prompt_chars", self.max_prompt_chars, 1, 2**31)
        check_range("serve.max_batch_items", self.max_batch_items, 1, 100_000)
        check_range("serve.batch_max_size", self.batch_max_size, 2, 100_000)
        check_range("serve.batch_max_latency_ms", self.batch_max_latency_ms, 1, 10**7)


# --- orchestration (dags/taco_retrain.py, dags/taco_reproduce.py): the Airflow engineer --


@dataclasses.dataclass(frozen=True)
class AirflowParams:
    """The Airflow DAGs: when `taco_retrain` runs, where its training task goes, retries."""

    schedule: str | None = key(
        "@weekly",
        "cron expression or preset (@daily, @weekly) of taco_retrain; null = none (with asset "
        "null too: runs only when triggered)",
    )
    asset: str | None = key(
        None,
        "URI of an Airflow Asset for the raw source (e.g. file:///data/incoming/code.jsonl): an "
        "asset event (a producer DAG's outlet, or POST /api/v2/assets/events) triggers a run, "
        "besides the schedule; null = none",
    )
    start_date: str = key("2026-01-01", "first schedulable date, UTC (catchup is off)")
    retries: int = key(
        2, "retries of a task that crashed (a stage that says no, exit 1/2, is never retried)"
    )
    retry_delay_s: float = key(60.0, "seconds before a crashed task is retried")
    train_queue: str = key(
        "default",
        "Airflow queue of the train task (e.g. gpu: Celery workers started with "
        "`airflow celery worker -q gpu`); LocalExecutor ignores it",
    )
    train_pool: str = key(
        "default_pool", "Airflow pool of the train task (e.g. gpu, sized to the GPU workers)"
    )
    reproduce_tolerance: float = key(
        0.01,
        "taco_reproduce: largest absolute difference between a recorded and a reproduced "
        "score (scores in [0, 1]) that still counts as a match",
    )

    def validate(self) -> None:
        check_range("airflow.retries", self.retries, 0, 100)
        check_range("airflow.retry_delay_s", self.retry_delay_s, 0.0, 86_400.0)
        check_range("airflow.reproduce_tolerance", self.reproduce_tolerance, 0.0, 1.0)
        try:
            datetime.date.fromisoformat(self.start_date)
        except ValueError:
            raise ConfigError(
                f"airflow.start_date: {self.start_date!r} is not a date (YYYY-MM-DD)"
            ) from None
        for name in ("train_queue", "train_pool"):
            if not getattr(self, name).strip():
                raise ConfigError(f"airflow.{name}: must not be empty")


@dataclasses.dataclass(frozen=True)
class Params:
    """All sections of params.yaml, one typed field per section (absent sections: defaults).

    A stage reads ``params.<section>``; ``dataclasses.replace(params, train=...)`` derives a
    variant. The field defaults are the embedded defaults: params.yaml repeats them (a test
    holds the two equal)."""

    base: BaseParams = dataclasses.field(default_factory=BaseParams)
    ingest: IngestParams = dataclasses.field(default_factory=IngestParams)
    prepare: PrepareParams = dataclasses.field(default_factory=PrepareParams)
    validate: ValidateParams = dataclasses.field(default_factory=ValidateParams)
    llm: LLMParams = dataclasses.field(default_factory=LLMParams)
    tasks: TaskParams = dataclasses.field(default_factory=TaskParams)
    teacher: TeacherParams = dataclasses.field(default_factory=TeacherParams)
    reward: RewardParams = dataclasses.field(default_factory=RewardParams)
    warmstart: WarmstartParams = dataclasses.field(default_factory=WarmstartParams)
    train: TrainParams = dataclasses.field(default_factory=TrainParams)
    evaluate: EvaluateParams = dataclasses.field(default_factory=EvaluateParams)
    gate: GateParams = dataclasses.field(default_factory=GateParams)
    package: PackageParams = dataclasses.field(default_factory=PackageParams)
    serve: ServeParams = dataclasses.field(default_factory=ServeParams)

    airflow: AirflowParams = dataclasses.field(default_factory=AirflowParams)


def sections() -> dict[str, type]:
    """Section name → its dataclass, in params.yaml order."""
    hints = typing.get_type_hints(Params)
    return {f.name: hints[f.name] for f in dataclasses.fields(Params)}


def read_sections(path: Path) -> dict[str, Any]:
    """The top-level mapping of a params file (params.yaml or an overlay). ``ConfigError``
    names the file, and the line of a YAML error, when it is missing, unreadable, not YAML or
    not a mapping."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such params file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{line} not valid YAML ({exc})") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return dict(raw)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read params.yaml (a missing file gives all defaults) and validate every section."""
    path = Path(path)
    raw = read_sections(path) if path.exists() else {}
    known = sections()
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(
            f"{path}: unknown section(s) {', '.join(map(str, unknown))}; "
            f"allowed: {', '.join(known)}"
        )
    return Params(
        **{name: from_mapping(cls, raw.get(name), f"{path}:{name}") for name, cls in known.items()}
    )


def field_help(cls: type, name: str) -> str:
    """The help text of ``cls.name`` (``metadata={"help": ...}`` on the field), or ""."""
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name == name:
            return str(f.metadata.get("help", ""))
    raise KeyError(name)


def explain(params: Params | None = None, only: Sequence[str] | None = None) -> str:
    """Every params key as YAML, one line each: ``key: value  # help``, one section per
    stage, with each section's docstring as its heading. ``params`` gives the values
    (default: the defaults); ``only`` names the sections shown (default: all)."""
    params = params or Params()
    out: list[str] = []

    def walk(obj: Any, indent: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            text = f.metadata.get("help", "")
            if dataclasses.is_dataclass(value):
                out.append(f"{indent}{f.name}:" + (f"  # {text}" if text else ""))
                walk(value, indent + "  ")
                continue
            shown = yaml.safe_dump(to_dict(value), default_flow_style=True, width=10**6).strip()
            shown = shown.removesuffix("\n...").removesuffix("...").strip()
            if "\n" in shown:  # a string with line breaks: JSON (valid YAML) keeps one line
                shown = json.dumps(to_dict(value), ensure_ascii=False)
            out.append(f"{indent}{f.name}: {shown}" + (f"  # {text}" if text else ""))

    for name in sections() if only is None else only:
        section = getattr(params, name)
        doc = (type(section).__doc__ or "").strip().splitlines()[0]
        out.append(f"{name}:  # {doc}")
        walk(section, "  ")
    return "\n".join(out) + "\n"
