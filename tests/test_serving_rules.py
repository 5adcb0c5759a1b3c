"""The service's import rule, and the bento carrying every module the service reaches."""

from __future__ import annotations

import fnmatch

import yaml

from tests.helpers.paths import ROOT
from tests.test_pipeline_contract import closure, imports_of, module_file

SERVICE = "taco.serving.service"


def test_the_service_imports_taco_compress_config_and_layout_only() -> None:
    allowed = ("taco.compress", "taco.config", "taco.layout")
    bad = [m for m in imports_of(SERVICE) if not m.startswith(allowed)]
    assert not bad, f"{SERVICE} imports {bad}; it may import {allowed} only"


def test_bentofile_includes_every_module_the_service_reaches() -> None:
    spec = yaml.safe_load((ROOT / "bentofile.yaml").read_text(encoding="utf-8"))
    assert spec["service"] == f"{SERVICE}:TacoCompressor"
    assert spec["python"]["lock_packages"] is False  # no network at build time
    patterns = spec["include"]
    files = {module_file(m).relative_to(ROOT).as_posix() for m in closure(SERVICE)}
    files.add("taco/__init__.py")
    missing = sorted(f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns))
    assert not missing, f"bentofile.yaml does not include {missing}"
    assert "params.yaml" in patterns  # the service's settings travel with the bento
