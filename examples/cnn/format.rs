//! The `EXQM` weight file (layout documented in `data/README.md`).
//!
//! Parsing never trusts a length field: every count is checked against the bytes that are
//! actually left before anything is allocated, so a corrupt or hostile file yields an error
//! rather than a panic or a huge allocation.

use super::model::Model;
use super::ModelError;

pub const MAGIC: &[u8; 4] = b"EXQM";
pub const VERSION: u32 = 1;

/// One named tensor as stored in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub name: String,
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

/// Serialises the model: for each layer, `<layer>.weight` then `<layer>.bias`.
pub fn to_bytes(model: &Model) -> Vec<u8> {
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
    for l in model.layers() {
        tensors.push((format!("{}.weight", l.name), l.dims.clone(), &l.weight.data));
        tensors.push((format!("{}.bias", l.name), vec![l.bias.len()], &l.bias));
    }
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, VERSION);
    put_u32(&mut out, tensors.len() as u32);
    for (name, dims, data) in tensors {
        put_u32(&mut out, name.len() as u32);
        out.extend_from_slice(name.as_bytes());
        put_u32(&mut out, dims.len() as u32);
        for d in dims {
            put_u32(&mut out, d as u32);
        }
        for v in data {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ModelError> {
        if self.bytes.len() < n {
            return Err(ModelError::Format(format!(
                "truncated while reading {what}"
            )));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self, what: &str) -> Result<u32, ModelError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Parses the container without interpreting tensor names.
pub fn parse(bytes: &[u8]) -> Result<Vec<RawTensor>, ModelError> {
    let mut r = Reader { bytes };
    if r.take(4, "magic")? != MAGIC {
        return Err(ModelError::Format("bad magic (expected \"EXQM\")".into()));
    }
    let version = r.u32("version")?;
    if version != VERSION {
        return Err(ModelError::Format(format!("unsupported version {version}")));
    }
    let count = r.u32("tensor count")? as usize;
    let mut tensors = Vec::new();
    for i in 0..count {
        let name_len = r.u32("name length")? as usize;
        let name = std::str::from_utf8(r.take(name_len, "name")?)
            .map_err(|_| ModelError::Format(format!("tensor {i}: name is not UTF-8")))?
            .to_owned();
        let ndim = r.u32("ndim")? as usize;
        // Each dimension needs four bytes, so this also bounds the Vec below.
        if ndim > r.bytes.len() / 4 {
            return Err(ModelError::Format(format!(
                "tensor {name:?}: truncated dims"
            )));
        }
        let mut dims = Vec::with_capacity(ndim);
        let mut elems = 1usize;
        for _ in 0..ndim {
            let d = r.u32("dim")? as usize;
            elems = elems
                .checked_mul(d)
                .ok_or_else(|| ModelError::Format(format!("tensor {name:?}: size overflows")))?;
            dims.push(d);
        }
        let byte_len = elems
            .checked_mul(4)
            .ok_or_else(|| ModelError::Format(format!("tensor {name:?}: size overflows")))?;
        let raw = r.take(byte_len, "tensor data")?;
        let data: Vec<f32> = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if data.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::Format(format!(
                "tensor {name:?}: non-finite value"
            )));
        }
        tensors.push(RawTensor { name, dims, data });
    }
    if !r.bytes.is_empty() {
        return Err(ModelError::Format(format!(
            "{} trailing bytes",
            r.bytes.len()
        )));
    }
    Ok(tensors)
}

/// Parses a weight file and checks it holds exactly the tensors of [`Model`] with the right
/// shapes (in any order).
pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
    let mut tensors = parse(bytes)?;
    let mut model = Model::zeros();
    let expected = 2 * model.layers().len();
    if tensors.len() != expected {
        return Err(ModelError::Format(format!(
            "expected {expected} tensors, found {}",
            tensors.len()
        )));
    }
    for layer in model.layers_mut() {
        let bias_dims = vec![layer.bias.len()];
        layer.weight.data =
            take_tensor(&mut tensors, &format!("{}.weight", layer.name), &layer.dims)?;
        layer.bias = take_tensor(&mut tensors, &format!("{}.bias", layer.name), &bias_dims)?;
    }
    // Exactly `expected` tensors and every expected name removed once, so nothing is left.
    debug_assert!(tensors.is_empty());
    Ok(model)
}

fn take_tensor(
    tensors: &mut Vec<RawTensor>,
    name: &str,
    dims: &[usize],
) -> Result<Vec<f32>, ModelError> {
    let pos = tensors
        .iter()
        .position(|t| t.name == name)
        .ok_or_else(|| ModelError::Format(format!("missing tensor {name:?}")))?;
    let t = tensors.swap_remove(pos);
    if t.dims != dims {
        return Err(ModelError::Format(format!(
            "tensor {name:?}: shape {:?}, expected {dims:?}",
            t.dims
        )));
    }
    Ok(t.data)
}
