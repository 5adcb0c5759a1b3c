"""The compressor's int8 path on ONNX Runtime: export the encoder once, fuse it, quantize it,
cache it, run it.

Why ONNX Runtime and not only torch's dynamic int8 (measured on a CPU of the slow kind, no
AVX-512/VNNI/native bf16; docs/results.md, 2026-12-07): torch's dynamic int8 quantizes the
linear layers but leaves attention, GELU, the residual adds and LayerNorms as separate fp32
kernels; on MiniLM at 512 tokens those take half the time. ONNX Runtime's transformer optimizer
fuses them (Attention, BiasGelu, SkipLayerNormalization, EmbedLayerNormalization) and its
dynamic quantization then runs attention's projections and every MatMul in int8. Same weights,
same inputs, same keep/drop rule; the compressor's ``auto`` still checks the decisions against
float32 before it uses this path.

The graph is built from the model in memory (``torch.onnx.export``, TorchScript exporter, eager
attention so the optimizer recognises it) and cached under
``$TACO_CACHE_DIR/onnx/<digest>/model.int8.onnx``, keyed by the weights, config and library
versions: the first int8 load of a model costs seconds, later ones load the file. Written
atomically, so concurrent first loads are safe.

``TACO_INT8_RUNTIME=torch`` forces torch's dynamic int8 (also the fallback, with a log line,
where onnxruntime is missing or the export fails).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from taco.compress.encoder import input_names
from taco.device import Precision, place_model
from taco.layout import cache_dir

log = logging.getLogger(__name__)

RECIPE = 1  # bump when the export/optimize/quantize recipe changes: old cache entries are unused
RUNTIME_ENV = "TACO_INT8_RUNTIME"  # torch | onnxruntime (default)
FUSED_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "distilbert")


def onnx_unavailable() -> str | None:
    """Why the ONNX Runtime int8 path cannot run here (None: it can)."""
    forced = os.environ.get(RUNTIME_ENV, "").strip().lower() or "onnxruntime"
    if forced == "torch":
        return f"{RUNTIME_ENV}=torch"
    if forced != "onnxruntime":
        log.warning("%s=%r is not torch or onnxruntime; using onnxruntime", RUNTIME_ENV, forced)
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed"
    return None


def model_digest(model: torch.nn.Module) -> str:
    """SHA-256 (first 20 hex digits) of a model's config, weights and the export stack's
    versions: the cache key of its int8 graph."""
    import onnx
    import onnxruntime
    import transformers

    h = hashlib.sha256()
    versions = (RECIPE, torch.__version__, transformers.__version__, onnx.__version__)
    h.update(json.dumps([*versions, onnxruntime.__version__]).encode())
    h.update(json.dumps(model.config.to_diff_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's tracer warnings and the optimizer's and quantizer's INFO lines (some on
    the root logger) say nothing a user can act on; errors still raise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def remove_stale_builds(folder: Path) -> None:
    """Delete the build folders (``.build-<pid>-*``) of processes that no longer run: a build
    killed part-way leaves one (~90 MB for MiniLM)."""
    for stale in folder.glob(".build-*-*"):
        pid = stale.name.split("-")[1]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def build_int8(model: torch.nn.Module, dest: Path) -> None:
    """Export ``model`` (a token classifier) to ONNX, fuse it with ONNX Runtime's transformer
    optimizer where the architecture is one it knows, quantize it dynamically (int8 weights,
    uint8 activations) and write it to ``dest`` atomically."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    config = model.config
    names = input_names(config)
    eager = copy.deepcopy(model).to("cpu", torch.float32).eval()
    eager.set_attn_implementation("eager")  # the optimizer's attention patterns match eager
    ids = torch.full((2, 16), 100, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0  # a padded row, so the mask path is traced
    example = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(dest.parent)
    with (
        tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".build-{os.getpid()}-") as tmp,
        _quiet(),
    ):
        raw, fused = Path(tmp) / "raw.onnx", Path(tmp) / "fused.onnx"
        torch.onnx.export(
            eager,
            (),
            str(raw),
            kwargs={n: example[n] for n in names},
            input_names=names,
            output_names=["logits"],
            dynamic_axes={n: {0: "batch", 1: "positions"} for n in [*names, "logits"]},
            opset_version=17,
            dynamo=False,
        )
        source = raw
        if getattr(config, "model_type", "") in FUSED_TYPES:
            optimize_model(
                str(raw),
                model_type="bert",
                num_heads=int(config.num_attention_heads),
                hidden_size=int(config.hidden_size),
            ).save_model_to_file(str(fused))
            source = fused
        part = Path(tmp) / "model.int8.onnx"
        quantize_dynamic(
            str(source),
            str(part),
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )
        os.replace(part, dest)


class OnnxTokenClassifier:
    """An ONNX Runtime session that answers like a transformers token classifier:
    ``model(input_ids=…, attention_mask=…[, token_type_ids=…]).logits`` is a float32 tensor
    ``(rows, positions, labels)``. Inference only; ``config`` is the source model's."""

    def __init__(self, path: Path, config: Any) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # idle threads sleep instead of spinning: a spinning pool kept the cores from torch
        # work in the same process (e.g. a local LLM) right after each run, which then ran
        # ~2.9x slower; compression itself is no slower (docs/results.md, 2026-12-07)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.config = config
        self.path = path

    def __call__(self, **inputs: torch.Tensor) -> Any:
        from transformers.modeling_outputs import TokenClassifierOutput

        feed = {n: inputs[n].cpu().numpy() for n in self.inputs}
        (logits,) = self.session.run(["logits"], feed)
        return TokenClassifierOutput(logits=torch.from_numpy(logits))

    def eval(self) -> OnnxTokenClassifier:
        return self


def onnx_int8(model: torch.nn.Module, what: str = "model") -> OnnxTokenClassifier:
    """``model`` as a cached, fused, int8 ONNX Runtime session (built on first use)."""
    with _quiet():
        path = cache_dir() / "onnx" / model_digest(model) / "model.int8.onnx"
    if path.is_file():
        try:
            return OnnxTokenClassifier(path, model.config)
        except Exception as exc:  # a damaged cache file: build it again
            log.warning(
                "%s: the cached int8 graph %s does not load (%s); rebuilding", what, path, exc
            )
    log.info("%s: building its int8 ONNX graph (once per model): %s", what, path)
    build_int8(model, path)
    return OnnxTokenClassifier(path, model.config)


def place_encoder(
    model: torch.nn.Module, precision: Precision, device: torch.device, what: str = "model"
) -> tuple[Any, Precision]:
    """``taco.device.place_model`` for a compressor's encoder, with int8 on ONNX Runtime
    (``onnx_int8``) where it can run; elsewhere, with a log line, torch's dynamic int8."""
    if precision == "int8" and device.type == "cpu":
        reason = onnx_unavailable()
        if reason is None:
            try:
                return onnx_int8(model, what), "int8"
            except Exception as exc:  # the exporter and optimizer raise many kinds
                first = str(exc).splitlines()[0] if str(exc) else repr(exc)
                reason = f"its int8 ONNX graph could not be built or loaded: {first}"
        log.info("%s: int8 on torch's dynamic quantization, not ONNX Runtime (%s)", what, reason)
    return place_model(model, precision, device, what)


def runtime_of(model: Any) -> str:
    """Which library runs a placed encoder: onnxruntime or torch."""
    return "onnxruntime" if isinstance(model, OnnxTokenClassifier) else "torch"
