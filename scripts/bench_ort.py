#!/usr/bin/env python3
"""ONNX Runtime's MatMulNBits against libexpquant's GEMV on the same matrix, one thread.

Both run in this one process, interleaved call by call, on the same W (rows x cols, bell
shaped) and x; the table gives medians. ONNX Runtime: 4-bit blocks of 32 and 128 (a float
scale per block, the default zero point 8), accuracy level 0 (float compute) and 4 (int8
activations). libexpquant: exponential 4-bit, max-abs fit, per row and in groups of 128 and
32 (`f32` and compact group parameters), float and int8 activations, through the C ABI (`expq_tensor_gemv_rows` and
`expq_tensor_gemv_int8_rows`, which never spawn threads).

Needs numpy, onnx and onnxruntime; use a throwaway virtual environment:

    python3 -m venv /tmp/ort-venv
    /tmp/ort-venv/bin/pip install numpy onnx onnxruntime
    cargo build --release -p expquant-capi
    /tmp/ort-venv/bin/python scripts/bench_ort.py --lib target/release/libexpquant.so
"""

import argparse
import ctypes as C
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper


class Config(C.Structure):
    _fields_ = [
        ("scheme", C.c_int),
        ("bits", C.c_uint8),
        ("scale_rule", C.c_int),
        ("granularity", C.c_int),
        ("group_size", C.c_size_t),
        ("zero_level", C.c_bool),
        ("fixed_a", C.c_double),
        ("fixed_q", C.c_double),
        ("compact_params", C.c_bool),
    ]


SCHEME_EXPONENTIAL = 1
RULE_MAX_ABS = 0
PER_ROW, PER_GROUP = 1, 2


def load_lib(path):
    lib = C.CDLL(path)
    lib.expq_config_default.restype = Config
    lib.expq_config_default.argtypes = [C.c_int, C.c_uint8]
    lib.expq_quantize.argtypes = [
        C.POINTER(C.c_float), C.c_size_t, C.c_size_t, C.POINTER(Config), C.POINTER(C.c_void_p)
    ]
    for name in ("expq_tensor_gemv_rows", "expq_tensor_gemv_int8_rows"):
        getattr(lib, name).argtypes = [
            C.c_void_p, C.POINTER(C.c_float), C.c_size_t, C.c_size_t, C.c_size_t,
            C.POINTER(C.c_float), C.c_size_t,
        ]
    lib.expq_tensor_bits_per_weight.restype = C.c_double
    lib.expq_tensor_bits_per_weight.argtypes = [C.c_void_p]
    lib.expq_tensor_free.argtypes = [C.c_void_p]
    lib.expq_simd_path.restype = C.c_char_p
    return lib


def fptr(a):
    return a.ctypes.data_as(C.POINTER(C.c_float))


def expquant_case(lib, w, rows, cols, group, int8, compact=False):
    config = lib.expq_config_default(SCHEME_EXPONENTIAL, 4)
    config.scale_rule = RULE_MAX_ABS
    config.compact_params = compact
    if group:
        config.granularity, config.group_size = PER_GROUP, group
    else:
        config.granularity = PER_ROW
    t = C.c_void_p()
    status = lib.expq_quantize(fptr(w), rows, cols, C.byref(config), C.byref(t))
    assert status == 0, f"expq_quantize failed: {status}"
    fn = lib.expq_tensor_gemv_int8_rows if int8 else lib.expq_tensor_gemv_rows

    def run(x, y):
        assert fn(t, fptr(x), cols, 0, rows, fptr(y), rows) == 0

    return run, lib.expq_tensor_bits_per_weight(t), t


def ort_case(w, rows, cols, block, accuracy):
    """MatMulNBits with B = W (N = rows, K = cols), symmetric 4-bit blocks."""
    blocks = cols // block
    wb = w.reshape(rows, blocks, block)
    scale = np.abs(wb).max(axis=2) / 8.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(wb / scale[..., None]) + 8, 0, 15).astype(np.uint8)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)  # low nibble first
    node = helper.make_node(
        "MatMulNBits", ["A", "B", "scales"], ["Y"], domain="com.microsoft",
        K=cols, N=rows, bits=4, block_size=block, accuracy_level=accuracy,
    )
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [1, cols])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, rows])],
        [
            helper.make_tensor("B", TensorProto.UINT8, packed.shape, packed.tobytes(), raw=True),
            helper.make_tensor("scales", TensorProto.FLOAT, [rows * blocks],
                               scale.astype(np.float32).ravel().tobytes(), raw=True),
        ],
    )
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])

    def run(x, y):
        y[:] = sess.run(None, {"A": x.reshape(1, cols)})[0].ravel()

    bits = 4 + 32 / block
    return run, bits, sess


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", required=True, help="path to libexpquant.so")
    ap.add_argument("--rows", type=int, default=16384)
    ap.add_argument("--cols", type=int, default=8192)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    rows, cols = args.rows, args.cols
    rng = np.random.default_rng(5)
    w = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
    x = rng.standard_normal(cols).astype(np.float32)
    lib = load_lib(args.lib)

    cases = {}
    keep = []
    layouts = (
        ("per row", 0, False),
        ("groups of 128", 128, False),
        ("groups of 32", 32, False),
        ("compact groups of 128", 128, True),
        ("compact groups of 32", 32, True),
    )
    for name, group, compact in layouts:
        for int8 in (False, True):
            run, bits, t = expquant_case(lib, w, rows, cols, group, int8, compact)
            keep.append(t)
            cases[f"expquant exp 4-bit {name}, {'int8' if int8 else 'f32'} x"] = (run, bits)
    for block in (128, 32):
        for acc in (0, 4):
            run, bits, sess = ort_case(w, rows, cols, block, acc)
            keep.append(sess)
            cases[f"ORT MatMulNBits block {block}, accuracy {acc}"] = (run, bits)

    y = np.zeros(rows, dtype=np.float32)
    times = {k: [] for k in cases}
    ref = w.astype(np.float64) @ x.astype(np.float64)
    errors = {}
    for _ in range(2):  # warm-up, and a check that every kernel computes W·x
        for k, (run, _) in cases.items():
            run(x, y)
            errors[k] = np.linalg.norm(y - ref) / np.linalg.norm(ref)
    for _ in range(args.reps):
        for k, (run, _) in cases.items():
            t0 = time.perf_counter()
            run(x, y)
            times[k].append(time.perf_counter() - t0)

    base = statistics.median(times[next(iter(cases))])
    print(f"W {rows}x{cols}, one thread, {args.reps} interleaved calls each, medians; "
          f"onnxruntime {ort.__version__}; expquant kernels on "
          f"{lib.expq_simd_path().decode()}\n")
    print("| kernel | bits/w | median ms | GB/s of weights | vs expquant per-row f32 "
          "| rel. error of y |")
    print("|---|---|---|---|---|---|")
    for k, (_, bits) in cases.items():
        m = statistics.median(times[k])
        gbs = rows * cols * bits / 8 / m / 1e9
        print(f"| {k} | {bits:.2f} | {m * 1e3:.2f} | {gbs:.1f} | {base / m:.2f}x "
              f"| {errors[k]:.4f} |")
    for t in keep:
        if isinstance(t, C.c_void_p):
            lib.expq_tensor_free(t)


if __name__ == "__main__":
    main()
