#!/usr/bin/env bash
# Proves that the installed C library works from where it is installed, and from wherever the
# install tree is moved, through both build-tool entry points:
#
#  1. scripts/install.sh stages an install (--prefix /opt/expquant --destdir TMP); the staged
#     tree is used where it lands, so nothing may depend on the prefix it was given;
#  2. the shared library has the SONAME libexpquant.so.0 and exports exactly the functions
#     that include/expquant.h declares; neither library carries debug info;
#  3. tests/install/consumer.c is built with find_package(expquant CONFIG REQUIRED)
#     (expquant::expquant and expquant::static, installed into the prefix's bin/ with the
#     rpath $ORIGIN/../lib) and with pkg-config (shared; static from --static's link line);
#     the CMake package refuses a version request it does not satisfy;
#  4. the prefix is moved and the CMake build tree deleted, then every consumer runs (the
#     pkg-config shared one through LD_LIBRARY_PATH, which it cannot start without);
#  5. the shared consumers need libexpquant.so.0 and nothing else of expquant, the static
#     ones no libexpquant at all, and no installed file or consumer binary contains the path
#     of the repository, the cargo target directory or the staging directory.
#
# Needs cargo, cc, cmake, pkg-config, readelf, nm and ldd (.ci/run installs cmake and
# pkg-config when missing). Linux/ELF only.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

fail() {
  echo "check_install.sh: FAIL: $*" >&2
  exit 1
}
for tool in cargo cc cmake pkg-config readelf nm ldd; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
[ -n "$target_dir" ] || fail "cargo metadata did not name the target directory"

echo "== install (staged under a temporary directory)"
scripts/install.sh --prefix /opt/expquant --destdir "$work/stage"
prefix="$work/stage/opt/expquant"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
version="$(pkg-config --modversion expquant)"
[ "$version" = "$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)" ] ||
  fail "expquant.pc says version $version"

echo "== the shared library: SONAME and exported symbols"
lib="$prefix/lib/libexpquant.so.$version"
soname="$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')"
[ "$soname" = "libexpquant.so.0" ] || fail "SONAME of $lib is '$soname', not libexpquant.so.0"
[ "$(readlink "$prefix/lib/libexpquant.so.0")" = "libexpquant.so.$version" ] ||
  fail "libexpquant.so.0 does not link to libexpquant.so.$version"
[ "$(readlink "$prefix/lib/libexpquant.so")" = "libexpquant.so.0" ] ||
  fail "libexpquant.so does not link to libexpquant.so.0"
# A declaration starts in column 0 and names its function before the first parenthesis.
declared="$(sed -nE 's/^[A-Za-z][^(]*[ *](expq_[A-Za-z0-9_]+)\(.*/\1/p' include/expquant.h | sort -u)"
[ "$(echo "$declared" | wc -l)" -ge 17 ] || fail "parsed only these functions from the header: $declared"
exported="$(nm -D --defined-only "$lib" | awk '{print $NF}' | sort -u)"
if [ "$declared" != "$exported" ]; then
  diff <(echo "$declared") <(echo "$exported") >&2 || true
  fail "the dynamic symbols of $lib (right) differ from the header's functions (left)"
fi
echo "SONAME $soname; exports the header's $(echo "$declared" | wc -l) functions and nothing else"
for file in "$lib" "$prefix/lib/libexpquant.a"; do
  ! readelf -S -W "$file" | grep "\.debug_" >/dev/null || fail "$file has debug info (release install)"
done

echo "== consumers"
mkdir -p "$work/app"
cmake -S tests/install/cmake -B "$work/build-cmake" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_INSTALL_PREFIX="$prefix"
cmake --build "$work/build-cmake"
cmake --install "$work/build-cmake"
for request in 0.2 1.0; do
  if cmake -S tests/install/cmake -B "$work/build-refused" -DCMAKE_PREFIX_PATH="$prefix" \
       -DEXPQUANT_REQUEST="$request" >"$work/refused.log" 2>&1; then
    fail "find_package(expquant $request) accepted version $version"
  fi
  grep -q "compatible with requested version" "$work/refused.log" ||
    fail "find_package(expquant $request) failed for another reason: $(cat "$work/refused.log")"
  rm -rf "$work/build-refused"
done
cflags=(-std=c99 -Wall -Wextra -Werror -pedantic -O1)
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
cc "${cflags[@]}" tests/install/consumer.c $(pkg-config --cflags --libs expquant) -lm \
  -o "$work/app/consumer_pc_shared"
# The static link line is pkg-config's --static one with the archive named explicitly: the
# shared and the static library share a directory, and -lexpquant would pick the shared one.
# shellcheck disable=SC2046
cc "${cflags[@]}" tests/install/consumer.c $(pkg-config --cflags expquant) \
  $(pkg-config --static --libs expquant | sed 's/-lexpquant\b/-l:libexpquant.a/') -lm \
  -o "$work/app/consumer_pc_static"

echo "== move the prefix, delete the CMake build tree"
mv "$prefix" "$work/moved"
rm -rf "$work/stage" "$work/build-cmake"
moved="$work/moved"

echo "== run from the moved prefix"
run() {
  local out
  out="$("$@")" || fail "$* exited with $?"
  case "$out" in
    "consumer ok: expquant $version") echo "$out  <- ${*: -2:1}" ;;
    *) fail "$* printed '$out'" ;;
  esac
}
run "$moved/bin/consumer_cmake_shared" "$version"
run "$moved/bin/consumer_cmake_static" "$version"
run env LD_LIBRARY_PATH="$moved/lib" "$work/app/consumer_pc_shared" "$version"
run "$work/app/consumer_pc_static" "$version"
if "$work/app/consumer_pc_shared" "$version" >/dev/null 2>&1; then
  fail "consumer_pc_shared started without LD_LIBRARY_PATH: it found a libexpquant elsewhere"
fi
# Which file the loader picks, symlinks and $ORIGIN/.. resolved.
loaded() {
  local path
  path="$(ldd "$1" | awk '$1 == "libexpquant.so.0" {print $3}')"
  [ -z "$path" ] || readlink -f "$path"
}
expected="$(readlink -f "$moved/lib/libexpquant.so.$version")"
resolved="$(LD_LIBRARY_PATH="$moved/lib" loaded "$work/app/consumer_pc_shared")"
[ "$resolved" = "$expected" ] || fail "libexpquant.so.0 resolves to '$resolved'"
resolved="$(loaded "$moved/bin/consumer_cmake_shared")"
[ "$resolved" = "$expected" ] || fail "the CMake consumer loads '$resolved'"

echo "== nothing points into the build tree"
for exe in "$moved/bin/consumer_cmake_shared" "$work/app/consumer_pc_shared"; do
  needed="$(readelf -d "$exe" | sed -n 's/.*(NEEDED).*\[\(libexpquant[^]]*\)\].*/\1/p')"
  [ "$needed" = "libexpquant.so.0" ] || fail "$exe needs '$needed', not libexpquant.so.0"
done
for exe in "$moved/bin/consumer_cmake_static" "$work/app/consumer_pc_static"; do
  ! readelf -d "$exe" | grep "libexpquant" >/dev/null || fail "$exe depends on a shared libexpquant"
done
runpath="$(readelf -d "$moved/bin/consumer_cmake_shared" | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\].*/\2/p')"
[ "$runpath" = "\$ORIGIN/../lib" ] || fail "the CMake consumer's run path is '$runpath'"
! readelf -d "$work/app/consumer_pc_shared" | grep -E "R(UN)?PATH" >/dev/null ||
  fail "the pkg-config consumer has a run path"
if grep -rlaF -e "$root" -e "$target_dir" -e "$work/stage" -e "$work/build-cmake" \
     "$moved" "$work/app"; then
  fail "the files above contain a path of the build tree"
fi
echo "check_install.sh: all checks passed"
