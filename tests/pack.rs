//! Bit-packing: round trips, the documented byte layout, and errors.
use expquant::pack::{pack, pack_to_vec, packed_len, unpack, unpack_to_vec};
use expquant::Error;
use proptest::prelude::*;

fn codes_and_bits() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (1u8..=8).prop_flat_map(|bits| {
        let max = ((1u16 << bits) - 1) as u8;
        (Just(bits), prop::collection::vec(0..=max, 0..=2000))
    })
}

proptest! {
    #[test]
    fn pack_then_unpack_is_the_identity((bits, codes) in codes_and_bits()) {
        let packed = pack_to_vec(&codes, bits).unwrap();
        prop_assert_eq!(packed.len(), (codes.len() * bits as usize).div_ceil(8));
        let back = unpack_to_vec(&packed, bits, codes.len()).unwrap();
        prop_assert_eq!(&back, &codes);
    }

    #[test]
    fn packed_bits_follow_the_lsb_first_stream((bits, codes) in codes_and_bits()) {
        // Reference: write each code bit by bit into the stream.
        let mut reference = vec![0u8; packed_len(codes.len(), bits).unwrap()];
        for (i, &c) in codes.iter().enumerate() {
            for b in 0..bits as usize {
                if c >> b & 1 == 1 {
                    let k = i * bits as usize + b;
                    reference[k / 8] |= 1 << (k % 8);
                }
            }
        }
        prop_assert_eq!(pack_to_vec(&codes, bits).unwrap(), reference);
    }
}

#[test]
fn four_bit_layout_puts_even_elements_in_the_low_nibble() {
    let packed = pack_to_vec(&[0x1, 0xA, 0x3, 0xF, 0x7], 4).unwrap();
    assert_eq!(packed, [0xA1, 0xF3, 0x07]);
    assert_eq!(
        pack_to_vec(&[1, 0, 1, 1, 0, 0, 0, 1, 1], 1).unwrap(),
        [0b1000_1101, 0b1]
    );
    assert_eq!(
        pack_to_vec(&[3, 0, 2, 1, 3], 2).unwrap(),
        [0b01_10_00_11, 0b11]
    );
}

#[test]
fn empty_input_packs_to_nothing() {
    for bits in 1..=8 {
        assert!(pack_to_vec(&[], bits).unwrap().is_empty());
        assert!(unpack_to_vec(&[], bits, 0).unwrap().is_empty());
    }
}

#[test]
fn bad_arguments_are_errors() {
    assert_eq!(pack_to_vec(&[1], 0), Err(Error::InvalidBits(0)));
    assert_eq!(pack_to_vec(&[1], 9), Err(Error::InvalidBits(9)));
    assert_eq!(
        pack_to_vec(&[0, 4], 2),
        Err(Error::CodeOutOfRange {
            index: 1,
            code: 4,
            limit: 4
        })
    );
    let mut small = [0u8; 1];
    assert!(matches!(
        pack(&[1, 2, 3], 4, &mut small),
        Err(Error::BufferLength {
            expected: 2,
            actual: 1,
            ..
        })
    ));
    let mut out = [0u8; 3];
    assert!(matches!(
        unpack(&[0u8; 1], 4, &mut out),
        Err(Error::BufferLength {
            expected: 2,
            actual: 1,
            ..
        })
    ));
    assert_eq!(packed_len(usize::MAX, 8), None);
}
