"""Moved to taco/eval/llmlingua_worker.py (one owner: the evaluation's llmlingua baseline
and bench/compress_speed.py use the same worker); this path keeps the bench's command working."""

import runpy
from pathlib import Path

WORKER = Path(__file__).resolve().parents[1] / "taco" / "eval" / "llmlingua_worker.py"
runpy.run_path(str(WORKER), run_name="__main__")
