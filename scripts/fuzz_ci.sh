#!/usr/bin/env bash
# Runs every fuzz target briefly on its committed seed corpus (fuzz/corpus/<target>/):
#
#  1. the seed corpus is what fuzz/src/bin/make_corpus.rs writes (a stale corpus after a
#     format change fails here; regenerate and commit it);
#  2. each target runs for FUZZ_SECONDS (default 15) from its seeds; a crash, a panic or a
#     failed invariant fails the script, and libFuzzer leaves the input in fuzz/artifacts/.
#
# New inputs go to a scratch directory, so the committed corpus stays as it is. Needs the
# nightly toolchain (.ci/run installs it for Miri) and cargo-fuzz, installed here if missing.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
seconds="${FUZZ_SECONDS:-15}"

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# The committed corpus holds the generator's output (and may hold more: a local
# `cargo fuzz run` adds what it finds to the same directories).
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cargo run --quiet --manifest-path fuzz/Cargo.toml --bin make_corpus -- "$scratch/corpus"
stale="$(diff -r -q "$scratch/corpus" fuzz/corpus | grep -v '^Only in fuzz/corpus' || true)"
if [ -n "$stale" ]; then
  echo "$stale" >&2
  echo "fuzz_ci.sh: fuzz/corpus is not what make_corpus writes; run" >&2
  echo "  cargo run --manifest-path fuzz/Cargo.toml --bin make_corpus" >&2
  echo "and commit the result." >&2
  exit 1
fi

for target in view container ffi quantize; do
  mkdir -p "$scratch/new/$target"
  log="$scratch/$target.log"
  if ! cargo +nightly fuzz run "$target" "$scratch/new/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 >"$log" 2>&1; then
    tail -n 80 "$log" >&2
    echo "fuzz_ci.sh: target $target failed; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  # Coverage from the seeds alone, and at the end of the run.
  echo "$target: $(grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$log" | tr '\n' ' ')"
done
