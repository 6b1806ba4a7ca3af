//! Writing output files so that none is left half-written: each goes to a temporary name in
//! its directory first and is renamed once every output of the run is ready.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// Files written under temporary names, renamed by [`Staged::commit`] and removed when
/// dropped uncommitted.
#[derive(Debug, Default)]
pub struct Staged {
    files: Vec<(PathBuf, PathBuf)>,
}

impl Staged {
    /// Writes `bytes` to a temporary file beside `path`.
    pub fn write(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        // Registered before writing so that a failed write is cleaned up too.
        self.files.push((temp.clone(), path.to_path_buf()));
        let mut file =
            std::fs::File::create(&temp).context(format!("cannot create {}", temp.display()))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .context(format!("cannot write {}", temp.display()))?;
        Ok(())
    }

    /// Renames every temporary file to its final name.
    pub fn commit(mut self) -> Result<()> {
        for (temp, path) in &self.files {
            std::fs::rename(temp, path).context(format!("cannot write {}", path.display()))?;
        }
        // Nothing is left to clean up; on an error above, `drop` removes the remaining files.
        self.files.clear();
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for (temp, _) in &self.files {
            let _ = std::fs::remove_file(temp);
        }
    }
}
