#!/usr/bin/env bash
# Runs the ONNX models that `expquant quantize --emit-onnx` writes in ONNX Runtime and checks
# them against tract on the same inputs:
#
#  1. the repository's trained digits CNN, quantized to 4 bits with 64 calibration images
#     (error compensation and bias correction, the calibrated default): on the 360 test
#     images ONNX Runtime's logits match tract's within 1e-3 relative, the top-1 classes are
#     the same, and the accuracy is within 3 points of the FP32 model's;
#  2. the MobileNetV2-like 224×224 graph of the `onnx_models` example (random weights, about
#     5 M weights; pads, strides, depthwise convolutions, unfolded BatchNorm, Clip as ReLU6,
#     Add, GlobalAveragePool, Reshape, Gemm), quantized to 4 bits with 64 calibration inputs:
#     on 8 other inputs ONNX Runtime matches tract within 1e-3 relative with the same top-1;
#     the FP32 model matches too, so both runtimes read the graph alike.
#
# Needs cargo and python3 with venv. onnxruntime and numpy go into a throwaway virtual
# environment under /tmp; when pip cannot reach the package index the script says so and
# exits 0 (a skip, not a pass). Runs the binaries `cargo test --workspace --all-features`
# builds (the optimized `test` profile), building them first if needed.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

work="$(mktemp -d /tmp/expquant-ort.XXXXXX)"
trap 'rm -rf "$work"' EXIT

if ! python3 -m venv "$work/venv" >/dev/null 2>&1; then
  echo "check_onnx_ort.sh: SKIP: python3 cannot create a virtual environment (python3-venv missing)"
  exit 0
fi
if ! "$work/venv/bin/pip" install --quiet --disable-pip-version-check --timeout 30 \
  onnxruntime numpy >"$work/pip.log" 2>&1; then
  echo "check_onnx_ort.sh: SKIP: pip could not install onnxruntime and numpy (no package index?):"
  tail -n 3 "$work/pip.log"
  exit 0
fi
py="$work/venv/bin/python"

# The build of the README's test command, whose binaries (the CLI and its examples) this
# runs: `cargo build -p expquant-cli` alone resolves the dependencies' features differently
# (no dev-dependencies, no other workspace members) and rebuilt tract and most of the graph
# in a clean checkout, about 15 minutes.
cargo test --quiet --workspace --all-features --no-run
target="${CARGO_TARGET_DIR:-$root/target}/debug"
expquant="$target/expquant"
models="$target/examples/onnx_models"

echo "== digits CNN, 4 bits, 64 calibration images"
d="$work/digits"
"$models" digits "$d"
"$expquant" quantize "$d/digits.onnx" -o "$d/q.expq" --bits 4 --calibration "$d/calib.npy" \
  --emit-onnx "$d/q.onnx" -q
"$models" run "$d/digits.onnx" "$d/test.npy" "$d/fp32.tract.npy"
"$models" run "$d/q.onnx" "$d/test.npy" "$d/q.tract.npy"

echo "== MobileNetV2-like 224x224, 4 bits, 64 calibration inputs"
m="$work/mobilenet"
"$models" mobilenet "$m" 224 1.25 64
start=$(date +%s%N)
"$expquant" quantize "$m/mobilenet.onnx" -o "$m/q.expq" --bits 4 --calibration "$m/calib" \
  --emit-onnx "$m/q.onnx" -q
echo "quantized in $((($(date +%s%N) - start) / 1000000)) ms"
"$models" run "$m/mobilenet.onnx" "$m/inputs.npy" "$m/fp32.tract.npy"
"$models" run "$m/q.onnx" "$m/inputs.npy" "$m/q.tract.npy"

"$py" - "$d" "$m" <<'PY'
import sys

import numpy as np
import onnxruntime as ort

digits, mobilenet = sys.argv[1], sys.argv[2]
failures = []


def ort_run(model, x):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def compare(name, model, inputs, tract_out):
    x = np.load(inputs)
    got = ort_run(model, x)
    want = np.load(tract_out)
    scale = max(1.0, float(np.abs(want).max()))
    worst = float(np.abs(got - want).max()) / scale
    same_top1 = bool((got.argmax(1) == want.argmax(1)).all())
    print(f"{name}: ONNX Runtime vs tract, max difference {worst:.2e} of the largest logit, "
          f"top-1 {'identical' if same_top1 else 'DIFFERENT'}")
    if worst > 1e-3 or not same_top1:
        failures.append(name)
    return got


labels = np.load(f"{digits}/labels.npy").astype(int)
fp32 = compare("digits FP32", f"{digits}/digits.onnx", f"{digits}/test.npy", f"{digits}/fp32.tract.npy")
q = compare("digits 4-bit", f"{digits}/q.onnx", f"{digits}/test.npy", f"{digits}/q.tract.npy")
acc_fp32 = float((fp32.argmax(1) == labels).mean())
acc_q = float((q.argmax(1) == labels).mean())
print(f"digits accuracy in ONNX Runtime: FP32 {acc_fp32:.4f}, 4-bit {acc_q:.4f}")
if acc_q < acc_fp32 - 0.03:
    failures.append("digits 4-bit accuracy")
compare("MobileNet-like FP32", f"{mobilenet}/mobilenet.onnx", f"{mobilenet}/inputs.npy",
        f"{mobilenet}/fp32.tract.npy")
compare("MobileNet-like 4-bit", f"{mobilenet}/q.onnx", f"{mobilenet}/inputs.npy",
        f"{mobilenet}/q.tract.npy")
if failures:
    sys.exit("check_onnx_ort.sh: FAIL: " + ", ".join(failures))
print("check_onnx_ort.sh: ok")
PY
