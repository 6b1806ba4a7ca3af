//! Which tensors are quantized, and with which settings: the default rule, `--include` /
//! `--exclude` patterns and the per-tensor overrides file.

use std::path::Path;

use serde::Deserialize;

use crate::engine::{self, Settings};
use crate::error::{Context, Error, Result};

/// Matches `name` against a pattern where `*` stands for any run of characters (possibly
/// empty) and every other character for itself.
pub fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Greedy match with backtracking to the most recent `*`: linear in practice.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Name fragments of tensors that stay in floating point by default: lookup tables and
/// normalization parameters do not feed a multiply whose error averages out.
const KEPT_BY_NAME: &[&str] = &["embed", "norm", "wte", "wpe", "ln_", "position"];

/// Why a tensor is or is not quantized by default, given its name and shape. Tensors that
/// are at least 2-D feed a multiply (dense and convolution weights); 1-D tensors (biases,
/// norms) and embeddings stay as they are.
pub fn default_choice(name: &str, shape: &[usize]) -> std::result::Result<(), &'static str> {
    if shape.len() < 2 {
        return Err("fewer than 2 dimensions");
    }
    if shape.contains(&0) {
        return Err("empty");
    }
    let lower = name.to_ascii_lowercase();
    if KEPT_BY_NAME.iter().any(|k| lower.contains(k)) {
        return Err("embedding or normalization (by name)");
    }
    Ok(())
}

/// One entry of an overrides file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// A tensor name or a pattern with `*`.
    #[serde(rename = "match")]
    pub pattern: String,
    /// `false` keeps the tensor in floating point, `true` quantizes it even when the default
    /// rule would not.
    pub quantize: Option<bool>,
    /// Bit width (also fixes the width under `--target-bpw`).
    pub bits: Option<u8>,
    /// `exponential` or `linear`.
    pub scheme: Option<String>,
    /// `tensor`, `row` or `group:G`.
    pub granularity: Option<String>,
    /// `max-abs`, `mse`, `correlation` or `output-mse`.
    pub scale_rule: Option<String>,
}

/// A TOML overrides file: `[[override]]` tables, the same fields as a JSON entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlOverrides {
    #[serde(rename = "override", default)]
    entries: Vec<Override>,
}

/// The overrides file: [`Override`]s applied in order (a later match wins), from a JSON
/// array of objects or a TOML file of `[[override]]` tables.
#[derive(Debug, Clone, Default)]
pub struct Overrides(Vec<Override>);

impl Overrides {
    /// Reads and checks an overrides file, `.toml` or `.json` (any other extension is read as
    /// JSON). An unknown key is an error that names it.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .context(format!("cannot read overrides file {}", path.display()))?;
        let is_toml = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        let list: Vec<Override> = if is_toml {
            toml::from_str::<TomlOverrides>(&text)
                .map(|t| t.entries)
                .context(format!(
                    "overrides file {} (expected [[override]] tables with match = \"PATTERN\")",
                    path.display()
                ))?
        } else {
            serde_json::from_str(&text).context(format!(
                "overrides file {} (expected a JSON array of objects with \"match\")",
                path.display()
            ))?
        };
        let overrides = Overrides(list);
        // Parse every setting once so that a typo fails before any work is done.
        for o in &overrides.0 {
            let base = Settings {
                scheme: engine::parse_scheme("exponential")?,
                bits: 4,
                granularity: engine::parse_granularity("row")?,
                rule: engine::parse_scale_rule("max-abs")?,
            };
            apply(o, base).map_err(|e| e.context(format!("override for '{}'", o.pattern)))?;
        }
        Ok(overrides)
    }

    /// The settings and quantize decision for `name`, starting from the defaults.
    pub fn resolve(
        &self,
        name: &str,
        quantize: bool,
        settings: Settings,
    ) -> Result<(bool, Settings, bool)> {
        let (mut quantize, mut settings, mut fixed_bits) = (quantize, settings, false);
        for o in self.0.iter().filter(|o| glob(&o.pattern, name)) {
            if let Some(q) = o.quantize {
                quantize = q;
            }
            fixed_bits |= o.bits.is_some();
            settings = apply(o, settings)?;
        }
        Ok((quantize, settings, fixed_bits))
    }
}

fn apply(o: &Override, mut s: Settings) -> Result<Settings> {
    if let Some(bits) = o.bits {
        s.bits = bits;
    }
    if let Some(name) = &o.scheme {
        s.scheme = engine::parse_scheme(name)?;
    }
    if let Some(name) = &o.granularity {
        s.granularity = engine::parse_granularity(name)?;
    }
    if let Some(name) = &o.scale_rule {
        s.rule = engine::parse_scale_rule(name)?;
    }
    s.validate()?;
    Ok(s)
}

/// The selection rules of one run.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--include` patterns: matching tensors are quantized whatever the default says.
    pub include: Vec<String>,
    /// `--exclude` patterns: matching tensors are kept (wins over `--include`).
    pub exclude: Vec<String>,
    /// The overrides file (wins over both).
    pub overrides: Overrides,
}

/// The decision for one tensor.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Quantize with these settings; `fixed_bits` when an override named the width.
    Quantize {
        /// The settings.
        settings: Settings,
        /// Whether `--target-bpw` may change the width.
        fixed_bits: bool,
    },
    /// Keep in floating point, for this reason.
    Keep(String),
}

impl Selection {
    /// Decides one tensor. `eligible` is the format's own verdict (for ONNX: whether the
    /// tensor is a Conv/Gemm/MatMul weight), which patterns cannot override.
    pub fn decide(
        &self,
        name: &str,
        shape: &[usize],
        eligible: std::result::Result<(), String>,
        base: Settings,
    ) -> Result<Decision> {
        if let Err(reason) = eligible {
            return Ok(Decision::Keep(reason));
        }
        let mut reason = default_choice(name, shape).err().map(str::to_string);
        if self.include.iter().any(|p| glob(p, name)) {
            reason = None;
        }
        if self.exclude.iter().any(|p| glob(p, name)) {
            reason = Some("--exclude".into());
        }
        let (quantize, settings, fixed_bits) =
            self.overrides.resolve(name, reason.is_none(), base)?;
        if !quantize {
            return Ok(Decision::Keep(
                reason.unwrap_or_else(|| "overrides file".into()),
            ));
        }
        if shape.contains(&0) || shape.is_empty() {
            return Err(Error::msg(format!(
                "tensor '{name}' of shape {shape:?} cannot be quantized"
            )));
        }
        Ok(Decision::Quantize {
            settings,
            fixed_bits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches() {
        assert!(glob("*", "anything"));
        assert!(glob("conv*.weight", "conv1.weight"));
        assert!(glob("*.bias", "fc.bias"));
        assert!(!glob("*.bias", "fc.weight"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exact2"));
    }

    #[test]
    fn defaults_keep_vectors_and_embeddings() {
        assert!(default_choice("fc.weight", &[4, 3]).is_ok());
        assert!(default_choice("conv.weight", &[4, 3, 3, 3]).is_ok());
        assert!(default_choice("fc.bias", &[4]).is_err());
        assert!(default_choice("model.embed_tokens.weight", &[100, 8]).is_err());
        assert!(default_choice("layer_norm.weight", &[8, 8]).is_err());
    }
}
