//! Containers: quantized and f32 entries, format versions 1 and 2, verification modes, and
//! untrusted bytes that never panic in any mode.
mod common;

use common::weights;
use expquant::format::{crc32, CONTAINER_VERSION};
use expquant::{
    quantize, write_container, Config, ContainerView, Entry, EntryView, Error, QuantizedTensor,
    Verification,
};

const MODES: [Verification; 3] = [
    Verification::Full,
    Verification::Lazy,
    Verification::Trusted,
];

fn tensors() -> (QuantizedTensor, QuantizedTensor) {
    let a = quantize(&weights(4, 50, 0.1), 5, 10, &Config::exponential(4)).unwrap();
    let b = quantize(&weights(5, 36, 0.1), 6, 6, &Config::linear(3).per_tensor()).unwrap();
    (a, b)
}

fn bias() -> Vec<f32> {
    vec![0.5, -0.25, 0.0, 1.0, f32::MIN_POSITIVE]
}

fn model() -> Vec<u8> {
    let (a, b) = tensors();
    let norm: Vec<f32> = (0..6).map(|i| i as f32 * 0.125).collect();
    write_container(&[
        ("fc.weight", Entry::from(&a)),
        ("fc.bias", Entry::vector(&bias())),
        ("conv.weight", Entry::from(&b)),
        (
            "norm",
            Entry::F32 {
                rows: 2,
                cols: 3,
                values: &norm,
            },
        ),
    ])
    .unwrap()
}

/// Uses every entry the way a reader would, so that deferred checks run.
fn use_all(c: &ContainerView<'_>) -> Result<(), Error> {
    for entry in c.entries() {
        match entry?.1 {
            EntryView::Quantized(view) => {
                let mut y = vec![0.0; view.rows()];
                view.gemv(&vec![1.0; view.cols()], &mut y)?;
                let _ = view.dequantize();
            }
            EntryView::F32(array) => {
                let _ = array.to_vec();
                let _ = array.as_slice();
            }
        }
    }
    Ok(())
}

#[test]
fn mixed_entries_round_trip_in_every_mode() {
    let bytes = model();
    let (a, b) = tensors();
    assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), CONTAINER_VERSION);
    for mode in MODES {
        let c = ContainerView::with_verification(&bytes, mode).unwrap();
        assert_eq!(c.verification(), mode);
        assert_eq!(c.len(), 4);
        let names: Vec<&str> = (0..c.len()).map(|i| c.name(i).unwrap()).collect();
        assert_eq!(names, ["conv.weight", "fc.bias", "fc.weight", "norm"]);
        assert_eq!(c.name(4), None);
        assert_eq!(c.position("fc.weight"), Some(2));
        let bias_entry = c.get_f32("fc.bias").unwrap().unwrap();
        assert_eq!((bias_entry.rows(), bias_entry.cols()), (1, 5));
        assert_eq!(bias_entry.to_vec(), bias());
        assert_eq!(bias_entry.get(1), Some(-0.25));
        assert_eq!(bias_entry.get(5), None);
        let norm = c.get_f32("norm").unwrap().unwrap();
        assert_eq!((norm.rows(), norm.cols()), (2, 3));
        assert_eq!(
            c.get("fc.weight").unwrap().unwrap().dequantize(),
            a.dequantize()
        );
        assert_eq!(
            c.get("conv.weight").unwrap().unwrap().dequantize(),
            b.dequantize()
        );
        assert!(matches!(c.get("fc.bias"), Err(Error::InvalidName(_))));
        assert!(matches!(c.get_f32("fc.weight"), Err(Error::InvalidName(_))));
        assert!(c.get("missing").unwrap().is_none());
        assert!(c.get_f32("missing").unwrap().is_none());
        // `iter` lists the quantized tensors only.
        let quantized: Vec<&str> = c.iter().map(|e| e.unwrap().0).collect();
        assert_eq!(quantized, ["conv.weight", "fc.weight"]);
        use_all(&c).unwrap();
    }
}

#[test]
fn f32_entries_borrow_in_place_when_aligned() {
    let bytes = model();
    // Entries start at multiples of 64 from the buffer's start, so the zero-copy slice exists
    // exactly when the buffer's own address is 4-byte aligned.
    let c = ContainerView::from_bytes(&bytes).unwrap();
    let bias_entry = c.get_f32("fc.bias").unwrap().unwrap();
    match bias_entry.as_slice() {
        Some(values) => {
            assert_eq!(bytes.as_ptr() as usize % 4, 0);
            assert_eq!(values, &bias()[..]);
        }
        None => assert_ne!(bytes.as_ptr() as usize % 4, 0),
    }
    let mut out = vec![0.0; 5];
    bias_entry.copy_to(&mut out).unwrap();
    assert_eq!(out, bias());
    assert!(matches!(
        bias_entry.copy_to(&mut [0.0; 4]),
        Err(Error::BufferLength { .. })
    ));
}

#[test]
fn f32_entries_reject_bad_shapes() {
    let v = [1.0f32; 6];
    let bad = |rows, cols| {
        write_container(&[(
            "x",
            Entry::F32 {
                rows,
                cols,
                values: &v,
            },
        )])
    };
    assert!(matches!(bad(2, 2), Err(Error::ShapeMismatch { .. })));
    assert!(matches!(bad(0, 6), Err(Error::EmptyTensor { .. })));
    assert!(matches!(
        bad(usize::MAX, 2),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(bad(2, 3).is_ok());
}

/// A version-1 container (the 20-byte entries without kind or shape, the checksum over the
/// table only), built here byte by byte from the layout in FORMAT.md.
fn version_1(entries: &[(&str, &QuantizedTensor)]) -> Vec<u8> {
    let table_len: usize = entries.iter().map(|(n, _)| 4 + n.len() + 16).sum();
    let mut offset = (16 + table_len).next_multiple_of(64);
    let mut table = Vec::new();
    let mut body: Vec<(usize, Vec<u8>)> = Vec::new();
    for (name, t) in entries {
        let stored = t.to_bytes();
        table.extend_from_slice(&(name.len() as u32).to_le_bytes());
        table.extend_from_slice(name.as_bytes());
        table.extend_from_slice(&(offset as u64).to_le_bytes());
        table.extend_from_slice(&(stored.len() as u64).to_le_bytes());
        let len = stored.len();
        body.push((offset, stored));
        offset = (offset + len).next_multiple_of(64);
    }
    let end = body.last().map_or(16 + table_len, |(at, b)| at + b.len());
    let mut out = vec![0u8; end];
    out[0..4].copy_from_slice(b"EXQC");
    out[4..6].copy_from_slice(&1u16.to_le_bytes());
    out[8..12].copy_from_slice(&(entries.len() as u32).to_le_bytes());
    out[12..16].copy_from_slice(&crc32(&table).to_le_bytes());
    out[16..16 + table_len].copy_from_slice(&table);
    for (at, b) in body {
        out[at..at + b.len()].copy_from_slice(&b);
    }
    out
}

#[test]
fn version_1_containers_still_read() {
    let (a, b) = tensors();
    let bytes = version_1(&[("a", &a), ("b", &b)]);
    for mode in MODES {
        let c = ContainerView::with_verification(&bytes, mode).unwrap();
        assert_eq!(c.version(), 1);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("a").unwrap().unwrap().dequantize(), a.dequantize());
        assert_eq!(c.get("b").unwrap().unwrap().dequantize(), b.dequantize());
    }
    // The writer's own version-2 bytes for the same tensors differ only in the table.
    let v2 = write_container(&[("a", &a), ("b", &b)]).unwrap();
    assert_ne!(v2, bytes);
    let mut v3 = v2.clone();
    v3[4] = 3;
    assert!(matches!(
        ContainerView::from_bytes(&v3),
        Err(Error::UnsupportedVersion {
            found: 3,
            supported: 2
        })
    ));
}

#[test]
fn the_checksum_covers_the_entry_count() {
    let bytes = model();
    // A forged count of 0 with the table's checksum recomputed the version-1 way (table
    // only) would be accepted by a version-1 reader; version 2 covers the count.
    let mut forged = bytes.clone();
    forged[8..12].copy_from_slice(&0u32.to_le_bytes());
    assert!(matches!(
        ContainerView::from_bytes(&forged),
        Err(Error::Corrupt("container checksum mismatch"))
    ));
    let mut forged = bytes.clone();
    forged[8..12].copy_from_slice(&3u32.to_le_bytes());
    for mode in MODES {
        assert!(ContainerView::with_verification(&forged, mode).is_err());
    }
}

#[test]
fn corruption_is_caught_when_each_mode_says() {
    let bytes = model();
    let c = ContainerView::from_bytes(&bytes).unwrap();
    let bias_at =
        c.get_f32("fc.bias").unwrap().unwrap().bytes().as_ptr() as usize - bytes.as_ptr() as usize;
    let weight_at = c.get("fc.weight").unwrap().unwrap().packed_codes().as_ptr() as usize
        - bytes.as_ptr() as usize;
    // An altered f32 value: Full rejects at open, Lazy at lookup, Trusted reads it.
    let mut m = bytes.clone();
    m[bias_at] ^= 1;
    assert!(ContainerView::from_bytes(&m).is_err());
    let lazy = ContainerView::with_verification(&m, Verification::Lazy).unwrap();
    assert!(lazy.get_f32("fc.bias").is_err());
    assert!(lazy.get("fc.weight").is_ok());
    let trusted = ContainerView::with_verification(&m, Verification::Trusted).unwrap();
    assert_ne!(
        trusted.get_f32("fc.bias").unwrap().unwrap().to_vec(),
        bias()
    );
    // A code with no level (all ones at 4 bits with a zero level): Full and Lazy reject it,
    // Trusted decodes it as 0.0 without reading out of bounds.
    let mut m = bytes.clone();
    m[weight_at] |= 0x0F;
    assert!(ContainerView::from_bytes(&m).is_err());
    let lazy = ContainerView::with_verification(&m, Verification::Lazy).unwrap();
    assert!(lazy.get("fc.weight").is_err());
    let trusted = ContainerView::with_verification(&m, Verification::Trusted).unwrap();
    let view = trusted.get("fc.weight").unwrap().unwrap();
    assert_eq!(view.dequantize()[0], 0.0);
    use_all(&trusted).unwrap();
}

#[test]
fn truncated_and_altered_containers_never_panic_in_any_mode() {
    let bytes = model();
    for mode in MODES {
        for cut in 0..bytes.len() {
            // The last entry ends the buffer, so every cut loses bytes the table points at.
            assert!(
                ContainerView::with_verification(&bytes[..cut], mode).is_err(),
                "{mode:?} truncated at {cut}"
            );
        }
        for at in 0..bytes.len() {
            for flip in [0x01, 0x10, 0x80] {
                let mut m = bytes.clone();
                m[at] ^= flip;
                if let Ok(c) = ContainerView::with_verification(&m, mode) {
                    let _ = use_all(&c);
                    let _ = c.get("fc.weight");
                    let _ = c.get_f32("norm");
                    if mode == Verification::Full {
                        // Whatever Full accepted is usable without another error.
                        use_all(&c).unwrap();
                    }
                }
            }
        }
    }
}
