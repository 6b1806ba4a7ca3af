//! CRC-32 (IEEE 802.3 polynomial, reflected, as zlib's `crc32`).
//!
//! With `std` it is computed by `crc32fast`, which uses carry-less multiplication (x86
//! PCLMULQDQ) or the ARMv8 CRC instructions where present and a 16 KB table otherwise.
//! Without `std` — firmware, where flash is scarcer than checksum speed — it is computed a
//! byte at a time through one 1 KB table built at compile time (`small`).

/// A running CRC-32.
#[cfg(feature = "std")]
pub(crate) struct Crc32(crc32fast::Hasher);

#[cfg(feature = "std")]
impl Crc32 {
    pub fn new() -> Self {
        Crc32(crc32fast::Hasher::new())
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(&self) -> u32 {
        self.0.clone().finalize()
    }
}

/// CRC-32 of `bytes` (IEEE 802.3 polynomial, reflected, as zlib's `crc32`).
#[cfg(feature = "std")]
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// A running CRC-32: the register, before the final inversion.
#[cfg(not(feature = "std"))]
pub(crate) struct Crc32(u32);

#[cfg(not(feature = "std"))]
impl Crc32 {
    pub fn new() -> Self {
        Crc32(small::INIT)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0 = small::update(self.0, bytes);
    }

    pub fn finish(&self) -> u32 {
        !self.0
    }
}

/// CRC-32 of `bytes` (IEEE 802.3 polynomial, reflected, as zlib's `crc32`).
#[cfg(not(feature = "std"))]
pub fn crc32(bytes: &[u8]) -> u32 {
    !small::update(small::INIT, bytes)
}

/// The table-driven CRC-32 of builds without `std`: 256 entries of 4 bytes.
#[cfg_attr(feature = "std", allow(dead_code))] // with `std` only the tests use it
mod small {
    /// The reflected IEEE 802.3 polynomial.
    const POLY: u32 = 0xEDB8_8320;

    /// The register before the first byte.
    pub(super) const INIT: u32 = 0xFFFF_FFFF;

    /// `TABLE[b]`: the register change that byte value `b` causes, eight bit steps at once.
    static TABLE: [u32; 256] = table();

    const fn table() -> [u32; 256] {
        let mut table = [0u32; 256];
        let mut b = 0;
        while b < 256 {
            let mut c = b as u32;
            let mut bit = 0;
            while bit < 8 {
                c = if c & 1 != 0 { POLY ^ (c >> 1) } else { c >> 1 };
                bit += 1;
            }
            table[b] = c;
            b += 1;
        }
        table
    }

    /// The register after `bytes`, from `register`.
    pub(super) fn update(register: u32, bytes: &[u8]) -> u32 {
        bytes.iter().fold(register, |c, &b| {
            TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
        })
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;

    /// A bitwise reference: the polynomial applied one bit at a time.
    fn reference(bytes: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    fn data() -> alloc::vec::Vec<u8> {
        (0..4099u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    #[test]
    fn matches_the_bitwise_reference_and_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let data = data();
        for len in [0, 1, 15, 16, 63, 64, 65, 255, 1024, 4099] {
            assert_eq!(crc32(&data[..len]), reference(&data[..len]), "length {len}");
            let mut split = Crc32::new();
            split.update(&data[..len / 3]);
            split.update(&data[len / 3..len]);
            assert_eq!(split.finish(), reference(&data[..len]));
        }
    }

    /// The table path of builds without `std` equals `crc32fast`, whole and in pieces.
    #[test]
    fn the_small_table_path_equals_crc32fast() {
        assert_eq!(!small::update(small::INIT, b"123456789"), 0xCBF4_3926);
        let data = data();
        for len in [0, 1, 3, 15, 16, 17, 63, 64, 65, 255, 1024, 4099] {
            let whole = !small::update(small::INIT, &data[..len]);
            assert_eq!(whole, crc32fast::hash(&data[..len]), "length {len}");
            let first = small::update(small::INIT, &data[..len / 2]);
            let split = !small::update(first, &data[len / 2..len]);
            assert_eq!(split, whole, "length {len} in two pieces");
        }
    }
}
