# Steps shared by check_firmware.sh and check_firmware_c.sh, sourced by both. The caller
# defines `fail MESSAGE` and `root` (the repository) before sourcing.

# No allocator anywhere in the image: neither the linker map MAP nor the symbols that NM
# lists for ELF match the extended regular expression ALLOC_SYMBOLS.
check_no_allocator() {
  local map="$1" elf="$2" nm="$3" alloc_symbols="$4"
  if grep -Eq "$alloc_symbols" "$map"; then
    grep -En "$alloc_symbols" "$map" | head >&2
    fail "the map file names an allocator"
  fi
  if "$nm" "$elf" | grep -Eq "$alloc_symbols"; then
    fail "the ELF defines or references an allocator symbol"
  fi
}

# Runs ELF in qemu-system-arm -M mps2-an386 under a timeout (QEMU exits with the firmware's
# semihosting status), then requires its predictions and top-1 to equal the host path's
# (`cargo run --release --example export_model -- predict`) on the same images, image by
# image. Sets `count`, the number of images compared, and `top1`, the top-1 both printed.
run_and_compare_with_host() {
  local elf="$1" out fw_pred fw_top1 host host_pred host_top1
  out="$(timeout 300 qemu-system-arm -M mps2-an386 -nographic -semihosting -kernel "$elf")" ||
    fail "the firmware failed or timed out under QEMU (exit $?): $out"
  fw_pred="$(sed -n 's/^predictions: *//p' <<<"$out")"
  fw_top1="$(sed -n 's/^top-1: *//p' <<<"$out")"
  [ -n "$fw_pred" ] && [ -n "$fw_top1" ] || fail "the firmware printed no predictions: $out"
  count="$(wc -w <<<"$fw_pred")"

  host="$(cargo run --quiet --release --example export_model -- predict "$root/data" "$count")"
  host_pred="$(sed -n 's/^predictions: *//p' <<<"$host")"
  host_top1="$(sed -n 's/^top-1: *//p' <<<"$host")"
  [ "$fw_pred" = "$host_pred" ] || fail "predictions differ
firmware: $fw_pred
host:     $host_pred"
  [ "$fw_top1" = "$host_top1" ] || fail "top-1 differs: firmware $fw_top1, host $host_top1"
  top1="$fw_top1"
}
