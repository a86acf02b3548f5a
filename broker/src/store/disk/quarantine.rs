//! Moving an unreadable store aside: `data_dir/quarantine-<unix time>/`.
//!
//! Owns the quarantine folder's naming and the move. It only ever renames files inside
//! `data_dir` (same file system, so the move is atomic per file); it never deletes or
//! rewrites anything, so an operator can always inspect or restore what was moved.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::store::StoreError;

fn io_err(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Creates a new, unused `dir/quarantine-<unix time>[-n]/` folder.
fn new_folder(dir: &Path) -> Result<PathBuf, StoreError> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut n = 0u32;
    loop {
        let name = match n {
            0 => format!("quarantine-{secs}"),
            n => format!("quarantine-{secs}-{n}"),
        };
        let path = dir.join(name);
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err(io_err(&path, e)),
        }
    }
}

/// Moves the files `names` of `dir` that exist into a new quarantine folder and returns
/// the folder. Files that do not exist are skipped.
pub fn move_aside(dir: &Path, names: &[&str]) -> Result<PathBuf, StoreError> {
    let folder = new_folder(dir)?;
    for name in names {
        let from = dir.join(name);
        match std::fs::symlink_metadata(&from) {
            Ok(_) => std::fs::rename(&from, folder.join(name)).map_err(|e| io_err(&from, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&from, e)),
        }
    }
    Ok(folder)
}
