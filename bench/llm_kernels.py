"""Why the embedded LLM has no 2x CPU path without native bf16: every linear-layer kernel this
stack offers, timed on SmolLM2-135M's own shapes, at a decode step and at a prefill.

The embedded LLM's time is its linear layers (``aten::mm`` is 65-76% of a batch-8 pass,
docs/results.md). This times one layer of each shape (q/o 576x576, k/v 576x192, gate/up
576x1536, down 1536x576, the tied LM head 576x49152), summed as one decoder layer x 30 + the
head, for M rows:

- ``--decode-rows`` (default 8): one decode step at batch 8 (memory- and overhead-bound);
- ``--prefill-rows`` (default 1600): 8 prompts of 200 tokens at once (compute-bound; the
  ``loglik`` reward and the start of every generation are only this).

Paths: torch float32 (MKL), torch's dynamic int8 (``quantize_dynamic``: int8 weights and
activations, fbgemm), torch's weight-only int8 and int4 kernels (``_weight_int8pack_mm``,
``_weight_int4pack_mm_for_cpu``: the kernels of torchao's weight-only schemes; group 32 = the
GGUF's Q4_1 blocks), ONNX Runtime float32 MatMul, and ONNX Runtime ``MatMulNBits`` 4-bit
(block 32) with float32 compute (accuracy level 0) and int8 compute (level 4, blockwise int8
activations as llama.cpp's Q8 dot products). Weights are random: only time is measured here
(agreement of outputs: bench/reward_throughput.py).

    .venv/bin/python bench/llm_kernels.py               # this CPU
    .venv/bin/python bench/llm_kernels.py --slow-kind   # as a CPU without AVX-512/VNNI/bf16
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from cpu_kind import describe, parse_args

HIDDEN, INTERMEDIATE, KV, VOCAB, LAYERS, BLOCK = 576, 1536, 192, 49152, 30, 32
# (in, out, how many per decoder layer); the LM head runs once per pass, on the rows kept
LAYER_SHAPES = [
    (HIDDEN, HIDDEN, 2),
    (HIDDEN, KV, 2),
    (HIDDEN, INTERMEDIATE, 2),
    (INTERMEDIATE, HIDDEN, 1),
]
HEAD = (HIDDEN, VOCAB)


def seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls, after two warm-ups."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def nbits_session(k: int, n: int, accuracy_level: int) -> Callable[[np.ndarray], object]:
    """An ONNX Runtime session of one ``MatMulNBits`` (4 bits, block 32, uint4 zero points)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    blocks = k // BLOCK
    q = rng.integers(0, 16, size=(n, blocks, BLOCK), dtype=np.uint8)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)  # low nibble first
    scales = (rng.random(n * blocks, dtype=np.float32) * 0.01).astype(np.float32)
    zeros = np.full((n * ((blocks + 1) // 2),), 0x88, dtype=np.uint8)  # zero point 8
    node = helper.make_node(
        "MatMulNBits",
        ["X", "B", "scales", "zp"],
        ["Y"],
        domain="com.microsoft",
        K=k,
        N=n,
        bits=4,
        block_size=BLOCK,
        accuracy_level=accuracy_level,
    )
    graph = helper.make_graph(
        [node],
        "nbits",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])],
        [
            numpy_helper.from_array(packed, "B"),
            numpy_helper.from_array(scales, "scales"),
            numpy_helper.from_array(zeros, "zp"),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    return _session(model)


def matmul_session(w: np.ndarray) -> Callable[[np.ndarray], object]:
    """An ONNX Runtime session of one float32 MatMul by ``w`` (shape (in, out))."""
    from onnx import TensorProto, helper, numpy_helper

    k, n = w.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "fp32",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])],
        [numpy_helper.from_array(w, "W")],
    )
    return _session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def _session(model: object) -> Callable[[np.ndarray], object]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # or torch waits
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"X": x})


def kernels(k: int, n: int) -> dict[str, Callable[[torch.Tensor], object]]:
    """Every path's call for one (in=k, out=n) linear layer, on a float32 input of (M, k)."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(k, n, bias=False).eval()
    w = linear.weight.detach()
    dyn = torch.ao.quantization.quantize_dynamic(
        torch.nn.Sequential(linear), {torch.nn.Linear}, dtype=torch.qint8
    )
    w8 = torch.randint(-128, 128, (n, k), dtype=torch.int8)
    s8 = torch.rand(n) * 0.01
    q4 = torch.randint(0, 16, (n, k), dtype=torch.int32)
    w4 = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q4, 1)
    sz4 = torch.rand(k // BLOCK, n, 2) * 0.01
    ort32 = matmul_session(w.T.contiguous().numpy())
    lvl0, lvl4 = nbits_session(k, n, 0), nbits_session(k, n, 4)
    return {
        "torch fp32": lambda x: torch.nn.functional.linear(x, w),
        "torch int8 dynamic": lambda x: dyn(x),
        "torch int8 weight-only": lambda x: torch.ops.aten._weight_int8pack_mm(x, w8, s8),
        "torch int4 weight-only g32": lambda x: torch.ops.aten._weight_int4pack_mm_for_cpu(
            x, w4, BLOCK, sz4
        ),
        "ORT fp32": lambda x: ort32(x.numpy()),
        "ORT 4-bit fp32 compute": lambda x: lvl0(x.numpy()),
        "ORT 4-bit int8 compute": lambda x: lvl4(x.numpy()),
    }


def pass_seconds(rows: int, repeats: int, head_rows: int) -> dict[str, float]:
    """Seconds of the linear layers of one pass over ``rows`` rows, per path: 30 decoder
    layers' worth of every shape, plus the LM head on ``head_rows`` rows."""
    total: dict[str, float] = {}
    for k, n, per_layer in [*LAYER_SHAPES, (*HEAD, 0)]:
        m = rows if per_layer else head_rows
        x = torch.randn(m, k)
        for path, fn in kernels(k, n).items():
            s = seconds(lambda fn=fn, x=x: fn(x), repeats)
            total[path] = total.get(path, 0.0) + s * (per_layer * LAYERS or 1)
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decode-rows", type=int, default=8, help="rows of a decode step")
    ap.add_argument("--prefill-rows", type=int, default=1600, help="rows of a prefill")
    ap.add_argument("--repeats", type=int, default=5, help="median of N timings per kernel")
    args = parse_args(ap)
    warnings.filterwarnings("ignore", message=r"torch\.(ao\.quantization|quantize_per_tensor)")
    print("\n".join(describe()))
    print(
        f"# SmolLM2-135M linear layers: {LAYERS} decoder layers + LM head {HEAD[0]}x{HEAD[1]}; "
        "decode: head on every row; prefill: head on 8 rows x 32 continuation tokens"
    )
    decode = pass_seconds(args.decode_rows, args.repeats * 4, args.decode_rows)
    prefill = pass_seconds(args.prefill_rows, args.repeats, 8 * 32)
    print()
    print(
        f"| path | decode step, {args.decode_rows} rows: ms | × fp32 "
        f"| prefill, {args.prefill_rows} rows: ms | × fp32 |"
    )
    print("|---|---:|---:|---:|---:|")
    d32, p32 = decode["torch fp32"], prefill["torch fp32"]
    for path in decode:
        print(
            f"| {path} | {1e3 * decode[path]:.1f} | {d32 / decode[path]:.2f}× "
            f"| {1e3 * prefill[path]:.0f} | {p32 / prefill[path]:.2f}× |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
