"""How long Airflow takes to parse taco's DAG files, next to a peer: a DAG file with one
empty task, parsed by the same DagBag in the same run (median of N fresh interpreters).

    python bench/dag_parse.py [--repeat 5]

Each file is parsed alone in a fresh interpreter (so it pays for its own imports). Prints one
row per file: median, min and max seconds of DagBag's own per-file timing, and the ratio to
the empty DAG. The machine is shared: compare within a run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

EMPTY_DAG = '''"""peer: one empty task"""
import datetime
from airflow.sdk import dag, task

@dag(schedule=None, start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
def empty():
    @task
    def nothing():
        return None
    nothing()

empty()
'''

PARSE = """
import json, sys
from airflow.models import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
print(json.dumps({s.file.lstrip("/"): s.duration.total_seconds() for s in bag.dagbag_stats}))
"""


def parse_once(folder: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    out = subprocess.run(
        [sys.executable, "-c", PARSE, str(folder)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="fresh interpreters per file")
    args = ap.parse_args()
    sources = {f.name: f.read_text(encoding="utf-8") for f in sorted((ROOT / "dags").glob("*.py"))}
    sources["empty_peer.py"] = EMPTY_DAG
    times: dict[str, list[float]] = {name: [] for name in sources}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("AIRFLOW_HOME", str(Path(tmp) / "airflow-home"))
        for _ in range(args.repeat):
            for name, text in sources.items():  # each file alone: it pays its own imports
                folder = Path(tmp) / name.removesuffix(".py")
                folder.mkdir(exist_ok=True)
                (folder / name).write_text(text, encoding="utf-8")
                times[name].extend(parse_once(folder).values())
    peer = statistics.median(times["empty_peer.py"])
    print(f"DAG file parse time, {args.repeat} fresh interpreters (DagBag's per-file timing)")
    print(f"{'file':<22}{'median s':>10}{'min s':>9}{'max s':>9}{'vs empty':>10}")
    for name, values in sorted(times.items()):
        med = statistics.median(values)
        print(f"{name:<22}{med:>10.3f}{min(values):>9.3f}{max(values):>9.3f}{med / peer:>9.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
