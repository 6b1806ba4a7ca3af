#!/usr/bin/env bash
# Checks the crate as crates.io would ship it:
#
#  1. `cargo package --list` holds both license files;
#  2. the packaged crate, unpacked outside this repository, builds as a path dependency of a
#     throwaway crate with the features docs.rs documents (ffi, parallel), and the build
#     writes nothing into the unpacked crate, not even when its header differs from what
#     cbindgen generates (a registry copy is not ours to change: the header is regenerated
#     only in this repository).
#
# Builds into the workspace's target directory so that the dependencies are reused.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

fail() {
  echo "check_package.sh: FAIL: $*" >&2
  exit 1
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"

echo "== package contents"
list="$(cargo package --list -p expquant --allow-dirty)"
for file in LICENSE-MIT LICENSE-APACHE Cargo.toml README.md include/expquant.h; do
  grep -qx "$file" <<<"$list" || fail "cargo package --list does not include $file"
done

echo "== build the packaged crate as a dependency"
cargo package -p expquant --no-verify --allow-dirty
mkdir -p "$work/registry"
tar -xzf "$target_dir/package/expquant-$version.crate" -C "$work/registry"
crate="$work/registry/expquant-$version"
# A header that differs from what cbindgen would generate: a build script that regenerates it
# outside this repository would rewrite it.
printf '/* the copy in the package, changed by check_package.sh */\n' >>"$crate/include/expquant.h"
# Names, sizes, modification times and contents: a rewrite with the same bytes counts too.
snapshot() {
  (cd "$crate" && find . -printf '%p %s %T@\n' | sort && find . -type f -print0 | sort -z | xargs -0 sha256sum)
}
snapshot >"$work/before"

mkdir -p "$work/user/src"
cat >"$work/user/Cargo.toml" <<TOML
[package]
name = "expquant-package-user"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
expquant = { path = "$crate", features = ["ffi", "parallel"] }

[workspace]
TOML
echo 'pub use expquant;' >"$work/user/src/lib.rs"
# The repository's lock file, so that the dependencies resolve to the versions already built.
cp Cargo.lock "$work/user/Cargo.lock"
# Built from the user's directory, as a user's build runs: cargo then reads no configuration
# of this repository (its .cargo/config.toml turns header regeneration on here).
(cd "$work/user" && CARGO_TARGET_DIR="$target_dir" cargo build)

snapshot >"$work/after"
if ! diff "$work/before" "$work/after" >&2; then
  fail "building the packaged crate changed files inside it (above)"
fi
echo "check_package.sh: all checks passed"
