"""Shared test setup: offline env, temporary homes, and the shared real data samples."""

from __future__ import annotations

import os

import pytest

from taco.cli import OFFLINE_ENV

# Offline by construction, for this process and every subprocess a test starts.
for key, value in {
    **OFFLINE_ENV,
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(key, value)


@pytest.fixture(autouse=True, scope="session")
def _temporary_homes(tmp_path_factory: pytest.TempPathFactory) -> None:
    homes = tmp_path_factory.mktemp("homes")
    os.environ["AIRFLOW_HOME"] = str(homes / "airflow")
    os.environ["BENTOML_HOME"] = str(homes / "bentoml")
    os.environ["HF_HOME"] = str(homes / "hf")
    os.environ.setdefault("TACO_CACHE_DIR", str(homes / "taco-cache"))
