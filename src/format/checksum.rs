//! CRC-32 (IEEE 802.3 polynomial, reflected, as zlib's `crc32`), computed by `crc32fast`,
//! which uses carry-less multiplication (x86 PCLMULQDQ) or the ARMv8 CRC instructions where
//! present and a table otherwise.

/// A running CRC-32.
pub(crate) struct Crc32(crc32fast::Hasher);

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
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(test)]
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

    #[test]
    fn matches_the_bitwise_reference_and_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let data: alloc::vec::Vec<u8> = (0..4099u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [0, 1, 15, 16, 63, 64, 65, 255, 1024, 4099] {
            assert_eq!(crc32(&data[..len]), reference(&data[..len]), "length {len}");
            let mut split = Crc32::new();
            split.update(&data[..len / 3]);
            split.update(&data[len / 3..len]);
            assert_eq!(split.finish(), reference(&data[..len]));
        }
    }
}
