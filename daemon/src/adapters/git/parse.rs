//! Parsers of git's machine-readable output: `diff --raw --numstat -z` (with the patch after
//! it), `status --porcelain -z`, `worktree list --porcelain -z`, NUL-separated name lists, a
//! worktree's `.git` file; and the cuts applied to what is kept (a patch at a line boundary, an
//! output tail). Pure functions over bytes: paths stay bytes until they become `PathBuf`s, so a
//! name with a space, a quote, a newline or invalid UTF-8 survives exactly.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{ChangeStatus, FileChange};

/// Output git gave that does not have the promised shape. Never expected; reported with the
/// offending bytes rather than guessed around.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

/// A parsed `git diff --raw --numstat -z [-p]` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// One entry per changed file, in git's order (by path).
    pub files: Vec<FileChange>,
    /// Where the patch starts in the output (its length when there is no patch).
    pub patch_start: usize,
}

/// Parse the summary that `git diff --raw --numstat -z` prints before its patch: the raw records
/// (`:<modes> <ids> <status>\0<path>\0[<new path>\0]`), then as many numstat records
/// (`<added>\t<deleted>\t<path>\0`, or `...\t\0<old>\0<new>\0` for a rename), then one NUL if a
/// patch follows. `Ok(None)` when `out` ends before the summary does and git has not `finished`
/// (more output is coming).
pub fn diff_summary(out: &[u8], finished: bool) -> Result<Option<Summary>, Malformed> {
    let mut at = 0;
    let mut files = Vec::new();
    while out.get(at) == Some(&b':') {
        let Some((meta, next)) = field(out, at) else {
            return Ok(None);
        };
        let status_field = meta
            .split(|b| *b == b' ')
            .nth(4)
            .ok_or_else(|| malformed("raw record", meta))?;
        let (status, two_paths) = match status_field.first() {
            Some(b'A') => (ChangeStatus::Added, false),
            Some(b'D') => (ChangeStatus::Deleted, false),
            Some(b'M' | b'T') => (ChangeStatus::Modified, false),
            Some(b'R') => (ChangeStatus::Renamed, true),
            // Copies are only reported when asked for (-C); read as an added file.
            Some(b'C') => (ChangeStatus::Added, true),
            _ => return Err(malformed("raw status", status_field)),
        };
        let Some((first, next)) = field(out, next) else {
            return Ok(None);
        };
        let (path, old_path, next) = if two_paths {
            let Some((second, next)) = field(out, next) else {
                return Ok(None);
            };
            let old = (status == ChangeStatus::Renamed).then(|| path_of(first));
            (path_of(second), old, next)
        } else {
            (path_of(first), None, next)
        };
        files.push(FileChange {
            path,
            status,
            old_path,
            additions: 0,
            deletions: 0,
            binary: false,
        });
        at = next;
    }
    for file in files.iter_mut() {
        let Some((record, next)) = field(out, at) else {
            return Ok(None);
        };
        let mut parts = record.splitn(3, |b| *b == b'\t');
        let (Some(added), Some(deleted), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("numstat record", record));
        };
        // A rename's numstat has an empty path field followed by the two paths.
        at = if path.is_empty() {
            match field(out, next).and_then(|(_, n)| field(out, n)) {
                Some((_, n)) => n,
                None => return Ok(None),
            }
        } else {
            next
        };
        if added == b"-" && deleted == b"-" {
            file.binary = true;
        } else {
            file.additions = number(added)?;
            file.deletions = number(deleted)?;
        }
    }
    // With a patch, one empty record separates it from the summary.
    let patch_start = match out.get(at) {
        Some(0) if !files.is_empty() => at + 1,
        None if finished => at,
        None => return Ok(None),
        Some(_) => return Err(malformed("separator before the patch", &out[at..])),
    };
    Ok(Some(Summary { files, patch_start }))
}

/// One entry of `git status --porcelain -z`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    /// The index column: `' '` unchanged, `?` untracked, else a change staged in the index.
    pub staged: u8,
    /// The working-tree column.
    pub unstaged: u8,
    pub path: PathBuf,
}

impl StatusEntry {
    /// Whether the entry is a conflict left by a merge, rebase or cherry-pick.
    pub fn unmerged(&self) -> bool {
        matches!(
            (self.staged, self.unstaged),
            (b'D', b'D') | (b'A', b'A') | (b'U', _) | (_, b'U')
        )
    }

    /// Whether the index holds a change of this path (not merely the working tree).
    pub fn is_staged(&self) -> bool {
        !matches!(self.staged, b' ' | b'?' | b'!')
    }
}

/// Parse `git status --porcelain -z`: `XY <path>\0`, a rename or copy followed by
/// `<original path>\0` (both paths are listed, since either may collide).
pub fn status(out: &[u8]) -> Result<Vec<StatusEntry>, Malformed> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at < out.len() {
        let (record, next) =
            field(out, at).ok_or_else(|| malformed("status record", &out[at..]))?;
        if record.len() < 4 || record[2] != b' ' {
            return Err(malformed("status record", record));
        }
        let (staged, unstaged) = (record[0], record[1]);
        entries.push(StatusEntry {
            staged,
            unstaged,
            path: path_of(&record[3..]),
        });
        at = next;
        if matches!(staged, b'R' | b'C') {
            let (orig, next) =
                field(out, at).ok_or_else(|| malformed("rename source", &out[at..]))?;
            entries.push(StatusEntry {
                staged,
                unstaged,
                path: path_of(orig),
            });
            at = next;
        }
    }
    Ok(entries)
}

/// One entry of `git worktree list --porcelain -z`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    pub path: PathBuf,
    /// The checked-out commit; none in a repository without commits.
    pub head: Option<String>,
    /// The checked-out branch, without `refs/heads/`; none when detached.
    pub branch: Option<String>,
    pub bare: bool,
    /// git would prune it: its directory is gone.
    pub prunable: bool,
}

/// Parse `git worktree list --porcelain -z`: `<attribute>\0` lines, a record ended by an empty one.
pub fn worktree_list(out: &[u8]) -> Result<Vec<Listed>, Malformed> {
    let mut list = Vec::new();
    let mut current: Option<Listed> = None;
    let mut at = 0;
    while at < out.len() {
        let (attr, next) = field(out, at).ok_or_else(|| malformed("worktree list", &out[at..]))?;
        at = next;
        if attr.is_empty() {
            list.extend(current.take());
            continue;
        }
        let (key, value) = match attr.iter().position(|b| *b == b' ') {
            Some(i) => (&attr[..i], &attr[i + 1..]),
            None => (attr, &[][..]),
        };
        if key == b"worktree" {
            list.extend(current.take());
            current = Some(Listed {
                path: path_of(value),
                ..Listed::default()
            });
            continue;
        }
        let entry = current
            .as_mut()
            .ok_or_else(|| malformed("worktree list attribute before a worktree", attr))?;
        match key {
            b"HEAD" => entry.head = Some(String::from_utf8_lossy(value).into_owned()),
            b"branch" => {
                let name = value.strip_prefix(b"refs/heads/").unwrap_or(value);
                entry.branch = Some(String::from_utf8_lossy(name).into_owned());
            }
            b"bare" => entry.bare = true,
            b"prunable" => entry.prunable = true,
            _ => {}
        }
    }
    list.extend(current);
    Ok(list)
}

/// The NUL-separated paths of `--name-only -z` and `ls-files -z`.
pub fn names(out: &[u8]) -> Vec<PathBuf> {
    out.split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(path_of)
        .collect()
}

/// The git directory a linked worktree's `.git` file points at (`gitdir: <path>`), resolved
/// against the worktree when relative (`worktree.useRelativePaths`).
pub fn gitfile(content: &[u8], worktree: &Path) -> Option<PathBuf> {
    let rest = content.strip_prefix(b"gitdir: ")?;
    let rest = rest.strip_suffix(b"\n").unwrap_or(rest);
    let dir = Path::new(OsStr::from_bytes(rest));
    (!rest.is_empty()).then(|| worktree.join(dir))
}

/// How much of `text` to keep within `limit` bytes, cut after the last whole line that fits:
/// `(kept length, whether anything was cut)`.
pub fn cut_at_line(text: &[u8], limit: usize) -> (usize, bool) {
    if text.len() <= limit {
        return (text.len(), false);
    }
    let kept = text[..limit]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    (kept, true)
}

/// The end of a command's output worth showing a person: at most `max_lines` lines of the last
/// `max_bytes` bytes, invalid UTF-8 replaced, trailing blank lines dropped.
pub fn tail(out: &[u8], max_bytes: usize, max_lines: usize) -> String {
    let start = out.len().saturating_sub(max_bytes);
    let text = String::from_utf8_lossy(&out[start..]);
    let text = text.trim_end().trim_start_matches(['\n', '\r']);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}

/// How a git command line is shown in errors.
pub fn display_command(program: &OsStr, args: &[std::ffi::OsString]) -> String {
    display_words(std::iter::once(program).chain(args.iter().map(|a| a.as_os_str())))
}

/// How a command line is shown to a person: words with spaces, quotes or control characters
/// quoted, the rest bare.
pub fn display_words<'a>(words: impl Iterator<Item = &'a OsStr>) -> String {
    words
        .map(|w| {
            let s = w.to_string_lossy();
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:@^{}~+,%".contains(c))
            {
                s.into_owned()
            } else {
                format!("{s:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The field of `out` that starts at `at` and ends at the next NUL, and where the next begins.
fn field(out: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let len = out.get(at..)?.iter().position(|b| *b == 0)?;
    Some((&out[at..at + len], at + len + 1))
}

fn path_of(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

fn number(bytes: &[u8]) -> Result<u64, Malformed> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed("line count", bytes))
}

fn malformed(what: &str, bytes: &[u8]) -> Malformed {
    let shown: Vec<u8> = bytes.iter().copied().take(120).collect();
    Malformed(format!(
        "unexpected {what} from git: {:?}",
        String::from_utf8_lossy(&shown)
    ))
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check_summary(out: &[u8], expect: Expect) {
        let shown = match diff_summary(out, true) {
            Ok(Some(s)) => {
                let mut text: String = s
                    .files
                    .iter()
                    .map(|f| {
                        format!(
                            "{:?} {:?}{} +{} -{}{}\n",
                            f.status,
                            f.path,
                            f.old_path
                                .as_ref()
                                .map(|o| format!(" from {o:?}"))
                                .unwrap_or_default(),
                            f.additions,
                            f.deletions,
                            if f.binary { " binary" } else { "" }
                        )
                    })
                    .collect();
                text.push_str(&format!(
                    "patch: {:?}\n",
                    String::from_utf8_lossy(&out[s.patch_start..])
                ));
                text
            }
            Ok(None) => "incomplete\n".into(),
            Err(Malformed(m)) => format!("error: {m}\n"),
        };
        expect.assert_eq(&shown);
    }

    /// A real `git diff --cached -M --raw --numstat -p -z` output (abridged patch).
    const FULL: &[u8] = b":000000 100644 0000000 8352675 A\0bin\0\
:100644 100644 587be6b b77b4eb M\0keep\0\
:000000 100644 0000000 3e75765 A\0nl\nname\0\
:100644 100644 535d2b0 0719398 R088\0ren\0ren2\0\
:100644 000000 de98044 0000000 D\0sp ace.txt\0\
-\t-\tbin\0\
1\t0\tkeep\0\
1\t0\tnl\nname\0\
1\t0\t\0ren\0ren2\0\
0\t3\tsp ace.txt\0\
\0diff --git a/bin b/bin\nBinary files /dev/null and b/bin differ\n";

    #[test]
    fn summary_of_every_kind_of_change() {
        check_summary(
            FULL,
            expect![[r#"
                Added "bin" +0 -0 binary
                Modified "keep" +1 -0
                Added "nl\nname" +1 -0
                Renamed "ren2" from "ren" +1 -0
                Deleted "sp ace.txt" +0 -3
                patch: "diff --git a/bin b/bin\nBinary files /dev/null and b/bin differ\n"
            "#]],
        );
    }

    #[test]
    fn summary_without_patch_and_empty() {
        check_summary(
            b":100644 100644 587be6b b77b4eb M\0keep\0\
1\t0\tkeep\0",
            expect![[r#"
                Modified "keep" +1 -0
                patch: ""
            "#]],
        );
        check_summary(
            b"",
            expect![[r#"
            patch: ""
        "#]],
        );
    }

    #[test]
    fn summary_cut_anywhere_is_incomplete_never_wrong() {
        let separator = FULL.windows(5).position(|w| w == b"\0diff").unwrap();
        for cut in 0..=separator {
            match diff_summary(&FULL[..cut], false) {
                Ok(None) => {}
                Ok(Some(s)) => panic!("cut at {cut} parsed as complete: {s:?}"),
                Err(e) => panic!("cut at {cut}: {e:?}"),
            }
        }
    }

    #[test]
    fn summary_refuses_garbage() {
        check_summary(
            b":100644 100644 587be6b b77b4eb Z\0keep\0",
            expect![[r#"
                error: unexpected raw status from git: "Z"
            "#]],
        );
        check_summary(
            b":100644 100644 587be6b b77b4eb M\0keep\0x\ty\tkeep\0",
            expect![[r#"
                error: unexpected line count from git: "x"
            "#]],
        );
        check_summary(
            b":100644 100644 587be6b b77b4eb M\0keep\x001\t0\tkeep\0junk",
            expect![[r#"
                error: unexpected separator before the patch from git: "junk"
            "#]],
        );
    }

    #[test]
    fn status_entries() {
        let out = b" M a.txt\0?? new file\0R  new\0old\0UU both\0A  staged\0D  gone\0";
        let shown: String = status(out)
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{}{} {:?} staged={} unmerged={}\n",
                    e.staged as char,
                    e.unstaged as char,
                    e.path,
                    e.is_staged(),
                    e.unmerged()
                )
            })
            .collect();
        expect![[r#"
             M "a.txt" staged=false unmerged=false
            ?? "new file" staged=false unmerged=false
            R  "new" staged=true unmerged=false
            R  "old" staged=true unmerged=false
            UU "both" staged=true unmerged=true
            A  "staged" staged=true unmerged=false
            D  "gone" staged=true unmerged=false
        "#]]
        .assert_eq(&shown);
        expect![[r#"Err(Malformed("unexpected status record from git: \"XY\""))"#]]
            .assert_eq(&format!("{:?}", status(b"XY\0")));
    }

    #[test]
    fn worktree_listing() {
        let out = b"worktree /repo\0HEAD 4a19155e2829c8a536059e14d237d14760f93da9\0branch refs/heads/main\0\0\
worktree /state/wt/a b\0HEAD 4a19155e2829c8a536059e14d237d14760f93da9\0branch refs/heads/orch/a\0\0\
worktree /state/wt/gone\0HEAD 4a19155e2829c8a536059e14d237d14760f93da9\0detached\0prunable gitdir file points to non-existent location\0\0";
        expect![[r#"
            [
                Listed {
                    path: "/repo",
                    head: Some(
                        "4a19155e2829c8a536059e14d237d14760f93da9",
                    ),
                    branch: Some(
                        "main",
                    ),
                    bare: false,
                    prunable: false,
                },
                Listed {
                    path: "/state/wt/a b",
                    head: Some(
                        "4a19155e2829c8a536059e14d237d14760f93da9",
                    ),
                    branch: Some(
                        "orch/a",
                    ),
                    bare: false,
                    prunable: false,
                },
                Listed {
                    path: "/state/wt/gone",
                    head: Some(
                        "4a19155e2829c8a536059e14d237d14760f93da9",
                    ),
                    branch: None,
                    bare: false,
                    prunable: true,
                },
            ]
        "#]]
        .assert_debug_eq(&worktree_list(out).unwrap());
    }

    #[test]
    fn gitfiles() {
        let wt = Path::new("/state/wt/a");
        let shown = [
            &b"gitdir: /repo/.git/worktrees/a\n"[..],
            b"gitdir: ../../repo/.git/worktrees/a",
            b"gitdir: \n",
            b"not a gitfile",
        ]
        .iter()
        .map(|c| format!("{:?}\n", gitfile(c, wt)))
        .collect::<String>();
        expect![[r#"
            Some("/repo/.git/worktrees/a")
            Some("/state/wt/a/../../repo/.git/worktrees/a")
            None
            None
        "#]]
        .assert_eq(&shown);
    }

    #[test]
    fn cuts_at_line_boundaries() {
        let text = b"one\ntwo\nthree\n";
        let shown: String = [0, 3, 4, 5, 8, 13, 14, 99]
            .iter()
            .map(|&limit| {
                let (kept, cut) = cut_at_line(text, limit);
                format!(
                    "{limit}: {:?} cut={cut}\n",
                    String::from_utf8_lossy(&text[..kept])
                )
            })
            .collect();
        expect![[r#"
            0: "" cut=true
            3: "" cut=true
            4: "one\n" cut=true
            5: "one\n" cut=true
            8: "one\ntwo\n" cut=true
            13: "one\ntwo\n" cut=true
            14: "one\ntwo\nthree\n" cut=false
            99: "one\ntwo\nthree\n" cut=false
        "#]]
        .assert_eq(&shown);
    }

    #[test]
    fn tails() {
        let out = b"1\n2\n3\n4\n5\n\n\n";
        expect![[r#""4\n5" "5" """#]].assert_eq(&format!(
            "{:?} {:?} {:?}",
            tail(out, 100, 2),
            tail(out, 5, 10),
            tail(b"", 10, 10)
        ));
    }

    #[test]
    fn command_display() {
        let args: Vec<std::ffi::OsString> = [
            "worktree", "add", "-b", "orch/a", "--", "/tmp/a b", "HEAD~1", "it's",
        ]
        .iter()
        .map(Into::into)
        .collect();
        expect![[r#"git worktree add -b orch/a -- "/tmp/a b" HEAD~1 "it's""#]]
            .assert_eq(&display_command(OsStr::new("git"), &args));
    }
}
