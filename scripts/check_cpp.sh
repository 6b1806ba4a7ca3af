#!/usr/bin/env bash
# Proves that the C++ runtime in examples/cpp/ runs the stored model the way the Rust host
# does:
#
#  1. scripts/install.sh installs the C library into a temporary prefix;
#  2. examples/cpp is configured with find_package(expquant) from that prefix and built with
#     AddressSanitizer and UndefinedBehaviorSanitizer (leak checking on);
#  3. it runs on all 360 test images of data/digits_test.bin straight from the mapped
#     data/digits_cnn_exp4.exq, clean under the sanitizers;
#  4. its predictions equal, image by image, those of the Rust host path
#     (`cargo run --release --example export_model -- predict`), and so does its top-1.
#
# Needs cargo, a C++17 compiler with ASan/UBSan, cmake (.ci/run installs it when missing).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

fail() {
  echo "check_cpp.sh: FAIL: $*" >&2
  exit 1
}
for tool in cargo cmake c++; do
  command -v "$tool" >/dev/null || fail "$tool not found"
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# 1–2. Install, configure against the install, build sanitized.
scripts/install.sh --prefix "$work/prefix" >/dev/null
cmake -S examples/cpp -B "$work/build" -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DEXPQ_SANITIZE=ON >/dev/null
cmake --build "$work/build" >/dev/null

# 3. The run; any sanitizer report fails it.
out="$(ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1 \
  "$work/build/digits_cnn" data/digits_cnn_exp4.exq data/digits_test.bin)" ||
  fail "digits_cnn failed (exit $?): $out"
cpp_pred="$(sed -n 's/^predictions: *//p' <<<"$out")"
cpp_top1="$(sed -n 's/^top-1: *//p' <<<"$out")"
[ -n "$cpp_pred" ] && [ -n "$cpp_top1" ] || fail "digits_cnn printed no predictions: $out"
count="$(wc -w <<<"$cpp_pred")"
[ "$count" -eq 360 ] || fail "digits_cnn ran $count images, not 360"

# 4. The Rust host path on the same container and images.
host="$(cargo run --quiet --release --example export_model -- predict "$root/data")"
host_pred="$(sed -n 's/^predictions: *//p' <<<"$host")"
host_top1="$(sed -n 's/^top-1: *//p' <<<"$host")"
[ "$cpp_pred" = "$host_pred" ] || fail "predictions differ
C++:  $cpp_pred
host: $host_pred"
[ "$cpp_top1" = "$host_top1" ] || fail "top-1 differs: C++ $cpp_top1, host $host_top1"

echo "check_cpp.sh: OK: $count images, top-1 $cpp_top1 in C++ and on the host, clean under ASan and UBSan"
