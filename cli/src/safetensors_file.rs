//! `.safetensors` input, read one tensor at a time so that memory stays bounded by the
//! largest tensor rather than the file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, Metadata, TensorView};

use crate::error::{Context, Error, Result};

/// One tensor's place in the file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// Its dtype.
    pub dtype: Dtype,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

/// An opened `.safetensors` file: the header parsed, no tensor data read yet.
#[derive(Debug, Clone)]
pub struct SafetensorsFile {
    path: PathBuf,
    /// Tensors in file order.
    pub entries: Vec<Entry>,
    /// The `__metadata__` strings.
    pub metadata: Option<std::collections::HashMap<String, String>>,
}

/// The largest header accepted (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100_000_000;

impl SafetensorsFile {
    /// Reads and checks the header.
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).context(format!("cannot open {}", path.display()))?;
        let file_len = file.metadata()?.len();
        let mut n = [0u8; 8];
        file.read_exact(&mut n)
            .context(format!("{}: truncated safetensors header", path.display()))?;
        let header_len = u64::from_le_bytes(n);
        if header_len > MAX_HEADER || 8 + header_len > file_len {
            bail!(
                "{}: not a safetensors file (header length {header_len} does not fit the {file_len}-byte file)",
                path.display()
            );
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header)?;
        let metadata: Metadata = serde_json::from_slice(&header)
            .context(format!("{}: bad safetensors header", path.display()))?;
        let data_start = 8 + header_len;
        let mut entries: Vec<Entry> = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| {
                let (begin, end) = info.data_offsets;
                Entry {
                    name,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start: data_start + begin as u64,
                    len: end.saturating_sub(begin) as u64,
                }
            })
            .collect();
        entries.sort_by_key(|e| e.start);
        for e in &entries {
            let count: Option<usize> = e.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            let expected = count.and_then(|c| c.checked_mul(e.dtype.size()));
            if expected != Some(e.len as usize) || e.start + e.len > file_len {
                bail!(
                    "{}: tensor '{}' of shape {:?} ({:?}) does not match its {} stored bytes",
                    path.display(),
                    e.name,
                    e.shape,
                    e.dtype,
                    e.len
                );
            }
        }
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            entries,
            metadata: metadata.metadata().clone(),
        })
    }

    /// The raw bytes of one tensor.
    pub fn raw(&self, entry: &Entry) -> Result<Vec<u8>> {
        let mut file =
            File::open(&self.path).context(format!("cannot open {}", self.path.display()))?;
        file.seek(SeekFrom::Start(entry.start))?;
        let mut bytes = vec![0u8; entry.len as usize];
        file.read_exact(&mut bytes).context(format!(
            "{}: reading '{}'",
            self.path.display(),
            entry.name
        ))?;
        Ok(bytes)
    }

    /// One tensor converted to `f32`; an error names the tensor when its dtype is not a float.
    pub fn load_f32(&self, entry: &Entry) -> Result<Vec<f32>> {
        let bytes = self.raw(entry)?;
        to_f32(entry.dtype, &bytes).map_err(|e| e.context(format!("tensor '{}'", entry.name)))
    }
}

/// Whether a dtype can be quantized.
pub fn is_float(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64)
}

/// Little-endian float bytes to `f32`.
pub fn to_f32(dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    Ok(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("chunks of 8")) as f32)
            .collect(),
        other => {
            return Err(Error::msg(format!(
                "unsupported dtype {other:?} (expected F32, F16, BF16 or F64)"
            )))
        }
    })
}

/// Serializes tensors, as stored, into a safetensors file's bytes.
pub fn serialize(
    tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)],
    metadata: &Option<std::collections::HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.as_str(), v))
                .map_err(|e| Error::msg(format!("tensor '{name}': {e:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, metadata)
        .map_err(|e| Error::msg(format!("cannot write the sidecar: {e:?}")))
}
