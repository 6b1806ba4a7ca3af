#!/usr/bin/env bash
# Proves that the Rust firmware in examples/firmware/ runs the stored model the way the host
# does, with no allocator:
#
#  1. builds it for thumbv7em-none-eabihf (release) with a linker map file;
#  2. neither the map file nor the ELF's symbols name an allocator (__rust_alloc, __rg_alloc,
#     __rdl_alloc, __rust_no_alloc_shim_is_unstable, malloc);
#  3. runs it in qemu-system-arm -M mps2-an386 (Cortex-M4F) under a timeout; it must exit 0;
#  4. its predictions equal, image by image, those of the host path
#     (`cargo run --release --example export_model -- predict`) on the same images, and so
#     does its top-1 count;
#  5. prints the footprint table of README.md: flash and RAM of the library (its CRC-32 tables
#     apart), the model, the
#     test images, the application and the rest (runtime, formatting, compiler builtins), from
#     the ELF's symbol sizes.
#
# Needs cargo with the thumbv7em-none-eabihf target, qemu-system-arm and nm (.ci/run installs
# qemu-system-arm when missing). The firmware keeps its own target directory
# (examples/firmware/target, or $FIRMWARE_TARGET_DIR).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/firmware_common.sh
source "$root/scripts/firmware_common.sh"

fail() {
  echo "check_firmware.sh: FAIL: $*" >&2
  exit 1
}
for tool in cargo qemu-system-arm nm timeout; do
  command -v "$tool" >/dev/null || fail "$tool not found"
done

fw="$root/examples/firmware"
target_dir="${FIRMWARE_TARGET_DIR:-$fw/target}"
elf="$target_dir/thumbv7em-none-eabihf/release/expquant-firmware"
map="$target_dir/firmware.map"
mkdir -p "$target_dir"

# 1. The firmware, with its map file (only for the final link, so `cargo rustc`).
(cd "$fw" && CARGO_TARGET_DIR="$target_dir" cargo rustc --release --locked -- \
  -C "link-arg=-Map=$map")
test -s "$elf" || fail "no firmware ELF at $elf"
test -s "$map" || fail "no map file at $map"

# 2. No allocator anywhere in the image.
check_no_allocator "$map" "$elf" nm '__rust_alloc|__rg_alloc|__rdl_alloc|__rust_no_alloc_shim_is_unstable|\bmalloc\b'

# 3. The run under QEMU, and 4. the host path on the same images.
run_and_compare_with_host "$elf"

# 5. Footprint by symbol. Generic library code instantiated in the firmware keeps its
# expquant:: path, so it counts as library.
declare -A flash=() ram=()
while read -r _ size kind name; do
  case "$name" in
    expquant_firmware::CONTAINER) part=model ;;
    expquant_firmware::TEST_IMAGES) part=images ;;
    expquant_firmware::*) part=application ;;
    crc32fast::* | expquant::format::checksum::*) part=checksum ;;
    expquant::* | "<expquant::"* | num_traits::* | libm::*) part=library ;;
    *) part=rest ;;
  esac
  case "$kind" in
    [bBdD]) ram[$part]=$((${ram[$part]:-0} + 16#$size)) ;;
    *) flash[$part]=$((${flash[$part]:-0} + 16#$size)) ;;
  esac
done < <(nm -S -C --size-sort "$elf")
echo "| part | flash (bytes) | RAM (bytes) |"
echo "|---|---:|---:|"
for part in library checksum model images application rest; do
  echo "| $part | ${flash[$part]:-0} | ${ram[$part]:-0} |"
done
size "$elf"

echo "check_firmware.sh: OK: $count images, top-1 $top1 on firmware and host, no allocator linked"
