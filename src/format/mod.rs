#![doc = include_str!("../../FORMAT.md")]
//!
//! ## In this module
//! The byte-layout constants below and [`crc32`]. Tensors are read with
//! `QuantizedView::from_bytes` and written with `QuantizedTensor::write_into`; containers are
//! read with `ContainerView` and written with `write_container` (all at the crate root). The
//! code here knows the bytes only: it reads and writes a tensor's parts (shape, family,
//! granularity, rule, codes, parameters) and a container's table, never a tensor type.

mod checksum;
pub(crate) mod container;
mod header;

pub use checksum::crc32;
pub(crate) use header::{parse_tensor, verify_checksum_with};
#[cfg(feature = "alloc")]
pub(crate) use header::{tensor_len, write_tensor};

use crate::error::{Error, Result};

/// Magic bytes of a stored tensor.
pub const TENSOR_MAGIC: [u8; 4] = *b"EXQT";
/// Magic bytes of a container of named tensors.
pub const CONTAINER_MAGIC: [u8; 4] = *b"EXQC";
/// The newest tensor format version this crate writes and reads; it reads every version from
/// 1 up to this one. It writes version 1 for tensors with `f32` group parameters (the bytes
/// earlier builds wrote) and version 2 only for compact parameters. Independent of
/// [`CONTAINER_VERSION`].
pub const FORMAT_VERSION: u16 = 2;
/// The container format version this crate writes; it reads every version from 1 up to this
/// one. Independent of the tensor version [`FORMAT_VERSION`].
pub const CONTAINER_VERSION: u16 = 2;
/// Bytes before a tensor's payload.
pub const HEADER_LEN: usize = 64;
/// Entries inside a container start at multiples of this.
pub const CONTAINER_ALIGN: usize = 64;
/// The longest tensor name a container accepts.
pub const MAX_NAME_LEN: usize = 1024;

fn corrupt<T>(reason: &'static str) -> Result<T> {
    Err(Error::Corrupt(reason))
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn to_usize(v: u64, reason: &'static str) -> Result<usize> {
    usize::try_from(v).or_else(|_| corrupt(reason))
}

/// The version, if this build reads it (1 up to [`FORMAT_VERSION`]).
fn check_version(version: u16) -> Result<u16> {
    if (1..=FORMAT_VERSION).contains(&version) {
        Ok(version)
    } else {
        Err(Error::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        })
    }
}
