"""Where and in which precision models run: device and dtype resolution for every model.

A CPU's ``auto`` precision follows from its feature flags (``cpu_precision``), measured on
2-core AMD EPYCs (docs/results.md): with AMX, bf16 (≈2× fp32); without AMX, torch's dynamic
int8 on the linear layers (fbgemm; needs AVX2), which beat fp32 by 1.6× (AVX2 only) to 1.9×
(AVX512-VNNI) and beat avx512_bf16 without AMX; with neither, float32. Emulated bf16 (no
avx512_bf16/amx_bf16) is 3-5× *slower* than fp32 and is never chosen.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Literal

import torch

log = logging.getLogger(__name__)

Precision = Literal["float32", "bfloat16", "int8"]
TORCH_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "int8": torch.float32,  # int8 weights, float32 activations (dynamic quantization)
}
CPUINFO = Path("/proc/cpuinfo")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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


def cpu_precision(flags: Collection[str]) -> tuple[Precision, str]:
    """The ``auto`` precision of an encoder or the embedded LLM on a CPU with these flags,
    and why (a pure function of the flags; rule and measurements in the module docstring)."""
    if "amx_bf16" in flags:
        return "bfloat16", "native bf16 (amx_bf16)"
    if "avx2" in flags:
        vnni = "avx512_vnni" in flags or "avx_vnni" in flags
        why = "VNNI" if vnni else "AVX2, no VNNI"
        return "int8", f"int8 kernels ({why}), no AMX"
    if "avx512_bf16" in flags:
        return "bfloat16", "native bf16 (avx512_bf16), no int8 kernels"
    return "float32", "no native bf16, no int8 kernels"


def resolve_precision(
    dtype: str, device: torch.device, flags: Collection[str] | None = None
) -> tuple[Precision, str]:
    """``dtype`` (float32 | bfloat16 | int8 | auto) as a precision for ``device``, and why.
    ``auto``: bf16 on a CUDA GPU that has it, else float32; on a CPU, ``cpu_precision``."""
    if dtype in ("float32", "bfloat16", "int8"):
        return dtype, "asked"  # type: ignore[return-value]
    if dtype != "auto":
        raise ValueError(f"dtype must be one of float32, bfloat16, int8, auto; got {dtype!r}")
    if device.type == "cpu":
        precision, why = cpu_precision(cpu_flags() if flags is None else flags)
        return precision, f"auto: {why}"
    if bf16_supported(device):
        return "bfloat16", f"auto: native bf16 on {device.type}"
    return "float32", f"auto: no native bf16 on {device.type}"


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
