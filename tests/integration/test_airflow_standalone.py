"""The real scheduler path: `airflow standalone` (API on 127.0.0.1, LocalExecutor, SQLite)
runs taco_retrain triggered through the REST API; a second trigger waits (max_active_runs=1).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.workspace import env, make_workspace, tiny_models, tiny_params

pytestmark = pytest.mark.slow

DAG = "taco_retrain"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """The Airflow REST API v2 (simple auth manager, every user admin: no token)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v2"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def runs(self) -> dict[str, dict[str, Any]]:
        return {r["dag_run_id"]: r for r in self.call("GET", f"/dags/{DAG}/dagRuns")["dag_runs"]}


def wait_for(what: str, check: Any, timeout: float, proc: subprocess.Popen) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"airflow standalone exited with {proc.returncode}"
        try:
            result = check()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            result = None
        if result:
            return result
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def standalone(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Api, Path, subprocess.Popen]]:
    base = tmp_path_factory.mktemp("standalone")
    ws = make_workspace(base / "ws", tiny_params(base, tiny_models(base / "models")))
    port = free_port()
    environ = {
        **env(),
        "AIRFLOW_HOME": str(base / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ws / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "TACO_WORKSPACE": str(ws),
        "PYTHONPATH": str(ws),  # the workspace's own taco, as in a deployment
    }
    log = (base / "standalone.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("airflow")), "standalone"],
        env=environ,
        cwd=base,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as a whole below
    )
    try:
        api = Api(port)
        wait_for("a healthy scheduler", lambda: api.call("GET", "/monitor/health"), 300, proc)
        wait_for(f"{DAG} to be parsed", lambda: api.call("GET", f"/dags/{DAG}"), 300, proc)
        yield api, base, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_triggered_runs_succeed_one_at_a_time(standalone: tuple[Api, Path, Any]) -> None:
    api, base, proc = standalone
    api.call("PATCH", f"/dags/{DAG}", {"is_paused": False})
    first = api.call("POST", f"/dags/{DAG}/dagRuns", {"logical_date": None, "conf": {}})
    second = api.call("POST", f"/dags/{DAG}/dagRuns", {"logical_date": None, "conf": {}})
    a, b = first["dag_run_id"], second["dag_run_id"]

    seen: list[tuple[str, str]] = []

    def both_done() -> bool:
        runs = api.runs()
        seen.append((runs[a]["state"], runs[b]["state"]))
        assert "failed" not in seen[-1], f"a run failed; see {base / 'airflow' / 'logs'}"
        return seen[-1] == ("success", "success")

    wait_for("both runs to succeed", both_done, 1800, proc)
    assert ("running", "queued") in seen, seen  # the second waited while the first ran
    assert ("running", "running") not in seen, seen
    runs = api.runs()
    assert runs[b]["start_date"] >= runs[a]["end_date"]
    tasks = api.call("GET", f"/dags/{DAG}/dagRuns/{a}/taskInstances")["task_instances"]
    states = {t["task_id"]: t["state"] for t in tasks}
    assert states["train"] == "success" and states["lineage"] == "success"
    assert states["package"] in ("success", "skipped")  # skipped when the gate said no
