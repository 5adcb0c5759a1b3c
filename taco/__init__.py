"""taco: task-aware prompt compression (TACO-RL) — the library behind the pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["CompressionResult", "Compressor", "__version__"]

if TYPE_CHECKING:
    from taco.compress.compressor import CompressionResult, Compressor


def __getattr__(name: str) -> Any:
    # Lazy: `import taco` stays cheap (no torch) for the CLI's --help and for DAG parsing.
    if name in ("Compressor", "CompressionResult"):
        from taco.compress import compressor

        return getattr(compressor, name)
    raise AttributeError(f"module 'taco' has no attribute {name!r}")
