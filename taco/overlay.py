"""Config overlays: a partial params file deep-merged over params.yaml (e.g. configs/gpu.yaml).

    python -m taco.overlay params.yaml configs/gpu.yaml -o params.gpu.yaml
    taco train --params params.gpu.yaml

The merged file is validated like params.yaml (unknown keys are rejected) before it is written.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` wins; mappings are merged key by key, everything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def write_overlaid(base: Path, overlays: Sequence[Path], out: Path) -> Path:
    """Merge ``overlays`` (in order) over ``base``, validate, write ``out`` atomically;
    ``ConfigError`` names a missing, broken or invalid file (``out`` is then not written)."""
    from taco.config import load_params, read_sections

    merged = read_sections(base)
    for o in overlays:
        merged = deep_merge(merged, read_sections(o))
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(yaml.safe_dump(merged, sort_keys=False, allow_unicode=True), encoding="utf-8")
    try:
        load_params(tmp)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m taco.overlay", description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path, help="params.yaml")
    ap.add_argument("overlays", type=Path, nargs="+", help="partial params files, applied in order")
    ap.add_argument("-o", "--out", type=Path, required=True, help="merged params file to write")
    args = ap.parse_args(argv)
    from taco.config import ConfigError

    try:
        write_overlaid(args.base, args.overlays, args.out)
    except ConfigError as exc:
        sys.stderr.write(f"taco.overlay: error: {exc}\n")
        return 2
    sys.stdout.write(f"{args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
