#!/usr/bin/env bash
# Builds the expquant C library and installs it under a prefix:
#
#   <prefix>/include/expquant.h
#   <prefix>/<libdir>/libexpquant.so.X.Y.Z, libexpquant.so.X -> it, libexpquant.so -> that
#                     (macOS: libexpquant.X.dylib, libexpquant.dylib -> it)
#   <prefix>/<libdir>/libexpquant.a
#   <prefix>/<libdir>/pkgconfig/expquant.pc
#   <prefix>/<libdir>/cmake/expquant/expquantConfig.cmake, expquantConfigVersion.cmake
#
# Usage: scripts/install.sh [--prefix DIR] [--destdir DIR] [--libdir DIR] [--profile NAME]
#
#   --prefix   where the files are meant to live (default /usr/local)
#   --destdir  staging root prepended to every installed path, for packagers (default none)
#   --libdir   library directory relative to the prefix (default lib)
#   --profile  cargo profile to build with (default release, without debug info;
#              release-debug keeps line tables in both libraries)
#
# The pkg-config and CMake files locate everything relative to their own directory, so the
# tree can be moved or staged with --destdir and used from where it lands.
#
# This script does what `cargo cinstall` (cargo-c) does for this one library. cargo-c itself
# is not used because it is built on cargo as a library: installing it compiles about 400
# crates (cargo, gitoxide, curl and their dependencies), which a CI run without a cache would
# pay every time. This script needs cargo, sed, strip and install(1).
set -euo pipefail

prefix=/usr/local
destdir=
libdir=lib
profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    --destdir) destdir="${2:?--destdir needs a directory}"; shift 2 ;;
    --destdir=*) destdir="${1#*=}"; shift ;;
    --libdir) libdir="${2:?--libdir needs a directory}"; shift 2 ;;
    --libdir=*) libdir="${1#*=}"; shift ;;
    --profile) profile="${2:?--profile needs a name}"; shift 2 ;;
    --profile=*) profile="${1#*=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$prefix" in
  /*) ;;
  *) echo "install.sh: --prefix must be an absolute path, got '$prefix'" >&2; exit 2 ;;
esac
case "$libdir" in
  /*|*..*|"") echo "install.sh: --libdir must be a relative path below the prefix, got '$libdir'" >&2; exit 2 ;;
esac
libdir="${libdir%/}"
includedir=include

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# `../..` for every component of a relative directory: the way back up to the prefix.
up_from() {
  local dir="$1" up=""
  local IFS=/
  for part in $dir; do
    [ -n "$part" ] && [ "$part" != "." ] && up="${up:+$up/}.."
  done
  echo "${up:-.}"
}

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' capi/Cargo.toml | head -n1)"
core_version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
if [ -z "$version" ] || [ "$version" != "$core_version" ]; then
  echo "install.sh: capi/Cargo.toml version '$version' differs from the core crate's '$core_version'" \
       "(expq_version() reports the core's; the SONAME and the package files use capi's)" >&2
  exit 1
fi
major="${version%%.*}"
minor="${version#*.}"; minor="${minor%%.*}"

# One build that also prints the system libraries the static library needs. cargo replays
# this note when the build is already fresh.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! cargo rustc --profile "$profile" -p expquant-capi --lib -- --print native-static-libs 2>"$log"; then
  cat "$log" >&2
  exit 1
fi
native_libs="$(sed -n 's/^note: native-static-libs: //p' "$log" | tail -n1)"
if [ -z "$native_libs" ]; then
  cat "$log" >&2
  echo "install.sh: rustc did not print native-static-libs" >&2
  exit 1
fi

target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
case "$profile" in
  dev) profile_dir=debug ;;
  *) profile_dir="$profile" ;;
esac
build_dir="$target_dir/$profile_dir"

pointer_width="$(rustc --print cfg | sed -n 's/^target_pointer_width="\(.*\)"$/\1/p')"
case "$(uname -s)" in
  Darwin)
    built=libexpquant.dylib
    shared_file="libexpquant.$major.dylib"
    soname="@rpath/$shared_file"
    links=("libexpquant.dylib:$shared_file")
    ;;
  *)
    built=libexpquant.so
    shared_file="libexpquant.so.$version"
    soname="libexpquant.so.$major"
    links=("$soname:$shared_file" "libexpquant.so:$soname")
    ;;
esac
for f in "$built" libexpquant.a; do
  [ -f "$build_dir/$f" ] || { echo "install.sh: the build did not produce $build_dir/$f" >&2; exit 1; }
done

# The CMake target wants a list: `-lfoo` becomes `foo`, anything else (`-framework X` on
# macOS is split into two words by rustc) is kept as a linker flag.
cmake_libs=""
set -- $native_libs
while [ $# -gt 0 ]; do
  case "$1" in
    -l*) item="${1#-l}" ;;
    -framework) item="-framework $2"; shift ;;
    *) item="$1" ;;
  esac
  cmake_libs="${cmake_libs:+$cmake_libs;}$item"
  shift
done

stage="$destdir$prefix"
lib_out="$stage/$libdir"
pc_dir="$libdir/pkgconfig"
cmake_dir="$libdir/cmake/expquant"
install -d "$stage/$includedir" "$lib_out" "$stage/$pc_dir" "$stage/$cmake_dir"

install -m 644 include/expquant.h "$stage/$includedir/expquant.h"
install -m 755 "$build_dir/$built" "$lib_out/$shared_file"
for link in "${links[@]}"; do
  ln -sfn "${link#*:}" "$lib_out/${link%%:*}"
done
install -m 644 "$build_dir/libexpquant.a" "$lib_out/libexpquant.a"
# The archive carries the debug info that the Rust standard library ships with; a release
# install leaves it out, as the shared library does.
if [ "$profile" = release ]; then
  case "$(uname -s)" in
    Darwin) strip -S "$lib_out/libexpquant.a" ;;
    *) strip --strip-debug "$lib_out/libexpquant.a" ;;
  esac
fi

substitute() {
  sed -e "s|@VERSION@|$version|g" \
      -e "s|@VERSION_MAJOR@|$major|g" \
      -e "s|@VERSION_MINOR@|$minor|g" \
      -e "s|@LIBDIR@|$libdir|g" \
      -e "s|@INCLUDEDIR@|$includedir|g" \
      -e "s|@PCFILEDIR_TO_PREFIX@|$(up_from "$pc_dir")|g" \
      -e "s|@CONFIGDIR_TO_PREFIX@|$(up_from "$cmake_dir")|g" \
      -e "s|@SHARED_FILE@|$shared_file|g" \
      -e "s|@STATIC_FILE@|libexpquant.a|g" \
      -e "s|@SONAME@|$soname|g" \
      -e "s|@SIZEOF_VOID_P@|$((pointer_width / 8))|g" \
      -e "s|@URL@|https://github.com/expquant/expquant|g" \
      -e "s|@NATIVE_STATIC_LIBS_CMAKE@|$cmake_libs|g" \
      -e "s|@NATIVE_STATIC_LIBS@|$native_libs|g" \
      "$1"
}
substitute capi/expquant.pc.in > "$stage/$pc_dir/expquant.pc"
substitute cmake/expquantConfig.cmake.in > "$stage/$cmake_dir/expquantConfig.cmake"
substitute cmake/expquantConfigVersion.cmake.in > "$stage/$cmake_dir/expquantConfigVersion.cmake"
chmod 644 "$stage/$pc_dir/expquant.pc" "$stage/$cmake_dir"/*.cmake

echo "installed expquant $version ($profile) under $stage"
