//! The file system methods orch offers ACP agents (`fs/read_text_file`, `fs/write_text_file`),
//! confined to the agent's working directory.
//!
//! A path is judged after canonicalisation, symlinks resolved: a link inside the directory that
//! points outside it is outside. Writes are durable: a temporary file in the same directory,
//! synced, renamed over the target, and the directory synced. Knows nothing of JSON-RPC: paths
//! and text in, text or an error in words out.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Most bytes of a file handed to an agent in one read.
pub const READ_LIMIT: u64 = 8 << 20;

/// Why a file request was refused, and so which JSON-RPC error it becomes.
#[derive(Debug, PartialEq, Eq)]
pub enum FsError {
    /// The path is not one the agent may use (relative, outside its directory).
    Refused(String),
    /// The path is allowed but the operation failed.
    Failed(String),
}

impl FsError {
    pub fn message(&self) -> &str {
        match self {
            Self::Refused(text) | Self::Failed(text) => text,
        }
    }
}

/// The directory an agent's files are confined to, canonical.
#[derive(Debug, Clone)]
pub struct Confinement {
    root: PathBuf,
}

impl Confinement {
    /// Confine to `root` (canonicalised here, so it must exist).
    pub fn new(root: &Path) -> io::Result<Self> {
        Ok(Self {
            root: root.canonicalize()?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn refuse(&self, path: &Path) -> FsError {
        FsError::Refused(format!(
            "{} is outside the agent's working directory {}",
            path.display(),
            self.root.display()
        ))
    }

    fn check_absolute(path: &Path) -> Result<(), FsError> {
        if !path.is_absolute() {
            return Err(FsError::Refused(format!(
                "{} is not an absolute path",
                path.display()
            )));
        }
        Ok(())
    }

    /// Read a text file, from 1-based `line` on, at most `limit` lines.
    pub fn read(
        &self,
        path: &Path,
        line: Option<u64>,
        limit: Option<u64>,
    ) -> Result<String, FsError> {
        Self::check_absolute(path)?;
        let real = path
            .canonicalize()
            .map_err(|err| FsError::Failed(format!("{}: {err}", path.display())))?;
        if !real.starts_with(&self.root) {
            return Err(self.refuse(path));
        }
        let failed = |err: io::Error| FsError::Failed(format!("{}: {err}", path.display()));
        let file = File::open(&real).map_err(failed)?;
        let meta = file.metadata().map_err(failed)?;
        if !meta.is_file() {
            return Err(FsError::Failed(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        let mut bytes = Vec::new();
        file.take(READ_LIMIT + 1)
            .read_to_end(&mut bytes)
            .map_err(failed)?;
        if bytes.len() as u64 > READ_LIMIT {
            return Err(FsError::Failed(format!(
                "{} is larger than {} MiB",
                path.display(),
                READ_LIMIT >> 20
            )));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| FsError::Failed(format!("{} is not UTF-8 text", path.display())))?;
        if line.is_none() && limit.is_none() {
            return Ok(text);
        }
        let skip = line.unwrap_or(1).saturating_sub(1) as usize;
        let take = limit.map_or(usize::MAX, |n| n as usize);
        Ok(text.split_inclusive('\n').skip(skip).take(take).collect())
    }

    /// Replace (or create) a text file, durably. Missing parent directories inside the
    /// confinement are created.
    pub fn write(&self, path: &Path, content: &str) -> Result<(), FsError> {
        Self::check_absolute(path)?;
        let target = self.resolve_for_write(path)?;
        let failed = |err: io::Error| FsError::Failed(format!("{}: {err}", path.display()));
        let dir = target.parent().ok_or_else(|| self.refuse(path))?;
        fs::create_dir_all(dir).map_err(failed)?;
        // Created directories could not have been links, but a race could swap one in: check
        // again where the file really goes.
        let real_dir = dir.canonicalize().map_err(failed)?;
        if !real_dir.starts_with(&self.root) {
            return Err(self.refuse(path));
        }
        let mode = fs::metadata(&target)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644);
        let name = target.file_name().ok_or_else(|| self.refuse(path))?;
        let temp = real_dir.join(format!(
            ".{}.orch-{}-{}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            next_temp()
        ));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&temp)?;
            file.write_all(content.as_bytes())?;
            file.sync_all()?;
            drop(file);
            fs::rename(&temp, real_dir.join(name))?;
            File::open(&real_dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written.map_err(failed)
    }

    /// Where a write to `path` lands: the path with its existing part canonicalised (so an
    /// existing link is followed to its target), refused when that is outside.
    fn resolve_for_write(&self, path: &Path) -> Result<PathBuf, FsError> {
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            // `..` after a missing directory cannot be resolved by canonicalize; refuse it
            // rather than guess.
            return Err(FsError::Refused(format!(
                "{} contains `..`",
                path.display()
            )));
        }
        // The longest existing prefix, canonical, plus the rest as given.
        let mut existing = path.to_path_buf();
        let mut rest = Vec::new();
        let real = loop {
            match existing.canonicalize() {
                Ok(real) => break real,
                Err(_) => {
                    // A dangling link is not followed anywhere: refuse it.
                    if existing.symlink_metadata().is_ok() {
                        return Err(FsError::Refused(format!(
                            "{} is a link to nowhere",
                            existing.display()
                        )));
                    }
                    let Some(name) = existing.file_name() else {
                        return Err(self.refuse(path));
                    };
                    rest.push(name.to_os_string());
                    if !existing.pop() {
                        return Err(self.refuse(path));
                    }
                }
            }
        };
        let mut target = real;
        for name in rest.iter().rev() {
            target.push(name);
        }
        if !target.starts_with(&self.root) || target == self.root {
            return Err(self.refuse(path));
        }
        if target.is_dir() {
            return Err(FsError::Failed(format!(
                "{} is a directory",
                path.display()
            )));
        }
        Ok(target)
    }
}

/// A number that makes temporary names unique within this process.
fn next_temp() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    struct Dirs {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
        jail: Confinement,
    }

    fn dirs() -> Dirs {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let root = base.join("work");
        let outside = base.join("elsewhere");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), "secret\n").unwrap();
        fs::write(root.join("a.txt"), "one\ntwo\nthree\n").unwrap();
        symlink(outside.join("secret"), root.join("link-out")).unwrap();
        symlink(&outside, root.join("dir-out")).unwrap();
        symlink(root.join("a.txt"), root.join("link-in")).unwrap();
        symlink(root.join("missing"), root.join("dangling")).unwrap();
        let jail = Confinement::new(&root).unwrap();
        Dirs {
            _tmp: tmp,
            root,
            outside,
            jail,
        }
    }

    fn refused(result: Result<impl std::fmt::Debug, FsError>) -> String {
        match result {
            Err(FsError::Refused(text)) => text,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn reads_inside_only() {
        let d = dirs();
        let r = &d.root;
        assert_eq!(
            d.jail.read(&r.join("a.txt"), None, None).unwrap(),
            "one\ntwo\nthree\n"
        );
        assert_eq!(
            d.jail.read(&r.join("a.txt"), Some(2), Some(1)).unwrap(),
            "two\n"
        );
        assert_eq!(
            d.jail.read(&r.join("a.txt"), Some(3), None).unwrap(),
            "three\n"
        );
        assert_eq!(
            d.jail.read(&r.join("link-in"), None, None).unwrap(),
            "one\ntwo\nthree\n"
        );
        assert_eq!(
            d.jail.read(&r.join("sub/../a.txt"), None, None).unwrap(),
            "one\ntwo\nthree\n"
        );
        let text = refused(d.jail.read(&r.join("link-out"), None, None));
        let expected = format!("is outside the agent's working directory {}", r.display());
        assert!(text.ends_with(&expected), "{text}");
        refused(d.jail.read(&r.join("dir-out/secret"), None, None));
        refused(d.jail.read(&r.join("../elsewhere/secret"), None, None));
        refused(d.jail.read(&d.outside.join("secret"), None, None));
        refused(d.jail.read(Path::new("/etc/passwd"), None, None));
        assert_eq!(
            refused(d.jail.read(Path::new("a.txt"), None, None)),
            "a.txt is not an absolute path"
        );
        assert!(matches!(
            d.jail.read(&r.join("nope"), None, None),
            Err(FsError::Failed(_))
        ));
        assert!(matches!(
            d.jail.read(r, None, None),
            Err(FsError::Failed(_))
        ));
    }

    #[test]
    fn writes_inside_only_and_durably() {
        let d = dirs();
        let r = &d.root;
        d.jail.write(&r.join("new.txt"), "fresh").unwrap();
        assert_eq!(fs::read_to_string(r.join("new.txt")).unwrap(), "fresh");
        d.jail.write(&r.join("deep/er/file"), "made dirs").unwrap();
        assert_eq!(
            fs::read_to_string(r.join("deep/er/file")).unwrap(),
            "made dirs"
        );
        // Replacing keeps the mode, and a link inside is followed to its target.
        fs::set_permissions(r.join("a.txt"), fs::Permissions::from_mode(0o600)).unwrap();
        d.jail.write(&r.join("link-in"), "via link").unwrap();
        assert_eq!(fs::read_to_string(r.join("a.txt")).unwrap(), "via link");
        assert!(fs::symlink_metadata(r.join("link-in"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::metadata(r.join("a.txt")).unwrap().permissions().mode() & 0o777,
            0o600
        );
        refused(d.jail.write(&r.join("link-out"), "x"));
        refused(d.jail.write(&r.join("dir-out/new"), "x"));
        refused(d.jail.write(&r.join("dangling"), "x"));
        refused(d.jail.write(&r.join("sub/../../escape"), "x"));
        refused(d.jail.write(&d.outside.join("new"), "x"));
        refused(d.jail.write(r, "x"));
        refused(d.jail.write(Path::new("/tmp-orch-never/x"), "x"));
        assert_eq!(
            fs::read_to_string(d.outside.join("secret")).unwrap(),
            "secret\n"
        );
        assert!(!d.outside.join("new").exists());
        assert!(matches!(
            d.jail.write(&r.join("sub"), "x"),
            Err(FsError::Failed(_))
        ));
        // No temporary file is left behind.
        let left: Vec<_> = fs::read_dir(r)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
