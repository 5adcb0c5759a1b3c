"""Where a bench runs: the CPU, its bf16/AMX/AVX-512/VNNI flags, torch's threads and kernels,
and ``--slow-kind``: the same process re-run with every kernel library capped at AVX2.

The slow kind is a CPU without native bf16, AVX-512 or VNNI (e.g. a 2-core AVX2 AMD EPYC).
On a faster x86-64 Linux CPU it is reproduced two ways at once:

- the CPUID mask (bench/cpuid_mask.c, compiled here with gcc and LD_PRELOADed): every CPUID
  instruction answers without AVX-512, VNNI, AMX and avx512_bf16, so *every* library in the
  process (torch's ATen, oneDNN, MKL and fbgemm, ONNX Runtime's MLAS, llmlingua's torch in
  its side venv) dispatches to its AVX2 kernels, as on such a CPU. Needs Linux's CPUID
  faulting (the ``cpuid_fault`` flag); where it is missing, only the caps below apply and ONNX
  Runtime still sees the whole CPU (the header says so);
- the documented caps of torch's kernel libraries (``SLOW_KIND_ENV``).

bf16 then runs emulated, as it does there. Clock, caches and memory stay this machine's, so
absolute times differ from a real AVX2 machine; ratios measured in the same run are the
comparable figures.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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


MASK_SOURCE = Path(__file__).with_name("cpuid_mask.c")


def mask_library() -> tuple[Path | None, str]:
    """The CPUID mask built for this machine (cached by the source's hash), or None and why."""
    if "cpuid_fault" not in CPU_FLAGS:
        return None, "this CPU has no CPUID faulting (cpuid_fault)"
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        return None, "no C compiler (gcc) to build bench/cpuid_mask.c"
    digest = hashlib.sha256(MASK_SOURCE.read_bytes()).hexdigest()[:12]
    lib = Path(tempfile.gettempdir()) / f"taco-cpuid-mask-{digest}.so"
    if not lib.is_file():
        part = lib.with_suffix(f".{os.getpid()}.part")
        cmd = [gcc, "-O2", "-shared", "-fPIC", "-o", str(part), str(MASK_SOURCE)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return None, f"gcc failed: {done.stderr.strip().splitlines()[-1:]}"
        os.replace(part, lib)
    return lib, "built"


def mask_active() -> bool:
    """True when the CPUID mask is loaded in this process and faulting is on."""
    lib = os.environ.get("LD_PRELOAD", "")
    if "taco-cpuid-mask" not in lib:
        return False
    try:
        path = next(p for p in lib.split(":") if "taco-cpuid-mask" in p)
        return bool(ctypes.c_int.in_dll(ctypes.CDLL(path), "cpuid_mask_active").value)
    except (OSError, ValueError, StopIteration):
        return False


MASK_NOTE = ""  # why the mask is not in use (set by reexec_as_slow_kind's re-run)


def reexec_as_slow_kind() -> None:
    """Re-run this script as the slow kind: with the CPUID mask preloaded where it can be
    built, and ``SLOW_KIND_ENV`` (both must be in place before torch loads); in the re-run,
    taco's ``auto`` rules see only the flags the slow kind has (``effective_flags``), as they
    would on such a CPU."""
    global MASK_NOTE
    if not slow_kind():
        env = {**os.environ, **SLOW_KIND_ENV}
        lib, why = mask_library()
        if lib is not None:
            env["LD_PRELOAD"] = ":".join(filter(None, [str(lib), env.get("LD_PRELOAD")]))
        else:
            env["TACO_BENCH_NO_MASK"] = why
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    MASK_NOTE = os.environ.get("TACO_BENCH_NO_MASK", "")
    import taco.device
    import taco.llm.local

    for module in (taco.device, taco.llm.local):
        module.cpu_flags = lambda cpuinfo=None: effective_flags()  # type: ignore[assignment]


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """``parser``'s arguments plus ``--slow-kind``; with it, the script re-runs as the slow
    kind (``reexec_as_slow_kind``) before anything else happens."""
    parser.add_argument(
        "--slow-kind",
        action="store_true",
        help="run as a CPU without AVX-512/VNNI/native bf16 (bench/cpu_kind.py)",
    )
    args = parser.parse_args()
    if args.slow_kind:
        reexec_as_slow_kind()
    return args


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
    mask = (
        "CPUID masked (AVX-512, VNNI, AMX, avx512_bf16 hidden from every library, ONNX "
        "Runtime and llmlingua included)"
        if mask_active()
        else f"CPUID NOT masked ({MASK_NOTE or 'the mask did not load'}): ONNX Runtime "
        "still uses the whole CPU"
    )
    kind = (
        f"SLOW KIND REPRODUCED: {mask}; torch's kernel libraries capped at AVX2 ("
        + " ".join(f"{k}={v}" for k, v in SLOW_KIND_ENV.items())
        + "); bf16 is emulated, int8 runs AVX2 kernels"
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
