#!/usr/bin/env bash
# Proves that the C firmware in examples/firmware-c/ runs the stored model the way the host
# does, through the no_std C library of capi-nostd/, with no allocator:
#
#  1. builds libexpquant_nostd.a (capi-nostd/, release, thumbv7em-none-eabihf, panic=abort)
#     and the firmware with arm-none-eabi-gcc (examples/firmware-c/Makefile), with a map file;
#     the header, with EXPQ_NO_STD defined, declares exactly the functions the library defines;
#  2. neither the map file nor the ELF's symbols name an allocator (malloc, calloc, realloc,
#     free, _sbrk, __rust_alloc, __rg_alloc, __rdl_alloc, __rust_no_alloc_shim_is_unstable);
#  3. runs it in qemu-system-arm -M mps2-an386 (Cortex-M4F) under a timeout; it must exit 0;
#  4. its predictions equal, image by image, those of the host path
#     (`cargo run --release --example export_model -- predict`) on the same images, and so
#     does its top-1 count;
#  5. prints the footprint table of README.md (flash and RAM of the library, its CRC-32, the
#     model, the test images, the application and the rest, from the ELF's symbol sizes) and
#     arm-none-eabi-size's totals.
#
# Needs cargo with the thumbv7em-none-eabihf target, make, qemu-system-arm and Debian's
# gcc-arm-none-eabi and libnewlib-arm-none-eabi. The library keeps its own target directory
# (capi-nostd/target, or $CAPI_NOSTD_TARGET_DIR); the firmware builds in
# examples/firmware-c/build (or $FIRMWARE_C_BUILD_DIR).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/firmware_common.sh
source "$root/scripts/firmware_common.sh"

fail() {
  echo "check_firmware_c.sh: FAIL: $*" >&2
  exit 1
}
for tool in cargo make qemu-system-arm arm-none-eabi-gcc arm-none-eabi-nm arm-none-eabi-size timeout; do
  command -v "$tool" >/dev/null || fail "$tool not found"
done

lib_target="${CAPI_NOSTD_TARGET_DIR:-$root/capi-nostd/target}"
lib="$lib_target/thumbv7em-none-eabihf/release/libexpquant_nostd.a"
build="${FIRMWARE_C_BUILD_DIR:-$root/examples/firmware-c/build}"
elf="$build/firmware.elf"
map="$build/firmware.map"

# 1. The library, then the firmware (always relinked, so the map file is this build's).
(cd capi-nostd && CARGO_TARGET_DIR="$lib_target" cargo build --release --locked \
  --target thumbv7em-none-eabihf)
test -s "$lib" || fail "no static library at $lib"
rm -f "$elf" "$map"
make -C examples/firmware-c --no-print-directory BUILD="$build" LIB="$lib"
test -s "$elf" || fail "no firmware ELF at $elf"
test -s "$map" || fail "no map file at $map"

# The header with EXPQ_NO_STD declares exactly the functions the library defines.
declared="$(arm-none-eabi-gcc -E -P -DEXPQ_NO_STD -x c include/expquant.h |
  grep -oE '\bexpq_[a-z0-9_]+\(' | tr -d '(' | sort -u)"
defined="$(arm-none-eabi-nm --defined-only "$lib" 2>/dev/null |
  awk '$2 == "T" && $3 ~ /^expq_/ {print $3}' | sort -u)"
[ -n "$declared" ] && [ "$declared" = "$defined" ] || fail "the EXPQ_NO_STD header and the library differ:
$(diff <(echo "$declared") <(echo "$defined"))"

# 2. No allocator anywhere in the image.
check_no_allocator "$map" "$elf" arm-none-eabi-nm '__rust_alloc|__rg_alloc|__rdl_alloc|__rust_no_alloc_shim_is_unstable|\b_?(malloc|calloc|realloc|free|_sbrk)(_r)?\b'

# 3. The run under QEMU, and 4. the host path on the same images.
run_and_compare_with_host "$elf"

# 5. Footprint by symbol. The application is what main.c defines; startup.c (reset,
# semihosting) counts with the C library and the compiler builtins as the rest.
declare -A app=()
while read -r name; do
  app[$name]=1
done < <(arm-none-eabi-nm --defined-only "$build/main.o" | awk '$2 !~ /^[Nn]$/ {print $3}')
declare -A flash=() ram=()
while read -r _ size kind name; do
  case "$name" in
    model_container) part=model ;;
    test_images) part=images ;;
    crc32fast::* | "<crc32fast::"* | expquant::format::checksum::*) part=checksum ;;
    expq_* | expquant::* | "<expquant::"* | num_traits::* | libm::*) part=library ;;
    *) if [ -n "${app[$name]:-}" ]; then part=application; else part=rest; fi ;;
  esac
  case "$kind" in
    [bBdD]) ram[$part]=$((${ram[$part]:-0} + 16#$size)) ;;
    *) flash[$part]=$((${flash[$part]:-0} + 16#$size)) ;;
  esac
done < <(arm-none-eabi-nm -S -C --size-sort "$elf")
echo "| part | flash (bytes) | RAM (bytes) |"
echo "|---|---:|---:|"
for part in library checksum model images application rest; do
  echo "| $part | ${flash[$part]:-0} | ${ram[$part]:-0} |"
done
arm-none-eabi-size "$elf"

echo "check_firmware_c.sh: OK: $count images, top-1 $top1 on the C firmware and host, no allocator linked"
