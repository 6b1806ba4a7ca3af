//! Every fast path against its scalar reference: packing byte for byte, decoding and encoding
//! bit for bit, dot products and GEMV within a stated `f32` summation tolerance. The tests
//! first check that this machine runs the SIMD paths they compare, so a fast path no test
//! reaches shows up as a failure, not as a silent pass.
mod common;

use common::Rng;
use expquant::kernels::{self, Encoder, Isa, IsaKind};
use expquant::pack::{self, packed_len};
use expquant::{quantize, Codebook, Config};

/// The paths to compare with the reference on this machine.
fn fast_paths() -> Vec<Isa> {
    Isa::available()
        .filter(|isa| isa.kind() != IsaKind::Scalar)
        .collect()
}

/// `isa` decodes `packed` to exactly the scalar reference's bits.
fn assert_decode_matches(
    isa: Isa,
    bits: u8,
    packed: &[u8],
    levels: &[f32],
    reference: &[f32],
    context: &str,
) {
    let mut out = vec![f32::NAN; reference.len()];
    kernels::decode_with(isa, bits, packed, levels, &mut out).unwrap();
    assert!(
        out.iter()
            .zip(reference)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "{isa:?} bits={bits}{context} n={}",
        reference.len()
    );
}

#[test]
fn the_simd_paths_run_here() {
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = ["avx512f", "avx512bw", "avx512vl", "avx2", "fma"];
        let has = |f: &str| match f {
            "avx512f" => is_x86_feature_detected!("avx512f"),
            "avx512bw" => is_x86_feature_detected!("avx512bw"),
            "avx512vl" => is_x86_feature_detected!("avx512vl"),
            "avx2" => is_x86_feature_detected!("avx2"),
            _ => is_x86_feature_detected!("fma"),
        };
        let expected = if avx512.iter().all(|f| has(f)) {
            IsaKind::Avx512
        } else if has("avx2") && has("fma") {
            IsaKind::Avx2
        } else {
            IsaKind::Swar
        };
        assert_eq!(Isa::detect().kind(), expected);
        println!("detected {}", Isa::detect());
    }
    // Every AArch64 target with `neon` (all the hosted ones) takes the NEON path.
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    assert_eq!(Isa::detect().kind(), IsaKind::Neon);
    assert_ne!(Isa::detect().kind(), IsaKind::Scalar);
}

/// The paths a test can ask for are the scalar reference, the portable path and what this
/// CPU was detected to run: never an instruction set of another architecture, each once,
/// slowest first, the fastest being the detected one.
#[test]
fn available_paths_are_this_machines_own() {
    let kinds: Vec<IsaKind> = Isa::available().map(Isa::kind).collect();
    assert_eq!(&kinds[..2], &[IsaKind::Scalar, IsaKind::Swar]);
    assert_eq!(Isa::scalar().kind(), IsaKind::Scalar);
    assert_eq!(Isa::portable().kind(), IsaKind::Swar);
    assert_eq!(Isa::available().last(), Some(Isa::detect()));
    assert!(kinds.windows(2).all(|pair| pair[0] < pair[1]), "{kinds:?}");
    for kind in kinds {
        let arch = match kind {
            IsaKind::Avx2 | IsaKind::Avx512 => "x86_64",
            IsaKind::Neon => "aarch64",
            _ => std::env::consts::ARCH,
        };
        assert_eq!(arch, std::env::consts::ARCH, "{kind}");
    }
    let names: Vec<String> = Isa::available().map(|isa| isa.kind().to_string()).collect();
    assert_eq!(&names[..2], &["scalar", "swar"]);
}

fn random_codes(rng: &mut Rng, n: usize, bits: u8) -> Vec<u8> {
    (0..n)
        .map(|_| (rng.next_u64() % (1u64 << bits)) as u8)
        .collect()
}

fn lengths() -> impl Iterator<Item = usize> {
    (0..=130).chain([255, 256, 257, 511, 1000, 4099])
}

/// Every length up to 300 (each tail of the 64-code SIMD step, several times over), then a
/// few large ones, odd and even.
fn pack_lengths() -> impl Iterator<Item = usize> {
    (0..=300).chain([511, 1000, 4099, 65_536, 65_537, 100_003, (1 << 20) + 61])
}

#[test]
fn the_simd_pack_path_runs_here() {
    #[cfg(target_arch = "x86_64")]
    if Isa::detect().kind() == IsaKind::Avx512 && is_x86_feature_detected!("avx512vbmi") {
        assert!(Isa::detect().has_vbmi());
        assert_eq!(Isa::detect().to_string(), "avx512+vbmi");
        return;
    }
    assert!(Isa::available().all(|isa| !isa.has_vbmi()));
}

/// `pack::pack` (the SIMD kernel where the CPU has one) and every available path against
/// the reference, for every width and length; unpack of random bytes, stray bits in the final
/// byte included.
#[test]
fn pack_and_unpack_match_the_scalar_reference_byte_for_byte() {
    let mut rng = Rng::new(1);
    // `None`: the default entry points.
    let paths: Vec<Option<Isa>> = core::iter::once(None)
        .chain(Isa::available().map(Some))
        .collect();
    for bits in 1..=8u8 {
        for n in pack_lengths() {
            let codes = random_codes(&mut rng, n, bits);
            let len = packed_len(n, bits).unwrap();
            let mut reference = vec![0u8; len];
            pack::scalar::pack(&codes, bits, &mut reference).unwrap();
            // Unpack arbitrary bytes (stray bits in the last byte included).
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let mut unpacked = vec![0u8; n];
            pack::scalar::unpack(&bytes, bits, &mut unpacked).unwrap();
            for &path in &paths {
                let name = path.map_or("default".to_string(), |isa| isa.to_string());
                let pack_with = |codes: &[u8], bits, out: &mut [u8]| match path {
                    Some(isa) => pack::pack_with(isa, codes, bits, out),
                    None => pack::pack(codes, bits, out),
                };
                let unpack_with = |bytes: &[u8], bits, out: &mut [u8]| match path {
                    Some(isa) => pack::unpack_with(isa, bytes, bits, out),
                    None => pack::unpack(bytes, bits, out),
                };
                // Poisoned outputs: every byte must be written.
                let mut fast = vec![0xa5u8; len];
                pack_with(&codes, bits, &mut fast).unwrap();
                assert_eq!(fast, reference, "{name} pack bits={bits} n={n}");
                let mut a = vec![0xa5u8; n];
                unpack_with(&bytes, bits, &mut a).unwrap();
                assert_eq!(a, unpacked, "{name} unpack bits={bits} n={n}");
                let mut back = vec![0xa5u8; n];
                unpack_with(&reference, bits, &mut back).unwrap();
                assert_eq!(back, codes, "{name} round trip bits={bits} n={n}");
            }
        }
    }
}

/// Subslices at every offset: the kernels make no alignment assumption, and read and write
/// nothing outside their slices (neighbouring bytes stay as they were).
#[test]
fn pack_and_unpack_stay_inside_unaligned_slices() {
    let mut rng = Rng::new(2);
    for bits in 1..=8u8 {
        for n in [1usize, 63, 64, 65, 127, 200, 513] {
            let codes = random_codes(&mut rng, n + 64, bits);
            let len = packed_len(n, bits).unwrap();
            for off in [1usize, 3, 7, 31] {
                let src = &codes[off..off + n];
                let mut reference = vec![0u8; len];
                pack::scalar::pack(src, bits, &mut reference).unwrap();
                let mut buf = vec![0x5au8; len + 128];
                pack::pack(src, bits, &mut buf[off..off + len]).unwrap();
                assert_eq!(&buf[off..off + len], &reference[..], "bits={bits} n={n}");
                assert!(buf[..off].iter().all(|&b| b == 0x5a));
                assert!(buf[off + len..].iter().all(|&b| b == 0x5a));
                let mut outb = vec![0x5au8; n + 128];
                let mut packed = vec![0u8; len + 64];
                packed[off..off + len].copy_from_slice(&reference);
                pack::unpack(&packed[off..off + len], bits, &mut outb[off..off + n]).unwrap();
                assert_eq!(&outb[off..off + n], src, "bits={bits} n={n}");
                assert!(outb[..off].iter().all(|&b| b == 0x5a));
                assert!(outb[off + n..].iter().all(|&b| b == 0x5a));
            }
        }
    }
}

#[test]
fn pack_rejects_the_first_code_out_of_range_on_every_path() {
    for bits in 1..=7u8 {
        for n in [1usize, 64, 300, 1000] {
            for bad in [0, n / 2, n - 1] {
                let mut codes = vec![0u8; n];
                codes[bad] = 1 << bits;
                if bad + 1 < n {
                    codes[n - 1] = 0xff; // a later bad code must not be the one reported
                }
                let mut out = vec![0u8; packed_len(n, bits).unwrap()];
                let fast = pack::pack(&codes, bits, &mut out).unwrap_err();
                let reference = pack::scalar::pack(&codes, bits, &mut out).unwrap_err();
                assert_eq!(fast.to_string(), reference.to_string());
                assert!(
                    fast.to_string().contains(&format!("{bad}")),
                    "bits={bits} n={n} bad={bad}: {fast}"
                );
            }
        }
    }
}

fn random_levels(rng: &mut Rng, count: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..count).map(|_| rng.normal() as f32).collect();
    v.sort_by(f32::total_cmp);
    v.dedup();
    v
}

#[test]
fn decode_matches_the_reference_bit_for_bit_on_every_path() {
    let mut rng = Rng::new(2);
    for bits in 1..=8u8 {
        for full in [false, true] {
            let count = (1usize << bits) - usize::from(!full && bits > 1);
            let levels = random_levels(&mut rng, count);
            for n in lengths() {
                let codes: Vec<u8> = (0..n)
                    .map(|_| (rng.next_u64() % levels.len() as u64) as u8)
                    .collect();
                let packed = pack::pack_to_vec(&codes, bits).unwrap();
                let mut reference = vec![0.0f32; n];
                kernels::decode_with(Isa::scalar(), bits, &packed, &levels, &mut reference)
                    .unwrap();
                for isa in fast_paths() {
                    assert_decode_matches(isa, bits, &packed, &levels, &reference, "");
                }
            }
        }
    }
}

/// The bound of the module docs: `1e-5 · Σ|w_j x_j|`.
fn close(a: f32, b: f32, magnitude: f64) -> bool {
    (f64::from(a) - f64::from(b)).abs() <= 1e-5 * magnitude + 1e-30
}

#[test]
fn dot_products_match_the_reference_within_summation_error() {
    let mut rng = Rng::new(3);
    for bits in 1..=8u8 {
        let levels = random_levels(&mut rng, (1usize << bits) - usize::from(bits > 1));
        for n in lengths().chain([2048, 8192 + 40]) {
            let codes: Vec<u8> = (0..n)
                .map(|_| (rng.next_u64() % levels.len() as u64) as u8)
                .collect();
            let packed = pack::pack_to_vec(&codes, bits).unwrap();
            let x: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
            let magnitude: f64 = codes
                .iter()
                .zip(&x)
                .map(|(&c, &xi)| f64::from(levels[c as usize] * xi).abs())
                .sum();
            let reference = kernels::dot_with(Isa::scalar(), bits, &packed, &levels, &x).unwrap();
            for isa in fast_paths() {
                let fast = kernels::dot_with(isa, bits, &packed, &levels, &x).unwrap();
                assert!(
                    close(fast, reference, magnitude),
                    "{isa:?} bits={bits} n={n}: {fast} vs {reference}"
                );
            }
        }
    }
}

/// The int8-activation dot product on every path against the scalar int8 reference, at
/// every width and at lengths with a short last block. The NEON kernels add the scaled block
/// totals in the reference's order, so there the results are the same bits; the x86 ones
/// add them in two accumulators, within the `f32` summation bound.
#[test]
fn int8_dot_products_match_the_scalar_int8_reference() {
    let mut rng = Rng::new(15);
    for bits in 1..=8u8 {
        for count in [(1usize << bits) - usize::from(bits > 1), 16.min(1 << bits)] {
            let levels = random_levels(&mut rng, count);
            for n in lengths().chain([2048, 4096 + 31, 8192 + 40]) {
                let codes: Vec<u8> = (0..n)
                    .map(|_| (rng.next_u64() % levels.len() as u64) as u8)
                    .collect();
                let packed = pack::pack_to_vec(&codes, bits).unwrap();
                // One value in eight at ±4, so blocks have values at ±127 once quantized.
                let x: Vec<f32> = (0..n)
                    .map(|i| match i % 8 {
                        0 => 4.0,
                        5 => -4.0,
                        _ => rng.normal() as f32,
                    })
                    .collect();
                let magnitude: f64 = codes
                    .iter()
                    .zip(&x)
                    .map(|(&c, &xi)| f64::from(levels[c as usize] * xi).abs())
                    .sum();
                let reference =
                    kernels::dot_int8_with(Isa::scalar(), bits, &packed, &levels, &x).unwrap();
                for isa in fast_paths() {
                    let fast = kernels::dot_int8_with(isa, bits, &packed, &levels, &x).unwrap();
                    if isa.kind() == IsaKind::Neon {
                        assert_eq!(
                            fast.to_bits(),
                            reference.to_bits(),
                            "{isa:?} bits={bits} levels={count} n={n}: {fast} vs {reference}"
                        );
                    } else {
                        assert!(
                            close(fast, reference, magnitude),
                            "{isa:?} bits={bits} levels={count} n={n}: {fast} vs {reference}"
                        );
                    }
                }
            }
        }
    }
}

/// On AArch64 the path's name says whether the int8 kernels sum with `sdot`: exactly when
/// the CPU has the dot product extension.
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
#[test]
fn the_neon_name_says_whether_the_cpu_has_dotprod() {
    let expected = if std::arch::is_aarch64_feature_detected!("dotprod") {
        "neon+dotprod"
    } else {
        "neon"
    };
    assert_eq!(Isa::detect().name(), expected);
    println!("detected {}", Isa::detect());
}

/// Codebooks smaller than their code width allows (an 8-bit stream over 5 levels, a 6-bit one
/// over 17): the table kernels pick their lookup by the number of levels, not by the width,
/// so every size around 16, 32 and 64 levels is checked at several widths.
#[test]
fn small_codebooks_at_wide_widths_match_the_reference() {
    let mut rng = Rng::new(6);
    for bits in [3u8, 5, 6, 7, 8] {
        for count in [1usize, 2, 5, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 200] {
            if count > 1 << bits {
                continue;
            }
            let levels = random_levels(&mut rng, count);
            for n in [0usize, 1, 15, 16, 17, 31, 32, 33, 47, 100, 1000] {
                let codes: Vec<u8> = (0..n)
                    .map(|_| (rng.next_u64() % levels.len() as u64) as u8)
                    .collect();
                let packed = pack::pack_to_vec(&codes, bits).unwrap();
                let x: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
                let mut reference = vec![0.0f32; n];
                kernels::decode_with(Isa::scalar(), bits, &packed, &levels, &mut reference)
                    .unwrap();
                let dot = kernels::dot_with(Isa::scalar(), bits, &packed, &levels, &x).unwrap();
                let magnitude: f64 = codes
                    .iter()
                    .zip(&x)
                    .map(|(&c, &xi)| f64::from(levels[c as usize] * xi).abs())
                    .sum();
                for isa in fast_paths() {
                    let context = format!(" levels={count}");
                    assert_decode_matches(isa, bits, &packed, &levels, &reference, &context);
                    let fast = kernels::dot_with(isa, bits, &packed, &levels, &x).unwrap();
                    assert!(
                        close(fast, dot, magnitude),
                        "{isa:?} bits={bits} levels={count} n={n}: {fast} vs {dot}"
                    );
                }
            }
        }
    }
}

/// `f32` values next to `x`, `x` itself included.
fn around(x: f32) -> [f32; 3] {
    let up = if x == 0.0 {
        f32::from_bits(1)
    } else if x > 0.0 {
        f32::from_bits(x.to_bits() + 1)
    } else {
        f32::from_bits(x.to_bits() - 1)
    };
    let down = -{
        let y = -x;
        if y == 0.0 {
            f32::from_bits(1)
        } else if y > 0.0 {
            f32::from_bits(y.to_bits() + 1)
        } else {
            f32::from_bits(y.to_bits() - 1)
        }
    };
    [down, x, up]
}

#[test]
fn encoding_gives_exactly_the_codebook_codes_on_every_path() {
    let mut rng = Rng::new(4);
    let mut cases = 0usize;
    for round in 0..40 {
        let bits = 1 + (round % 8) as u8;
        let count = (1usize << bits) - usize::from(round % 3 == 0 && bits > 1);
        let mut levels = random_levels(&mut rng, count);
        if round % 2 == 0 {
            // Symmetric sets with a zero level, as the families make them: ties at ±t and 0.
            let half: Vec<f32> = levels
                .iter()
                .map(|l| l.abs())
                .filter(|&l| l > 0.0)
                .take(count / 2)
                .collect();
            let mut sym: Vec<f32> = half
                .iter()
                .map(|l| -l)
                .chain([0.0])
                .chain(half.iter().copied())
                .collect();
            sym.sort_by(f32::total_cmp);
            sym.dedup();
            levels = sym;
        }
        let cb = Codebook::new(&levels).unwrap();
        let mut x: Vec<f32> = vec![
            0.0,
            -0.0,
            f32::MAX,
            -f32::MAX,
            f32::from_bits(1),
            -f32::from_bits(1),
        ];
        for &t in cb.thresholds() {
            x.extend(around(t as f32));
        }
        for &l in &levels {
            x.extend(around(l));
        }
        x.extend((0..300).map(|_| rng.normal() as f32 * 1.5));
        let reference: Vec<u8> = x.iter().map(|&w| cb.encode(w)).collect();
        let enc = Encoder::new(&cb);
        for (i, &w) in x.iter().enumerate() {
            assert_eq!(enc.encode_one(w), reference[i], "x={w:e} levels={levels:?}");
        }
        for isa in Isa::available() {
            let mut out = vec![0u8; x.len()];
            enc.encode_with(isa, &x, &mut out).unwrap();
            for (i, (&a, &b)) in out.iter().zip(&reference).enumerate() {
                assert_eq!(a, b, "{isa:?} x={:e} levels={levels:?}", x[i]);
            }
            cases += out.len();
        }
    }
    assert!(cases > 10_000);
}

#[test]
fn gemv_matches_a_dense_product_for_every_layout_and_width() {
    let mut rng = Rng::new(5);
    for bits in 1..=8u8 {
        for (rows, cols) in [(3, 1024), (5, 1000), (2, 4096 + 7)] {
            let w: Vec<f32> = (0..rows * cols).map(|_| rng.normal() as f32).collect();
            let x: Vec<f32> = (0..cols).map(|_| rng.normal() as f32).collect();
            for config in [
                Config::exponential(bits).per_tensor(),
                Config::exponential(bits).per_row(),
                Config::linear(bits).per_group(32),
                Config::exponential(bits).per_group(128),
                Config::exponential(bits).per_group(33),
            ] {
                let q = quantize(&w, rows, cols, &config).unwrap();
                let dense = q.dequantize();
                let mut y = vec![0.0f32; rows];
                q.gemv(&x, &mut y).unwrap();
                for r in 0..rows {
                    let row = &dense[r * cols..(r + 1) * cols];
                    let exact: f64 = row
                        .iter()
                        .zip(&x)
                        .map(|(&a, &b)| f64::from(a) * f64::from(b))
                        .sum();
                    let magnitude: f64 = row
                        .iter()
                        .zip(&x)
                        .map(|(&a, &b)| f64::from(a * b).abs())
                        .sum();
                    assert!(
                        (f64::from(y[r]) - exact).abs() <= 1e-5 * magnitude + 1e-30,
                        "{config:?} {rows}x{cols} row {r}: {} vs {exact}",
                        y[r]
                    );
                }
            }
        }
    }
}

/// The batched GEMV kernels (four rows per pass on AVX-512 at 1, 2 and 4 bits; the VBMI
/// byte-plane table at 8 bits) against the scalar reference, on rows long enough for the
/// permuted blocks, with spans that start on and off block boundaries.
#[test]
fn batched_and_8bit_gemv_kernels_match_the_scalar_reference() {
    #[cfg(target_arch = "x86_64")]
    if Isa::detect().kind() == IsaKind::Avx512 {
        // These kernels are what the benchmarks measure: make sure they run here.
        assert!(
            is_x86_feature_detected!("avx512vbmi"),
            "8-bit VBMI path not reached"
        );
    }
    let mut rng = Rng::new(9);
    // (37, 4400): more rows than the view's span path batches (32), several spans (of 2048
    // values) and a tail past the last whole block at every width. The span path is x86's;
    // elsewhere (CI runs AArch64 under qemu) that shape's quantization was 80 % of the test's
    // eight minutes, and the other shapes give the NEON kernels their tails.
    let shapes: &[(usize, usize)] = if cfg!(target_arch = "x86_64") {
        &[(7, 2048), (4, 4096 + 8), (9, 640), (37, 4400)]
    } else {
        &[(7, 2048), (4, 4096 + 8), (9, 640)]
    };
    for bits in [1u8, 2, 4, 8] {
        for &(rows, cols) in shapes {
            let w: Vec<f32> = (0..rows * cols).map(|_| rng.normal() as f32).collect();
            let x: Vec<f32> = (0..cols).map(|_| rng.normal() as f32).collect();
            for config in [
                Config::exponential(bits).per_row(),
                Config::exponential(bits).per_tensor(),
                Config::linear(bits).per_group(512),
                Config::exponential(bits).per_group(96),
                // 4-bit groups of whole permuted blocks: the view's spans derive their tables.
                Config::exponential(bits).per_group(128),
                // 1- and 2-bit groups shorter than a permuted block (a group's lanes scaled
                // by its own magnitudes), with and without a zero level, and linear.
                Config::exponential(bits)
                    .per_group(32)
                    .with_zero_level(false),
                Config::exponential(bits).per_group(64),
                // 4-bit groups of 32 in the quad layout (the tensor's plan and the view's
                // spans), with the zero level.
                Config::exponential(bits).per_group(32),
                Config::linear(bits)
                    .per_group(16 * bits.min(2) as usize)
                    .with_zero_level(false),
            ] {
                let q = quantize(&w, rows, cols, &config).unwrap();
                let mut y = vec![0.0f32; rows];
                q.gemv(&x, &mut y).unwrap();
                let bytes = q.to_bytes();
                let view = expquant::QuantizedView::from_bytes(&bytes).unwrap();
                let mut y_view = vec![0.0f32; rows];
                view.gemv(&x, &mut y_view).unwrap();
                let rb = q.row_bytes();
                let layout = view.granularity();
                let g = layout.group_len(cols);
                for r in 0..rows {
                    let packed = &q.packed_codes()[r * rb..(r + 1) * rb];
                    let mut codes = vec![0u8; cols];
                    pack::unpack(packed, bits, &mut codes).unwrap();
                    let mut reference = 0.0f32;
                    let mut magnitude = 0.0f64;
                    for (gi, span) in codes.chunks(g).enumerate() {
                        let per_row = layout.groups_per_row(cols);
                        let cb = q.codebook(r * per_row + gi).unwrap();
                        let levels = cb.levels();
                        let xs = &x[gi * g..gi * g + span.len()];
                        let sub = pack::pack_to_vec(span, bits).unwrap();
                        reference +=
                            kernels::dot_with(Isa::scalar(), bits, &sub, levels, xs).unwrap();
                        magnitude += span
                            .iter()
                            .zip(xs)
                            .map(|(&c, &xi)| f64::from(levels[c as usize] * xi).abs())
                            .sum::<f64>();
                    }
                    for (path, got) in [("tensor", y[r]), ("view", y_view[r])] {
                        assert!(
                            close(got, reference, magnitude),
                            "{path} {config:?} {rows}x{cols} row {r}: {got} vs {reference}"
                        );
                    }
                }
                // Batching rows changes no bits: any row range gives the full GEMV's values.
                for range in [0..1, 1..4, 2..rows, 3..rows - 1] {
                    let mut part = vec![0.0f32; range.len()];
                    q.gemv_rows(&x, range.clone(), &mut part).unwrap();
                    assert_eq!(part, y[range.clone()], "{config:?} rows {range:?}");
                    view.gemv_rows(&x, range.clone(), &mut part).unwrap();
                    assert_eq!(
                        part,
                        y_view[range.clone()],
                        "view {config:?} rows {range:?}"
                    );
                }
            }
        }
    }
}
