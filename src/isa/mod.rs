//! The instruction-set layer: which code paths this CPU runs, and every kernel that needs a
//! particular instruction set, one file per instruction set.
//!
//! # Tokens
//! [`Isa`] names a path and is also the proof that the CPU runs it: its fields are private,
//! and only detection ([`Isa::detect`], [`Isa::available`]) builds one with a SIMD path in it,
//! while [`Isa::portable`] and [`Isa::scalar`] need nothing from the CPU. A SIMD path carries a
//! per-instruction-set proof ([`Avx2`], [`Avx512`], [`Neon`], [`Avx512Vbmi`],
//! [`Avx512Vnni`], [`AvxVnni`]), a small value with private fields that only detection in
//! this module creates. The
//! `#[target_feature]` functions of the per-ISA files are private to their file; the only way
//! in is a safe method on the proof type, which takes the proof by value and holds the one
//! `unsafe` call. So a `target_feature` function runs only on a CPU detection vouched for.
//!
//! # Files
//! - [`portable`]: the scalar references (one code at a time) and the word-at-a-time (SWAR)
//!   paths, for every target and `no_std`.
//! - `x86_avx2`, `x86_avx512`: x86-64 AVX2 + FMA and AVX-512 (F, BW, VL; VBMI where present).
//!   The batched int8 GEMV kernels live in `x86_avx2` once, generic over how a block's byte
//!   products are summed: AVX2's `vpmaddubsw` + `vpmaddwd`, or `vpdpbusd` on 256-bit vectors
//!   where the CPU has AVX-512 VNNI or AVX-VNNI (same integer sums, so the same bits). Their
//!   way in is `x86_avx2::Int8Rows`, an enum of the three builds whose variants hold the
//!   proofs.
//! - `aarch64_neon`: AArch64 Advanced SIMD; its int8 dot products sum with `sdot` where the
//!   CPU has the dot product extension (a flag on the [`Neon`] proof), else with widening
//!   multiplies, the same integer sums either way.
//!
//! Each per-ISA file holds every kernel of its instruction set: decode, dot product, encode,
//! pack and unpack, and the fit's scoring lanes. The dispatch for an operation (which path,
//! which width) sits with the code that owns the operation (`kernels`, `pack`,
//! `discretize::lanes`); this module imports nothing from the rest of the crate.

use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
pub(crate) mod aarch64_neon;
pub(crate) mod portable;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx512;

/// Proof that the CPU runs AVX2 and FMA. Only detection creates one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Avx2 {
    /// Whether the path also uses AVX-VNNI (the VEX `vpdpbusd`): on a CPU that has it and
    /// no AVX-512 (where the AVX-512 path's VNNI serves instead).
    vnni: bool,
}

/// Proof that the CPU runs AVX-VNNI (VEX `vpdpbusd` on 256-bit vectors), AVX2 and FMA. Only
/// detection creates one (through [`Avx2::vnni`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AvxVnni {
    _detected: (),
}

impl Avx2 {
    /// The AVX-VNNI proof, if detection found AVX-VNNI on this path.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    #[inline]
    pub(crate) fn vnni(self) -> Option<AvxVnni> {
        self.vnni.then_some(AvxVnni { _detected: () })
    }
}

/// Proof that the CPU runs AVX-512 F, BW and VL, AVX2 and FMA. Only detection creates one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Avx512 {
    /// Whether the CPU also has AVX-512 VBMI (byte permutes).
    vbmi: bool,
    /// Whether the CPU also has AVX-512 VNNI (`vpdpbusd`, byte dot products into `i32`).
    vnni: bool,
}

/// Proof that the CPU runs AVX-512 F, BW, VL and VBMI, AVX2 and FMA. Only detection creates
/// one (through [`Avx512::vbmi`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Avx512Vbmi {
    _detected: (),
}

/// Proof that the CPU runs AVX-512 VNNI on 256-bit vectors (AVX-512 VNNI and VL), AVX2 and
/// FMA. Only detection creates one (through [`Avx512::vnni`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Avx512Vnni {
    _detected: (),
}

/// Proof that the CPU runs AArch64 Advanced SIMD. NEON is a baseline feature of the AArch64
/// targets that enable it, so there the target is the detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Neon {
    /// Whether the CPU also has the dot product extension (`sdot`, four byte products summed
    /// into each `i32` lane), which the int8-activation kernels use.
    dotprod: bool,
}

impl Neon {
    /// Whether detection found the dot product extension on this path.
    #[cfg_attr(
        not(all(target_arch = "aarch64", target_feature = "neon")),
        allow(dead_code)
    )]
    #[inline]
    pub(crate) fn has_dotprod(self) -> bool {
        self.dotprod
    }

    /// The same path without the dot product extension, so that tests can run the baseline
    /// NEON int8 kernels on a CPU that has it.
    #[cfg(test)]
    #[cfg_attr(
        not(all(target_arch = "aarch64", target_feature = "neon")),
        allow(dead_code)
    )]
    pub(crate) fn without_dotprod(self) -> Neon {
        Neon { dotprod: false }
    }
}

impl Avx512 {
    /// The AVX2 proof implied by this one (detection requires AVX2 and FMA for AVX-512).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    #[inline]
    pub(crate) fn avx2(self) -> Avx2 {
        Avx2 { vnni: false }
    }

    /// The VBMI proof, if detection found VBMI as well.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    #[inline]
    pub(crate) fn vbmi(self) -> Option<Avx512Vbmi> {
        self.vbmi.then_some(Avx512Vbmi { _detected: () })
    }

    /// The VNNI proof, if detection found AVX-512 VNNI as well.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    #[inline]
    pub(crate) fn vnni(self) -> Option<Avx512Vnni> {
        self.vnni.then_some(Avx512Vnni { _detected: () })
    }
}

/// A path as a value to match on; the SIMD variants hold their proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Path {
    /// The reference loops.
    Scalar,
    /// Portable: eight codes per `u64` word, then a table lookup per code.
    Swar,
    /// x86-64 AVX2 and FMA.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2(Avx2),
    /// x86-64 AVX-512 F, BW and VL (with AVX2 and FMA).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx512(Avx512),
    /// AArch64 Advanced SIMD.
    #[cfg_attr(
        not(all(target_arch = "aarch64", target_feature = "neon")),
        allow(dead_code)
    )]
    Neon(Neon),
}

/// A code path this CPU runs: the scalar reference, the portable word-at-a-time path, or a
/// SIMD instruction set that detection found.
///
/// A value is proof that the CPU runs the path: only [`Isa::detect`] and [`Isa::available`]
/// return a SIMD path, so handing one to `kernels::decode_with` or `pack::pack_with` never
/// runs instructions the CPU lacks.
///
/// ```
/// use expquant::kernels::{Isa, IsaKind};
/// let fastest = Isa::detect();
/// assert!(Isa::available().any(|isa| isa == fastest));
/// assert_eq!(Isa::scalar().kind(), IsaKind::Scalar);
/// println!("decoding on {fastest}");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Isa(Path);

/// The name of a path, for display and for comparing without the proof an [`Isa`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum IsaKind {
    /// The reference loops, one code at a time.
    Scalar,
    /// Portable: eight codes per `u64` word, then a table lookup per code.
    Swar,
    /// x86-64 AVX2 and FMA.
    Avx2,
    /// x86-64 AVX-512 F, BW and VL (with AVX2 and FMA).
    Avx512,
    /// AArch64 Advanced SIMD (NEON).
    Neon,
}

impl IsaKind {
    /// The lowercase name: `scalar`, `swar`, `avx2`, `avx512` or `neon`.
    pub fn name(self) -> &'static str {
        match self {
            IsaKind::Scalar => "scalar",
            IsaKind::Swar => "swar",
            IsaKind::Avx2 => "avx2",
            IsaKind::Avx512 => "avx512",
            IsaKind::Neon => "neon",
        }
    }
}

impl fmt::Display for IsaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Detection's answer, cached: 0 until detection ran, then one of the `STATE_*` codes (for
/// AVX2, AVX-512 and NEON, with the `FLAG_*` bits of the extensions found beside it: VNNI
/// means AVX-VNNI on the AVX2 path and AVX-512 VNNI on the AVX-512 path, DOTPROD the dot
/// product extension on the NEON path).
static DETECTED: AtomicU8 = AtomicU8::new(0);
// A NEON target never reports the portable path.
#[cfg_attr(
    all(target_arch = "aarch64", target_feature = "neon"),
    allow(dead_code)
)]
const STATE_SWAR: u8 = 1;
const STATE_AVX2: u8 = 2;
const STATE_AVX512: u8 = 3;
const STATE_NEON: u8 = 5;
const STATE_MASK: u8 = 0x0f;
const FLAG_VBMI: u8 = 0x10;
const FLAG_VNNI: u8 = 0x20;
const FLAG_DOTPROD: u8 = 0x40;

impl Isa {
    /// The fastest path this CPU runs. With `std` detected at run time on first use and
    /// cached; without it, from the target features the crate was compiled with.
    #[inline]
    pub fn detect() -> Isa {
        let state = match DETECTED.load(Ordering::Relaxed) {
            0 => {
                let state = probe();
                DETECTED.store(state, Ordering::Relaxed);
                state
            }
            state => state,
        };
        Isa(from_state(state))
    }

    /// The portable word-at-a-time path, which every CPU runs.
    #[inline]
    pub fn portable() -> Isa {
        Isa(Path::Swar)
    }

    /// The scalar reference, one code at a time: the definition every other path is tested
    /// against.
    #[inline]
    pub fn scalar() -> Isa {
        Isa(Path::Scalar)
    }

    /// Every path this CPU runs, slowest first: the scalar reference, the portable path,
    /// then each detected instruction set (on an AVX-512 CPU also AVX2). For tests and
    /// benchmarks that compare paths.
    pub fn available() -> impl Iterator<Item = Isa> {
        let fastest = Isa::detect().0;
        let simd: [Option<Path>; 2] = match fastest {
            Path::Avx512(t) => [Some(Path::Avx2(t.avx2())), Some(fastest)],
            Path::Avx2(_) | Path::Neon(_) => [Some(fastest), None],
            Path::Scalar | Path::Swar => [None, None],
        };
        [Some(Path::Scalar), Some(Path::Swar)]
            .into_iter()
            .chain(simd)
            .flatten()
            .map(Isa)
    }

    /// Which path this is.
    pub fn kind(self) -> IsaKind {
        match self.0 {
            Path::Scalar => IsaKind::Scalar,
            Path::Swar => IsaKind::Swar,
            Path::Avx2(_) => IsaKind::Avx2,
            Path::Avx512(_) => IsaKind::Avx512,
            Path::Neon(_) => IsaKind::Neon,
        }
    }

    /// Whether this is the AVX-512 path on a CPU that also has VBMI (byte permutes), which
    /// the 8-bit dot product, `pack::pack` and `pack::unpack` use.
    pub fn has_vbmi(self) -> bool {
        matches!(self.0, Path::Avx512(t) if t.vbmi)
    }

    /// The path's name: the [`IsaKind`] name, then `+vbmi` where [`has_vbmi`](Self::has_vbmi)
    /// and `+vnni` where [`has_vnni`](Self::has_vnni), such as `avx2`, `avx2+vnni` or
    /// `avx512+vbmi+vnni`, and `neon+dotprod` for NEON on a CPU with the dot product
    /// extension (which the int8-activation GEMV sums with). For logs and benchmark reports
    /// that say which kernels ran.
    ///
    /// ```
    /// use expquant::kernels::Isa;
    /// let name = Isa::detect().name();
    /// assert!(name.starts_with(Isa::detect().kind().name()));
    /// assert_eq!(Isa::scalar().name(), "scalar");
    /// ```
    pub fn name(self) -> &'static str {
        let name = self.name_nul();
        &name[..name.len() - 1]
    }

    /// [`name`](Self::name) with a NUL byte at the end, for the C ABI.
    pub(crate) fn name_nul(self) -> &'static str {
        match (self.kind(), self.has_vbmi(), self.has_vnni()) {
            (IsaKind::Scalar, ..) => "scalar\0",
            (IsaKind::Swar, ..) => "swar\0",
            (IsaKind::Avx2, _, false) => "avx2\0",
            (IsaKind::Avx2, _, true) => "avx2+vnni\0",
            (IsaKind::Avx512, false, false) => "avx512\0",
            (IsaKind::Avx512, true, false) => "avx512+vbmi\0",
            (IsaKind::Avx512, false, true) => "avx512+vnni\0",
            (IsaKind::Avx512, true, true) => "avx512+vbmi+vnni\0",
            (IsaKind::Neon, ..) => match self.0 {
                Path::Neon(t) if t.dotprod => "neon+dotprod\0",
                _ => "neon\0",
            },
        }
    }

    /// Whether this path sums the int8-activation GEMV's byte products with `vpdpbusd`: the
    /// AVX-512 path on a CPU with AVX-512 VNNI, or the AVX2 path on a CPU with AVX-VNNI and
    /// no AVX-512. The results are the same bits as with AVX2's instructions: both sum the
    /// same products exactly in integers.
    pub fn has_vnni(self) -> bool {
        match self.0 {
            Path::Avx512(t) => t.vnni,
            Path::Avx2(t) => t.vnni,
            _ => false,
        }
    }

    /// This path, or the AVX2 path in place of AVX-512 (which implies it): for the kernels
    /// that exist for AVX2 only and want their data in its layout.
    #[inline]
    pub(crate) fn without_avx512(self) -> Isa {
        match self.0 {
            Path::Avx512(t) => Isa(Path::Avx2(t.avx2())),
            path => Isa(path),
        }
    }

    /// The path with its proof, for the dispatching code to match on.
    #[inline]
    pub(crate) fn path(self) -> Path {
        self.0
    }

    /// The AVX2 proof this path carries or implies (detection requires AVX2 and FMA for
    /// AVX-512), for the kernels AVX-512 machines run in their AVX2 form; `None` on the
    /// other paths.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub(crate) fn avx2(self) -> Option<Avx2> {
        match self.0 {
            Path::Avx2(t) => Some(t),
            Path::Avx512(t) => Some(t.avx2()),
            _ => None,
        }
    }

    /// The AVX-512 VNNI proof, on the AVX-512 path of a CPU that has VNNI; `None` on the
    /// other paths (the AVX2 path of such a CPU included, so that tests can compare the two).
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub(crate) fn avx512_vnni(self) -> Option<Avx512Vnni> {
        match self.0 {
            Path::Avx512(t) => t.vnni(),
            _ => None,
        }
    }

    /// The AVX-VNNI proof, on the AVX2 path of a CPU that has AVX-VNNI and no AVX-512;
    /// `None` on the other paths.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub(crate) fn avx_vnni(self) -> Option<AvxVnni> {
        match self.0 {
            Path::Avx2(t) => t.vnni(),
            _ => None,
        }
    }
}

impl fmt::Debug for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// [`Isa::name`].
impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The path a cached detection state names. The proofs are built here and in [`probe`]
/// only, from what the CPU reported.
#[inline]
fn from_state(state: u8) -> Path {
    match state & STATE_MASK {
        STATE_AVX2 => Path::Avx2(Avx2 {
            vnni: state & FLAG_VNNI != 0,
        }),
        STATE_AVX512 => Path::Avx512(Avx512 {
            vbmi: state & FLAG_VBMI != 0,
            vnni: state & FLAG_VNNI != 0,
        }),
        STATE_NEON => Path::Neon(Neon {
            dotprod: state & FLAG_DOTPROD != 0,
        }),
        _ => Path::Swar,
    }
}

/// Asks the CPU (with `std`) or the target (without) which instruction sets it has.
fn probe() -> u8 {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx2 = has!("avx2") && has!("fma");
        if avx2 && has!("avx512f") && has!("avx512bw") && has!("avx512vl") {
            let vbmi = if has!("avx512vbmi") { FLAG_VBMI } else { 0 };
            let vnni = if has!("avx512vnni") { FLAG_VNNI } else { 0 };
            return STATE_AVX512 | vbmi | vnni;
        }
        if avx2 {
            return STATE_AVX2 | if has!("avxvnni") { FLAG_VNNI } else { 0 };
        }
    }
    #[cfg(all(not(feature = "std"), target_arch = "x86_64"))]
    {
        // Without `std` there is no run-time detection: trust what the build targets.
        if cfg!(all(
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vl"
        )) {
            let vbmi = if cfg!(target_feature = "avx512vbmi") {
                FLAG_VBMI
            } else {
                0
            };
            let vnni = if cfg!(target_feature = "avx512vnni") {
                FLAG_VNNI
            } else {
                0
            };
            return STATE_AVX512 | vbmi | vnni;
        }
        if cfg!(all(target_feature = "avx2", target_feature = "fma")) {
            let vnni = if cfg!(target_feature = "avxvnni") {
                FLAG_VNNI
            } else {
                0
            };
            return STATE_AVX2 | vnni;
        }
    }
    // Every AArch64 CPU a `neon` target runs on has it: only its dot product extension is
    // detected (with `std`) or taken from the build's target features (without).
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    let state = {
        #[cfg(feature = "std")]
        let dotprod = std::arch::is_aarch64_feature_detected!("dotprod");
        #[cfg(not(feature = "std"))]
        let dotprod = cfg!(target_feature = "dotprod");
        STATE_NEON | if dotprod { FLAG_DOTPROD } else { 0 }
    };
    #[cfg(not(all(target_arch = "aarch64", target_feature = "neon")))]
    let state = STATE_SWAR;
    state
}
