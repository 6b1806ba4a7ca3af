//! The UCI handwritten-digits set, embedded from `data/digits.bin` (format in
//! `data/README.md`).

use super::model::PIXELS;
use super::ModelError;

/// Bytes per record: 64 pixels then the label.
pub const RECORD: usize = PIXELS + 1;
pub const SAMPLES: usize = 1797;
/// The last `TEST_SAMPLES` records form the test split; the rest are for training.
pub const TEST_SAMPLES: usize = 360;
pub const TRAIN_SAMPLES: usize = SAMPLES - TEST_SAMPLES;

static DIGITS_BIN: &[u8] = include_bytes!("../../data/digits.bin");

/// The raw `digits.bin` records.
pub fn digits_bin() -> &'static [u8] {
    DIGITS_BIN
}

/// Images scaled to 0..=1 (pixel / 16), flattened row-major, with their labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub images: Vec<[f32; PIXELS]>,
    pub labels: Vec<u8>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Parses records in the `digits.bin` format, rejecting anything out of range.
    pub fn parse(bytes: &[u8]) -> Result<Self, ModelError> {
        if !bytes.len().is_multiple_of(RECORD) {
            return Err(ModelError::Dataset(format!(
                "length {} is not a multiple of {RECORD}",
                bytes.len()
            )));
        }
        let mut images = Vec::with_capacity(bytes.len() / RECORD);
        let mut labels = Vec::with_capacity(bytes.len() / RECORD);
        for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
            let (pixels, label) = rec.split_at(PIXELS);
            if let Some(&p) = pixels.iter().find(|&&p| p > 16) {
                return Err(ModelError::Dataset(format!(
                    "record {i}: pixel value {p} > 16"
                )));
            }
            if label[0] > 9 {
                return Err(ModelError::Dataset(format!(
                    "record {i}: label {} > 9",
                    label[0]
                )));
            }
            let mut img = [0.0f32; PIXELS];
            for (dst, &p) in img.iter_mut().zip(pixels) {
                *dst = f32::from(p) / 16.0;
            }
            images.push(img);
            labels.push(label[0]);
        }
        Ok(Dataset { images, labels })
    }

    fn slice(&self, range: std::ops::Range<usize>) -> Self {
        Dataset {
            images: self.images[range.clone()].to_vec(),
            labels: self.labels[range].to_vec(),
        }
    }
}

/// The fixed split: first 1437 records train, last 360 test, in file order.
pub fn digits() -> Result<(Dataset, Dataset), ModelError> {
    let all = Dataset::parse(DIGITS_BIN)?;
    if all.len() != SAMPLES {
        return Err(ModelError::Dataset(format!(
            "expected {SAMPLES} records, found {}",
            all.len()
        )));
    }
    Ok((
        all.slice(0..TRAIN_SAMPLES),
        all.slice(TRAIN_SAMPLES..SAMPLES),
    ))
}
