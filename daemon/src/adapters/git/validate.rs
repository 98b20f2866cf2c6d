//! Validation of what users give the git layer: branch names, base revisions, worktree locations
//! and the relative paths of files copied into a new worktree. Pure functions over strings and
//! paths; each refusal is a reason that the caller wraps in a [`GitError`](super::GitError) naming
//! the value. No git, no file system: the checks that need either (`git check-ref-format`, where
//! a path really leads) are made by the caller.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Longest branch name or base revision accepted, in bytes. git has no limit of its own beyond
/// the file system's (a loose ref is a file), but nobody types 200 bytes on purpose.
pub const MAX_NAME: usize = 200;

/// Longest worktree location accepted, in bytes (Linux's `PATH_MAX` is 4096).
pub const MAX_PATH: usize = 4000;

/// Whether `name` may be a branch orch creates: the rules of `git check-ref-format --branch` plus
/// ours (bounded, not option-looking, not `HEAD`). The caller also asks git, which stays the
/// authority; these rules give the reason in words and catch what must never reach an argv.
pub fn check_branch(name: &str) -> Result<(), String> {
    common(name)?;
    if name == "HEAD" || name == "@" {
        return Err(format!("{name} is reserved by git"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        return Err(format!("contains {c:?}"));
    }
    if name.contains("@{") {
        return Err("contains \"@{\"".into());
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Err("has an empty path component".into());
    }
    if name.ends_with('.') {
        return Err("ends with '.'".into());
    }
    for part in name.split('/') {
        if part.starts_with('.') {
            return Err(format!("component {part:?} starts with '.'"));
        }
        if part.ends_with(".lock") {
            return Err(format!("component {part:?} ends with \".lock\""));
        }
    }
    Ok(())
}

/// Whether `name` may be given as a base revision (`main`, `origin/main`, `v1.2`, a commit id,
/// `HEAD~2`). git resolves it; here only what must not reach git: option-looking names, ranges,
/// control characters, unbounded length.
pub fn check_base(name: &str) -> Result<(), String> {
    common(name)
}

/// The rules branch names and base revisions share.
fn common(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!("is longer than {MAX_NAME} bytes"));
    }
    if name.starts_with('-') {
        return Err("starts with '-' (it would read as an option)".into());
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!("contains the control character {c:?}"));
    }
    if name.contains("..") {
        return Err("contains \"..\"".into());
    }
    Ok(())
}

/// Whether `path` may be where a worktree is created: absolute, no `..`, no control characters,
/// bounded. Whether it lies inside the repository is checked by the caller on the resolved path
/// ([`is_within`]).
pub fn check_worktree_path(path: &Path) -> Result<(), String> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err("is empty".into());
    }
    if bytes.len() > MAX_PATH {
        return Err(format!("is longer than {MAX_PATH} bytes"));
    }
    if bytes.iter().any(|b| b.is_ascii_control()) {
        return Err("contains a control character".into());
    }
    if !path.is_absolute() {
        return Err("is not absolute".into());
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err("contains \"..\"".into());
    }
    if path.parent().is_none() {
        return Err("is the root directory".into());
    }
    Ok(())
}

/// Whether `path` may name a file copied from the workspace into a new worktree
/// (`[worktrees] copy`): relative, inside the tree (no `..`), not git's own directory.
pub fn check_copy_path(path: &Path) -> Result<(), String> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err("is empty".into());
    }
    if bytes.len() > MAX_PATH {
        return Err(format!("is longer than {MAX_PATH} bytes"));
    }
    if bytes.iter().any(|b| b.is_ascii_control()) {
        return Err("contains a control character".into());
    }
    if path.is_absolute() {
        return Err("is absolute; name a path relative to the workspace".into());
    }
    let mut normal = path.components().filter(|c| *c != Component::CurDir);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err("contains \"..\"".into());
    }
    match normal.next() {
        None => Err("names the workspace itself".into()),
        Some(Component::Normal(first)) if first == OsStr::new(".git") => {
            Err("is inside .git".into())
        }
        Some(_) => Ok(()),
    }
}

/// The branch orch proposes for an agent: `orch/<name>`, the name made a valid branch component
/// (agent names are letters, digits, `-`, `_` and `.`, so only dots need care).
pub fn default_branch(agent: &str) -> String {
    let mut part: String = agent
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    while part.contains("..") {
        part = part.replace("..", ".");
    }
    let mut part = part.trim_matches('.').to_string();
    if let Some(stem) = part.strip_suffix(".lock") {
        part = format!("{stem}-lock");
    }
    if part.is_empty() {
        part = "agent".into();
    }
    part.truncate(MAX_NAME - "orch/".len());
    format!("orch/{}", part.trim_end_matches('.'))
}

/// Whether `path` is `root` or lies beneath it. Both must be absolute and free of `.` and `..`
/// (resolved by the caller), so a comparison of components is exact.
pub fn is_within(path: &Path, root: &Path) -> bool {
    path.starts_with(root)
}

/// The resolved form of a path whose tail may not exist yet: the longest existing ancestor made
/// canonical (symbolic links followed), the rest appended. This is what the path will be once
/// created, so containment checks on it cannot be fooled by a link.
pub fn resolve_new(path: &Path) -> std::io::Result<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        match std::fs::canonicalize(&existing) {
            Ok(mut real) => {
                for part in rest.iter().rev() {
                    real.push(part);
                }
                return Ok(real);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(name) = existing.file_name().map(OsStr::to_owned) else {
                    return Err(e);
                };
                rest.push(name);
                existing.pop();
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn table(cases: &[&str], f: impl Fn(&str) -> Result<(), String>, expect: Expect) {
        let out: String = cases
            .iter()
            .map(|c| match f(c) {
                Ok(()) => format!("{c:?}: ok\n"),
                Err(why) => format!("{c:?}: {why}\n"),
            })
            .collect();
        expect.assert_eq(&out);
    }

    #[test]
    fn branch_names() {
        let long = "a".repeat(201);
        table(
            &[
                "orch/claude-1",
                "feature/x_y.z",
                "ünïcode",
                "",
                &long,
                "-x",
                "--force",
                "a..b",
                "../x",
                "a\nb",
                "a\u{7f}b",
                "a\tb",
                "a b",
                "a~1",
                "a^",
                "a:b",
                "a?",
                "a*",
                "a[",
                "a\\b",
                "a@{1}",
                "@",
                "HEAD",
                "/a",
                "a/",
                "a//b",
                "a.",
                ".a",
                "a/.b",
                "a.lock",
                "a.lock/b",
            ],
            check_branch,
            expect![[r#"
                "orch/claude-1": ok
                "feature/x_y.z": ok
                "ünïcode": ok
                "": is empty
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": is longer than 200 bytes
                "-x": starts with '-' (it would read as an option)
                "--force": starts with '-' (it would read as an option)
                "a..b": contains ".."
                "../x": contains ".."
                "a\nb": contains the control character '\n'
                "a\u{7f}b": contains the control character '\u{7f}'
                "a\tb": contains the control character '\t'
                "a b": contains ' '
                "a~1": contains '~'
                "a^": contains '^'
                "a:b": contains ':'
                "a?": contains '?'
                "a*": contains '*'
                "a[": contains '['
                "a\\b": contains '\\'
                "a@{1}": contains "@{"
                "@": @ is reserved by git
                "HEAD": HEAD is reserved by git
                "/a": has an empty path component
                "a/": has an empty path component
                "a//b": has an empty path component
                "a.": ends with '.'
                ".a": component ".a" starts with '.'
                "a/.b": component ".b" starts with '.'
                "a.lock": component "a.lock" ends with ".lock"
                "a.lock/b": component "a.lock" ends with ".lock"
            "#]],
        );
    }

    #[test]
    fn base_names() {
        table(
            &[
                "main",
                "origin/main",
                "HEAD~2",
                "v1.0^{}",
                "0123abcd",
                "-x",
                "main..x",
                "a...b",
                "a\rb",
                "",
            ],
            check_base,
            expect![[r#"
                "main": ok
                "origin/main": ok
                "HEAD~2": ok
                "v1.0^{}": ok
                "0123abcd": ok
                "-x": starts with '-' (it would read as an option)
                "main..x": contains ".."
                "a...b": contains ".."
                "a\rb": contains the control character '\r'
                "": is empty
            "#]],
        );
    }

    #[test]
    fn worktree_paths() {
        table(
            &[
                "/home/u/.local/state/orch/ws/worktrees/claude-1",
                "/tmp/with space/x",
                "/tmp/-x",
                "../x",
                "-x",
                "x",
                "/tmp/../etc",
                "/tmp/a\nb",
                "/",
                "",
            ],
            |p| check_worktree_path(Path::new(p)),
            expect![[r#"
                "/home/u/.local/state/orch/ws/worktrees/claude-1": ok
                "/tmp/with space/x": ok
                "/tmp/-x": ok
                "../x": is not absolute
                "-x": is not absolute
                "x": is not absolute
                "/tmp/../etc": contains ".."
                "/tmp/a\nb": contains a control character
                "/": is the root directory
                "": is empty
            "#]],
        );
    }

    #[test]
    fn copy_paths() {
        table(
            &[
                ".env",
                "config/local.toml",
                "./.env",
                "dir/",
                "/etc/passwd",
                "../secret",
                "a/../../b",
                ".git/config",
                "./.git",
                ".",
                "",
                "a\nb",
            ],
            |p| check_copy_path(Path::new(p)),
            expect![[r#"
                ".env": ok
                "config/local.toml": ok
                "./.env": ok
                "dir/": ok
                "/etc/passwd": is absolute; name a path relative to the workspace
                "../secret": contains ".."
                "a/../../b": contains ".."
                ".git/config": is inside .git
                "./.git": is inside .git
                ".": names the workspace itself
                "": is empty
                "a\nb": contains a control character
            "#]],
        );
    }

    #[test]
    fn default_branches() {
        let out: String = [
            "claude-1",
            "codex_2",
            "a.b",
            "a..b",
            "...",
            ".hidden",
            "x.lock",
            "trailing.",
            "sp ace/é",
            "",
        ]
        .iter()
        .map(|n| {
            let b = default_branch(n);
            format!("{n:?} -> {b} {:?}\n", check_branch(&b))
        })
        .collect();
        expect![[r#"
            "claude-1" -> orch/claude-1 Ok(())
            "codex_2" -> orch/codex_2 Ok(())
            "a.b" -> orch/a.b Ok(())
            "a..b" -> orch/a.b Ok(())
            "..." -> orch/agent Ok(())
            ".hidden" -> orch/hidden Ok(())
            "x.lock" -> orch/x-lock Ok(())
            "trailing." -> orch/trailing Ok(())
            "sp ace/é" -> orch/sp-ace-- Ok(())
            "" -> orch/agent Ok(())
        "#]]
        .assert_eq(&out);
    }

    #[test]
    fn within() {
        let cases = [
            ("/repo", "/repo"),
            ("/repo/a", "/repo"),
            ("/repo-wt/a", "/repo"),
            ("/re", "/repo"),
            ("/state/wt", "/repo"),
        ];
        let out: String = cases
            .iter()
            .map(|(p, r)| format!("{p} in {r}: {}\n", is_within(Path::new(p), Path::new(r))))
            .collect();
        expect![[r#"
            /repo in /repo: true
            /repo/a in /repo: true
            /repo-wt/a in /repo: false
            /re in /repo: false
            /state/wt in /repo: false
        "#]]
        .assert_eq(&out);
    }

    #[test]
    fn resolve_follows_links_of_existing_ancestors() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(real.join("target")).unwrap();
        std::os::unix::fs::symlink(real.join("target"), real.join("link")).unwrap();
        let got = resolve_new(&real.join("link/new/deeper")).unwrap();
        assert_eq!(got, real.join("target/new/deeper"));
    }
}
