#!/usr/bin/env python3
"""Convert the UCI handwritten-digits set shipped in a scikit-learn wheel into data/digits.bin.

Usage: python3 scripts/make_digits.py PATH/TO/scikit_learn-*.whl [OUT]

The wheel is only a zip file, so the standard library is enough: no scikit-learn install is
needed. Output: 1797 records of 65 bytes each (64 pixels row-major, values 0..=16, then the
label 0..=9), in the file order of digits.csv.gz. See data/README.md.
"""
import csv
import gzip
import io
import os
import sys
import zipfile

MEMBER = "sklearn/datasets/data/digits.csv.gz"
EXPECTED_SAMPLES = 1797


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    wheel = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[2] if len(sys.argv) == 3 else os.path.join(here, "..", "data", "digits.bin")

    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read(MEMBER)).decode("ascii")

    records = bytearray()
    count = 0
    for row in csv.reader(io.StringIO(raw)):
        if not row:
            continue
        # Values are written as floats ("0.0"); every one must be an exact small integer.
        values = [float(v) for v in row]
        if len(values) != 65:
            raise SystemExit(f"row {count}: expected 65 columns, got {len(values)}")
        ints = [int(v) for v in values]
        if any(float(i) != v for i, v in zip(ints, values)):
            raise SystemExit(f"row {count}: non-integer value")
        if any(not 0 <= p <= 16 for p in ints[:64]) or not 0 <= ints[64] <= 9:
            raise SystemExit(f"row {count}: value out of range")
        records.extend(ints)
        count += 1

    if count != EXPECTED_SAMPLES:
        raise SystemExit(f"expected {EXPECTED_SAMPLES} samples, got {count}")
    with open(out, "wb") as f:
        f.write(records)
    print(f"wrote {count} records ({len(records)} bytes) to {os.path.normpath(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
