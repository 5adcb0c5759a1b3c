"""Where a bench runs: the CPU, its bf16/AMX/AVX-512/VNNI flags, torch's threads and kernels,
and ``--slow-kind``: the same process re-run with every kernel library capped at AVX2.

The slow kind is a CPU without native bf16, AVX-512 or VNNI (e.g. a 2-core AVX2 AMD EPYC).
On a faster CPU it is reproduced by capping the instruction sets torch's kernel libraries
dispatch to: ATen's own kernels, oneDNN (bf16, some fp32), MKL (fp32 GEMMs) and fbgemm
(int8 GEMMs); bf16 then runs emulated, as it does there. Clock, caches and memory stay this
machine's, so absolute times differ from a real AVX2 machine; ratios measured in the same run
are the comparable figures.
"""

from __future__ import annotations

import os
import platform
import sys

import torch

from taco.device import cpu_candidates, cpu_flags
from taco.llm.local import cpu_precision as llm_cpu_precision

SLOW_KIND_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
}
SHOWN_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
CAPPED_AWAY = ("avx512", "amx", "avx_vnni")  # flag prefixes the AVX2 cap hides
CPU_FLAGS = cpu_flags()  # read once, before any patching


def slow_kind() -> bool:
    """True when this process runs with the AVX2 caps of ``SLOW_KIND_ENV``."""
    return all(os.environ.get(k) == v for k, v in SLOW_KIND_ENV.items())


def reexec_as_slow_kind() -> None:
    """Re-run this script with ``SLOW_KIND_ENV`` (the caps must be set before torch loads);
    in the re-run, taco's ``auto`` rules see only the flags the caps leave (``effective_flags``),
    as they would on a CPU of the slow kind."""
    if not slow_kind():
        env = {**os.environ, **SLOW_KIND_ENV}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    import taco.device
    import taco.llm.local

    for module in (taco.device, taco.llm.local):
        module.cpu_flags = lambda cpuinfo=None: effective_flags()  # type: ignore[assignment]


def effective_flags() -> frozenset[str]:
    """The CPU flags the kernels may use: all of them, or the AVX2 subset in the slow kind."""
    flags = CPU_FLAGS
    if slow_kind():
        flags = frozenset(f for f in flags if not f.startswith(CAPPED_AWAY))
    return flags


def cpu_model() -> str:
    for line in cpu_info_lines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.processor() or platform.machine()


def cpu_info_lines() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            return fh.read().splitlines()
    except OSError:
        return []


def describe(path_chosen: str = "") -> list[str]:
    """Comment lines (``# ...``) saying where the bench runs and which paths ``auto`` tries
    (in the slow kind: as on a CPU with only the AVX2 subset of these flags)."""
    flags = CPU_FLAGS
    shown = " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in SHOWN_FLAGS)
    candidates, why = cpu_candidates(effective_flags())
    llm_auto, llm_why = llm_cpu_precision(effective_flags())
    kind = (
        "SLOW KIND REPRODUCED: kernels capped at AVX2 ("
        + " ".join(f"{k}={v}" for k, v in SLOW_KIND_ENV.items())
        + "); bf16 is emulated, int8 runs fbgemm's AVX2 kernels"
        if slow_kind()
        else "native: every instruction set the CPU has"
    )
    lines = [
        f"# cpu: {cpu_model()}, {os.cpu_count()} logical cores; flags: {shown}",
        f"# torch {torch.__version__}: {torch.get_num_threads()} threads, kernels "
        f"{torch.backends.cpu.get_cpu_capability()}, quantized engine "
        f"{torch.backends.quantized.engine}; {kind}",
        f"# auto: compressor tries {' > '.join(candidates)} ({why}; the first whose decisions "
        f"agree with float32 on >= 99% of calibration words), LLM {llm_auto} ({llm_why})",
        *([f"# {path_chosen}"] if path_chosen else []),
        f"# load average (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
        "(a shared machine: figures are medians of interleaved repeats)",
    ]
    return lines
