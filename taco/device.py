"""Where and in which precision models run: device and dtype resolution for every model.

A CPU's ``auto`` precisions follow from its feature flags (``cpu_candidates``, a pure
function), fastest first, as measured on 2-core CPUs (docs/results.md): with AMX, bf16; with
AVX2, dynamic int8 (int8 weights, activations quantized per call), which beats float32 and
avx512_bf16 without AMX; native bf16 (avx512_bf16) next; float32 always last. Emulated bf16
(no avx512_bf16/amx_bf16) is 3-5× *slower* than float32 and is never tried. int8 here is
torch's (fbgemm) on the linear layers; the compressor's encoder runs int8 on ONNX Runtime
instead where it can (``taco.compress.onnx_int8``: fused attention, 1.07× torch's int8).
int8 moves enough scores to change a few percent of a trained compressor's keep/drop
decisions, so the compressor uses a candidate only after checking its decisions against
float32's (``Compressor``); the LLM's rule is its own (``taco.llm_local.cpu_precision``).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Literal

import torch

from taco.errors import ArgumentError

log = logging.getLogger(__name__)

Precision = Literal["float32", "bfloat16", "int8"]
TORCH_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "int8": torch.float32,  # int8 weights, float32 activations (dynamic quantization)
}
CPUINFO = Path("/proc/cpuinfo")


def resolve_device(device: str) -> torch.device:
    """``device`` (cpu | cuda | cuda:N | auto) as a torch device that exists here.

    Raises ArgumentError naming the value when it is none of those, or names a GPU this
    machine (or this CPU-only torch build) does not have."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ArgumentError(f"device {device!r}: use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            build = " (this torch is a CPU build)" if torch.version.cuda is None else ""
            raise ArgumentError(f"device {device!r}: no CUDA GPU here{build}; use cpu or auto")
        if dev.index is not None and dev.index >= count:
            raise ArgumentError(f"device {device!r}: this machine has cuda:0 to cuda:{count - 1}")
    elif dev.type != "cpu":
        raise ArgumentError(f"device {device!r}: taco runs on cpu or cuda (cuda:N), or auto")
    return dev


def bf16_supported(device: torch.device) -> bool:
    """bf16 with native hardware support: CUDA bf16, or a CPU with AVX512-BF16/AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "float32":
        return torch.float32
    if dtype == "bfloat16":
        return torch.bfloat16
    if dtype == "auto":
        return torch.bfloat16 if bf16_supported(device) else torch.float32
    raise ValueError(f"dtype must be one of float32, bfloat16, auto; got {dtype!r}")


# ------------------------------------------------------------------- CPU kinds and int8


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (the first ``flags``/``Features`` line of
    /proc/cpuinfo, or of ``cpuinfo``); empty where unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_candidates(flags: Collection[str]) -> tuple[tuple[Precision, ...], str]:
    """The precisions worth trying on a CPU with these flags, fastest first (float32 last,
    always), and why: a pure function of the flags; speeds in the module docstring."""
    if "amx_bf16" in flags:
        return ("bfloat16", "float32"), "native bf16 (AMX)"
    int8 = "avx2" in flags  # fbgemm's int8 kernels need AVX2 (VNNI makes them faster)
    vnni = "avx512_vnni" in flags or "avx_vnni" in flags
    kernels = f"int8 kernels ({'VNNI' if vnni else 'AVX2, no VNNI'})"
    if "avx512_bf16" in flags:
        if int8:
            return ("int8", "bfloat16", "float32"), f"{kernels}, native bf16 (avx512_bf16)"
        return ("bfloat16", "float32"), "native bf16 (avx512_bf16)"
    if int8:
        return ("int8", "float32"), f"{kernels}, no native bf16"
    return ("float32",), "no native bf16, no int8 kernels"


def precision_candidates(
    dtype: str, device: torch.device, flags: Collection[str] | None = None
) -> tuple[tuple[Precision, ...], str]:
    """``dtype`` (float32 | bfloat16 | int8 | auto) as the precisions to try on ``device``,
    fastest first, and why. ``auto``: bf16 then float32 on a CUDA GPU that has bf16, else
    float32; on a CPU, ``cpu_candidates`` of its flags (``cpu_flags`` unless given)."""
    if dtype in ("float32", "bfloat16", "int8"):
        return (dtype,), "asked"  # type: ignore[return-value]
    if dtype != "auto":
        raise ValueError(f"dtype must be one of float32, bfloat16, int8, auto; got {dtype!r}")
    if device.type == "cpu":
        candidates, why = cpu_candidates(cpu_flags() if flags is None else flags)
        return candidates, f"auto: {why}"
    if bf16_supported(device):
        return ("bfloat16", "float32"), f"auto: native bf16 on {device.type}"
    return ("float32",), f"auto: no native bf16 on {device.type}"


def int8_unavailable(device: torch.device) -> str | None:
    """Why dynamic int8 cannot run on ``device`` here (None: it can)."""
    if device.type != "cpu":
        return f"dynamic int8 runs on CPUs only, not {device.type}"
    engine = torch.backends.quantized.engine
    if engine in (None, "none") or engine not in torch.backends.quantized.supported_engines:
        return f"torch has no quantized engine here ({engine!r})"
    try:
        from torch.ao.quantization import quantize_dynamic  # noqa: F401
    except ImportError:
        return "this torch has no torch.ao.quantization.quantize_dynamic"
    return None


@contextlib.contextmanager
def _quiet_deprecation() -> Iterator[None]:
    """torch.ao's eager quantization announces its move to torchao on every call; the kernels
    are the ones torch still ships (fbgemm/onednn), so only those two notices are muted."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"torch\.ao\.quantization is deprecated", category=DeprecationWarning
        )
        warnings.filterwarnings(
            "ignore", message=r"torch\.quantize_per_tensor.*deprecated", category=UserWarning
        )
        yield


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` (float32, CPU) whose ``nn.Linear`` layers hold int8 weights and
    quantize their inputs per call (torch's dynamic quantization; inference only)."""
    from torch.ao.quantization import quantize_dynamic

    with _quiet_deprecation():
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)


def place_model(
    model: torch.nn.Module, precision: Precision, device: torch.device, what: str = "model"
) -> tuple[torch.nn.Module, Precision]:
    """``model`` on ``device`` in ``precision``, in eval mode. Where int8 cannot run, logs
    why and falls back to float32 (never an error). Returns (model, precision used)."""
    if precision == "int8":
        reason = int8_unavailable(device)
        if reason is None:
            try:
                return quantize_int8(model.to(device, dtype=torch.float32).eval()), "int8"
            except (RuntimeError, NotImplementedError, AssertionError) as exc:
                reason = f"quantization failed: {str(exc).splitlines()[0] if str(exc) else exc}"
        log.warning("%s: int8 is not available (%s); using float32", what, reason)
        precision = "float32"
    return model.to(device, dtype=TORCH_DTYPES[precision]).eval(), precision
