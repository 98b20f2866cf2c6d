//! The append-only output log of one terminal: everything the program printed, bounded and
//! rotated (`<path>` up to the limit, then moved to `<path>.1`), so that what an agent printed
//! survives the daemon without growing without end.
//!
//! It knows files only: not tmux, not terminals. A failing log never stops output from flowing;
//! it is reported once and retried on the next write.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Bytes kept in the current log file before it is rotated.
#[cfg(test)]
pub const LOG_LIMIT: u64 = 8 * 1024 * 1024;

/// One terminal's output log.
pub struct OutputLog {
    /// The current log file's path; the rotated one is this plus `.1`.
    path: PathBuf,
    /// The open file, opened on first write (and again after rotation or an error).
    file: Option<File>,
    /// Bytes in the current file.
    size: u64,
    /// Bytes before rotating.
    limit: u64,
    /// Whether a failure was already logged, so a full disk does not flood the daemon's log.
    warned: bool,
}

impl OutputLog {
    /// A log at `path` rotating at `limit` bytes; nothing is opened yet.
    pub fn new(path: PathBuf, limit: u64) -> Self {
        Self {
            path,
            file: None,
            size: 0,
            limit,
            warned: false,
        }
    }

    /// Append `data`, rotating first if it would pass the limit.
    pub fn append(&mut self, data: &[u8]) {
        if let Err(e) = self.try_append(data) {
            self.file = None;
            if !self.warned {
                self.warned = true;
                tracing::warn!(path = %self.path.display(), error = %e, "cannot write output log");
            }
        }
    }

    fn try_append(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            self.open()?;
        }
        if self.size > 0 && self.size + data.len() as u64 > self.limit {
            self.file = None;
            std::fs::rename(&self.path, rotated(&self.path))?;
            self.open()?;
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(data)?;
        self.size += data.len() as u64;
        self.warned = false;
        Ok(())
    }

    fn open(&mut self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            crate::paths::create_private_dirs(dir)?;
        }
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }
}

/// Where a log goes when rotated.
pub fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/t-1.log");
        let mut log = OutputLog::new(path.clone(), 10);
        log.append(b"12345");
        log.append(b"678");
        assert_eq!(std::fs::read(&path).unwrap(), b"12345678");
        log.append(b"abcd");
        assert_eq!(std::fs::read(rotated(&path)).unwrap(), b"12345678");
        assert_eq!(std::fs::read(&path).unwrap(), b"abcd");
        // A reopened log continues the current file and its size.
        let mut again = OutputLog::new(path.clone(), 10);
        again.append(b"efghijk");
        assert_eq!(std::fs::read(rotated(&path)).unwrap(), b"abcd");
        assert_eq!(std::fs::read(&path).unwrap(), b"efghijk");
    }
}
