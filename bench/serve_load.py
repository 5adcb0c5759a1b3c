"""Load on the real BentoML service vs the in-process Compressor, in the same run.

    .venv/bin/python bench/serve_load.py [--model FOLDER] [--seconds 20] [--concurrency 1,8,16]

Packages a model (default: the embedded MiniLM with taco's seeded head, the size every
trained compressor has; or --model, a trained compressor folder) into a temporary BentoML
store with `taco package`, serves its bento with `bentoml serve` on 127.0.0.1, and measures:

1. ``/compress`` under N concurrent clients for T seconds each: requests/s, p50/p95/p99
   latency, errors; and the in-process ``Compressor`` on the same prompts, one by one and in
   batches of 8 (``compress_many``), interleaved with the server runs (median of --repeats).
   Goals: 0 errors; at concurrency 8, >= 70% of the in-process one-by-one throughput;
   p99 <= 3 x p50. CPU time per request (the server's processes; the in-process run's own)
   is printed too: on a machine shared with other work it compares better than wall time.
2. Bad input: >= 200 malformed, invalid, oversized and unauthorised requests -> all 4xx,
   no 5xx, and the server still ready and answering afterwards.
3. The proxy's added latency: POST /v1/chat/completions through the service (compression
   off, and on) vs straight to the fake OpenAI-compatible upstream (median, p99).

Prompts are real code functions (../shared/data/code/dev.jsonl). Clients run on the same
machine as the server (they share its cores): say so when quoting the figures.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.helpers: the fixture builders and the fake upstream

from taco.compress.compressor import Compressor  # noqa: E402
from tests.helpers import packaging as fx  # noqa: E402
from tests.helpers.bento_server import BentoServer  # noqa: E402
from tests.helpers.openai_server import FakeOpenAIServer  # noqa: E402
from tests.helpers.training import write_params  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "code" / "dev.jsonl"
KEY = "bench-key"
RATE = 0.5


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def batched(url: str) -> tuple[float, float]:
    """(requests, encoder calls) of /compress so far: BentoML's adaptive batch-size histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {"_sum": 0.0, "_count": 0.0}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text):
        for sample in family.samples:
            if (
                "adaptive_batch_size" in sample.name
                and sample.labels.get("method_name") == "compress"
            ):
                for suffix in out:
                    if sample.name.endswith(suffix):
                        out[suffix] += sample.value
    return out["_sum"], out["_count"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its children (the server's workers)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def load(
    url: str, prompts: list[str], clients: int, seconds: float, pid: int | None = None
) -> dict[str, Any]:
    """``clients`` threads POST /compress in a loop for ``seconds``; figures of the run,
    with the mean number of requests BentoML merged into one encoder call."""
    latencies: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(offset: int) -> None:
        with httpx.Client(base_url=url, headers={"x-api-key": KEY}, timeout=120) as http:
            i = offset
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    status = http.post("/compress", json={"prompt": prompts[i % len(prompts)]})
                    code = status.status_code
                except httpx.HTTPError:
                    code = -1
                dt = time.perf_counter() - t0
                with lock:
                    (latencies if code == 200 else errors).append(dt if code == 200 else code)
                i += clients

    before = batched(url)
    cpu0 = cpu_seconds(pid) if pid else 0.0
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - started
    after = batched(url)
    cpu = cpu_seconds(pid) - cpu0 if pid else float("nan")
    return {
        "cpu_ms": cpu / max(len(latencies), 1) * 1e3,
        "batch": (after[0] - before[0]) / max(after[1] - before[1], 1),
        "rps": len(latencies) / wall,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "p99": percentile(latencies, 99),
        "ok": len(latencies),
        "errors": len(errors),
        "error_codes": sorted(set(errors)),
    }


def in_process(
    comp: Compressor, prompts: list[str], seconds: float, batch: int
) -> tuple[float, float]:
    """(prompts per second, CPU ms per prompt) of the in-process compressor, ``batch``
    prompts per call."""
    done, i = 0, 0
    started, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        chunk = [prompts[(i + j) % len(prompts)] for j in range(batch)]
        comp.compress_many(chunk, rate=RATE)
        done += batch
        i += batch
    cpu = time.process_time() - cpu0
    return done / (time.perf_counter() - started), cpu / done * 1e3


def bad_requests(url: str, n: int) -> dict[str, int]:
    """``n`` requests that are each a client's mistake; their status codes, counted."""
    key = {"x-api-key": KEY}
    json_h = {**key, "content-type": "application/json"}
    cases: list[dict[str, Any]] = [
        {"content": b'{"prompt": "unterminated', "headers": json_h},
        {"content": b"", "headers": json_h},
        {"content": b"[1, 2", "headers": json_h},
        {"json": {"prompt": "a b", "rate": 2}, "headers": key},
        {"json": {"prompt": "a b", "rate": "x"}, "headers": key},
        {"json": {"prompt": "a b", "target_tokens": -1}, "headers": key},
        {"json": {"prompt": "a b", "unit": "chapter"}, "headers": key},
        {"json": {"prompt": "a b", "extra": 1}, "headers": key},
        {"json": {"context": "a", "prompt": "b"}, "headers": key},
        {"json": [{"prompt": "a"}] * 65, "headers": key},
        {"json": {"prompt": "x" * 200_001}, "headers": key},
        {"content": b"x" * 1_100_000, "headers": json_h},  # > serve.max_request_bytes
        {"json": {"prompt": "a b"}, "headers": {}},
        {"json": {"prompt": "a b"}, "headers": {"authorization": "Bearer wrong"}},
    ]
    counts: dict[int, int] = {}
    with httpx.Client(base_url=url, timeout=60) as http:
        for i in range(n):
            case = cases[i % len(cases)]
            path = "/compress_llmlingua" if i % 7 == 3 else "/compress"
            if i % 11 == 5:
                path = "/v1/chat/completions"
            r = http.post(path, **case)
            counts[r.status_code] = counts.get(r.status_code, 0) + 1
    return counts


def proxy_latency(url: str, upstream: str, context: str, n: int) -> dict[str, list[float]]:
    """Seconds per chat request: straight to the upstream, through the proxy with
    compression off (``taco: false``), and on (the service's default policy)."""
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": f"{context}\n\nWhat does it do?"}],
    }
    kinds = {
        "direct": (f"{upstream}/chat/completions", body, {}),
        "proxy_off": (f"{url}/v1/chat/completions", {**body, "taco": False}, {"x-api-key": KEY}),
        "proxy_on": (f"{url}/v1/chat/completions", body, {"x-api-key": KEY}),
    }
    out: dict[str, list[float]] = {name: [] for name in kinds}
    with httpx.Client(timeout=60) as http:
        for _ in range(n):  # interleaved, so drift hits all three alike
            for name, (target, payload, headers) in kinds.items():
                t0 = time.perf_counter()
                r = http.post(target, json=payload, headers=headers)
                out[name].append(time.perf_counter() - t0)
                if r.status_code != 200:
                    sys.exit(f"{name}: {r.status_code} {r.text}")
    return out


def package(root: Path, model: Path | None, upstream: str, env: dict[str, str]) -> str:
    """A project in ``root`` with the model, gate/metrics reports and params; `taco
    package`; returns the bento tag."""
    folder = root / "data" / "models" / "taco"
    comp = Compressor.from_pretrained(model, device="cpu")
    comp.save_pretrained(folder)
    (folder / "taco_run.json").write_text(json.dumps({"bench": True}), encoding="utf-8")
    fx.write_reports(root)
    fx.write_dvc_lock(root)
    serve = {"api_key_env": "TACO_BENCH_KEY", "upstream": {"base_url": upstream}}
    write_params(root, {"base": {"task": fx.TASK, "data_dir": "data"}, "serve": serve})
    proc = subprocess.run(
        [sys.executable, "-m", "taco", "package"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"taco package failed:\n{proc.stderr}")
    return json.loads((root / "data" / "reports" / "package.json").read_text())["bento_tag"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="compressor folder (default: MiniLM)")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each load run")
    ap.add_argument("--concurrency", default="1,8,16", help="client counts, comma-separated")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repeats (median)")
    ap.add_argument("--prompts", type=int, default=64, help="distinct prompts cycled")
    ap.add_argument("--bad", type=int, default=210, help="bad requests sent")
    ap.add_argument("--proxy-calls", type=int, default=100, help="chat requests per kind")
    args = ap.parse_args()
    if not DATA.is_file():
        sys.exit(f"prompts not found: {DATA}")
    with DATA.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for _, line in zip(range(args.prompts), fh, strict=False)]
    prompts = [r["context"] for r in rows]
    levels = [int(c) for c in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory(prefix="taco-serve-load-") as tmp, FakeOpenAIServer() as up:
        root = Path(tmp)
        env = {
            **os.environ,
            "BENTOML_HOME": str(root / "bentoml"),
            "PYTHONPATH": str(ROOT),
            "TACO_BENCH_KEY": KEY,
            "BENTOML_DO_NOT_TRACK": "true",
        }
        bento = package(root, args.model, up.base_url, env)
        comp = Compressor.from_pretrained(root / "data" / "models" / "taco", device="cpu")
        with BentoServer(bento, env=env, cwd=root, log_path=root / "serve.log") as srv:
            load(srv.url, prompts, 4, 3.0)  # warm-up (first batches, allocator)
            in_process(comp, prompts, 3.0, 1)
            runs: dict[str, list[Any]] = {"inproc_1": [], "inproc_8": []}
            runs.update({f"c{c}": [] for c in levels})
            for _ in range(args.repeats):
                runs["inproc_1"].append(in_process(comp, prompts, args.seconds, 1))
                runs["inproc_8"].append(in_process(comp, prompts, args.seconds, 8))
                for c in levels:
                    pid = srv.proc.pid if srv.proc else None
                    runs[f"c{c}"].append(load(srv.url, prompts, c, args.seconds, pid))
            bad = bad_requests(srv.url, args.bad)
            ready = httpx.get(f"{srv.url}/readyz", timeout=30).status_code
            after = httpx.post(
                f"{srv.url}/compress", json={"prompt": prompts[0]}, headers={"x-api-key": KEY}
            ).status_code
            proxy = proxy_latency(srv.url, up.base_url, prompts[1], args.proxy_calls)

    one = statistics.median(r[0] for r in runs["inproc_1"])
    eight = statistics.median(r[0] for r in runs["inproc_8"])
    cpu_one = statistics.median(r[1] for r in runs["inproc_1"])
    cpu_eight = statistics.median(r[1] for r in runs["inproc_8"])
    print(f"# serve_load: {len(prompts)} code prompts, {args.seconds:g} s per run, "
          f"median of {args.repeats} interleaved repeats; clients on the same machine")  # fmt: skip
    print(f"in-process Compressor: one by one {one:.2f} prompts/s ({cpu_one:.0f} CPU ms each), "
          f"batches of 8 {eight:.2f} prompts/s ({cpu_eight:.0f} CPU ms each)")  # fmt: skip
    print("\n| clients | req/s | vs in-process 1-by-1 | vs batched 8 | p50 ms | p95 ms | p99 ms "
          "| p99/p50 | errors | mean batch | server CPU ms/req |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    summary: dict[str, Any] = {
        "inproc_1": one,
        "inproc_8": eight,
        "inproc_1_cpu_ms": cpu_one,
        "inproc_8_cpu_ms": cpu_eight,
    }
    for c in levels:
        rs = runs[f"c{c}"]
        med = {
            k: statistics.median(r[k] for r in rs)
            for k in ("rps", "p50", "p95", "p99", "batch", "cpu_ms")
        }
        errors = sum(r["errors"] for r in rs)
        codes = sorted({code for r in rs for code in r["error_codes"]})
        summary[f"c{c}"] = {**med, "errors": errors, "error_codes": codes}
        print(f"| {c} | {med['rps']:.1f} | {med['rps'] / one:.0%} | {med['rps'] / eight:.0%} "
              f"| {med['p50'] * 1e3:.0f} | {med['p95'] * 1e3:.0f} | {med['p99'] * 1e3:.0f} "
              f"| {med['p99'] / med['p50']:.2f} | {errors} | {med['batch']:.1f} "
              f"| {med['cpu_ms']:.0f} |")  # fmt: skip
    fives = sum(v for k, v in bad.items() if k >= 500)
    fours = sum(v for k, v in bad.items() if 400 <= k < 500)
    print(f"\nbad input: {sum(bad.values())} requests -> {dict(sorted(bad.items()))}; "
          f"4xx {fours}, 5xx {fives}; after: /readyz {ready}, valid /compress {after}")  # fmt: skip
    print("\n| chat request | median ms | p99 ms | added median ms | added p99 ms |")
    print("|---|---|---|---|---|")
    base50, base99 = percentile(proxy["direct"], 50), percentile(proxy["direct"], 99)
    for name, values in proxy.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        print(f"| {name} | {p50 * 1e3:.1f} | {p99 * 1e3:.1f} | {(p50 - base50) * 1e3:+.1f} "
              f"| {(p99 - base99) * 1e3:+.1f} |")  # fmt: skip
    summary.update({"bad": bad, "ready_after": ready, "valid_after": after})
    print("\n" + json.dumps(summary, default=float))


if __name__ == "__main__":
    main()
