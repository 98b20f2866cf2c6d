//! Reading an agent's screen: is its prompt drawn (ready), is it working (busy), does it ask the
//! person something (a question), and which choices does the question offer, in the agent's own
//! words, with the keys each needs.
//!
//! Pure functions over the screen's text lines: the runtime decides when to look and what to do
//! with what is seen. Patterns are matched in the *live region*, the lines at and above the cursor
//! (TUIs draw their prompt and dialogs there; what scrolled above it is history, and a question
//! that was answered leaves the region even while it stays on the screen).

use regex::Regex;

use crate::core::agent::Watch;

/// A kind's screen rules, compiled.
#[derive(Debug, Default)]
pub struct ScreenRules {
    ready: Vec<Regex>,
    busy: Vec<Regex>,
    waiting: Vec<Regex>,
    /// Lines above the bottom that belong to the live region.
    look_back: usize,
}

/// What the rules see on a screen.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The waiting pattern that matched: the agent asks something.
    pub question: Option<String>,
    /// The line the question's pattern matched on, trimmed (its choices may be on it).
    pub question_line: Option<String>,
    /// The question's line up to the end of the pattern's match: another text there is another
    /// question (Aider asks "Add command output to the chat?" right after "Run shell command?"),
    /// while an answer typed after it is not.
    pub question_key: Option<String>,
    /// The busy pattern that matched.
    pub busy: Option<String>,
    /// The ready pattern that matched.
    pub ready: Option<String>,
}

impl ScreenRules {
    /// Compile a watch's patterns. They were validated at spawn or config load; one that does not
    /// compile here is skipped rather than fatal.
    pub fn new(watch: &Watch) -> Self {
        let compile = |ps: &[String]| ps.iter().filter_map(|p| Regex::new(p).ok()).collect();
        Self {
            ready: compile(&watch.ready_patterns),
            busy: compile(&watch.busy_patterns),
            waiting: compile(&watch.waiting_patterns),
            look_back: watch.look_back,
        }
    }

    /// Whether the kind has busy patterns (then output alone is not busy).
    pub fn has_busy(&self) -> bool {
        !self.busy.is_empty()
    }

    /// Whether the kind has ready patterns (then it is never idle before one shows).
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Whether the kind has waiting patterns.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// The live region of a screen.
    pub fn region<'a>(&self, lines: &'a [String]) -> &'a [String] {
        live_region(lines, self.look_back)
    }

    /// Read a screen.
    pub fn read(&self, lines: &[String]) -> Reading {
        let region = live_region(lines, self.look_back).join("\n");
        let first = |rs: &[Regex]| {
            rs.iter()
                .find(|r| r.is_match(&region))
                .map(|r| r.as_str().to_string())
        };
        let found = self.waiting.iter().find_map(|r| r.find(&region));
        let (question_line, question_key) = match found {
            Some(m) => {
                let start = region[..m.start()].rfind('\n').map_or(0, |i| i + 1);
                let end = region[m.start()..]
                    .find('\n')
                    .map_or(region.len(), |i| m.start() + i);
                (
                    Some(region[start..end].trim().to_string()),
                    Some(region[start..m.end()].trim().to_string()),
                )
            }
            None => (None, None),
        };
        Reading {
            question: first(&self.waiting),
            question_line,
            question_key,
            busy: first(&self.busy),
            ready: first(&self.ready),
        }
    }
}

/// The lines the rules look at: `look_back` lines above the bottom and the bottom itself, where
/// the bottom is the last line with text. A line-based program asks on the cursor's line, which is
/// its last; a TUI draws its prompt or dialog at the end of what it shows, often with a footer
/// below its cursor, and may park the cursor in the blank space under it (Codex's first-run
/// screen): the cursor's row says nothing more than the text does.
pub fn live_region(lines: &[String], look_back: usize) -> &[String] {
    if lines.is_empty() {
        return lines;
    }
    let bottom = lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .unwrap_or(0);
    &lines[bottom.saturating_sub(look_back)..=bottom]
}

/// The choices of a numbered menu in the live region (`❯ 1. Yes`, `  2. No (esc)`), in the
/// agent's words, each with the keys that pick it: the hint in parentheses at the end of the
/// label (`(y)`, `(esc)`) where there is one, else the number. Empty when the region holds no
/// menu starting at 1.
pub fn menu(region: &[String]) -> Vec<(String, String)> {
    let mut best: Vec<(String, String)> = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in region {
        // Several choices may share a line (`● 1. Allow once  2. Allow for this session`).
        for (n, label) in menu_items(line) {
            if n == 1 {
                if current.len() >= 2 {
                    best = std::mem::take(&mut current);
                }
                current.clear();
            } else if n != current.len() + 1 {
                continue;
            }
            let (label, keys) = split_hint(&label);
            current.push((label, keys.unwrap_or_else(|| n.to_string())));
        }
    }
    if current.len() >= 2 {
        best = current;
    }
    // Options are decision choices: they must be distinct.
    let mut seen = std::collections::HashSet::new();
    if best.iter().all(|(l, _)| seen.insert(l.clone())) {
        best
    } else {
        Vec::new()
    }
}

/// The choices of a line-based question (`Run shell command? (Y)es/(N)o/(D)on't ask again
/// [Yes]:`): each `(X)rest` between slashes is a choice `Xrest`, picked by typing `x` and Enter.
/// Empty when the line has fewer than two.
pub fn letter_choices(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in line.split('/') {
        // The last `(X)` of the part: words before it may have parentheses of their own.
        let found = part.char_indices().rev().find_map(|(i, c)| {
            let mut chars = part[i..].chars();
            (c == '(').then_some(())?;
            chars.next();
            let letter = chars.next().filter(char::is_ascii_alphabetic)?;
            (chars.next() == Some(')')).then_some((letter, chars.as_str()))
        });
        let Some((letter, rest)) = found else {
            continue;
        };
        let word: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '\'' || *c == ' ')
            .collect();
        let label = format!("{letter}{}", word.trim_end());
        out.push((label, format!("{}\r", letter.to_ascii_lowercase())));
    }
    if out.len() >= 2 {
        out
    } else {
        Vec::new()
    }
}

/// A question's choices as the screen shows them: a numbered menu in the region, else the
/// `(Y)es/(N)o` choices of the question's line.
///
/// With `enter_after_number`, a choice picked by its number is confirmed with Enter (Codex's
/// selection screens move the cursor on a digit and act on Enter; a key hint acts at once).
pub fn choices(
    region: &[String],
    question_line: Option<&str>,
    enter_after_number: bool,
) -> Vec<(String, String)> {
    let mut m = menu(region);
    if !m.is_empty() {
        if enter_after_number {
            for (_, keys) in &mut m {
                if keys.bytes().all(|b| b.is_ascii_digit()) {
                    keys.push('\r');
                }
            }
        }
        return m;
    }
    question_line.map(letter_choices).unwrap_or_default()
}

/// `N. label` items of one line, after any selection marker or box border.
fn menu_items(line: &str) -> Vec<(usize, String)> {
    let trimmed = line
        .trim()
        .trim_start_matches(['│', '┃', '║', '|'])
        .trim_end_matches(['│', '┃', '║', '|'])
        .trim();
    let mut items = Vec::new();
    let mut rest = trimmed
        .trim_start_matches(['❯', '›', '>', '●', '○', '◉', '◯', '▶', '→', '*', '•', '▸'])
        .trim_start();
    loop {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 2 || !rest[digits..].starts_with(". ") {
            break;
        }
        let n: usize = rest[..digits].parse().unwrap_or(0);
        let after = rest[digits + 2..].trim_start();
        // The label runs to the next `  N. ` on the same line, if any.
        let end = next_item(after).unwrap_or(after.len());
        let label = after[..end].trim().to_string();
        if label.is_empty() {
            break;
        }
        items.push((n, label));
        rest = after[end..]
            .trim_start()
            .trim_start_matches(['❯', '›', '>', '●', '○', '◉', '◯', '▶', '→', '*', '•', '▸'])
            .trim_start();
        if rest.is_empty() {
            break;
        }
    }
    items
}

/// Where another `N. ` item starts after two or more spaces.
fn next_item(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b' ' && bytes[i + 1] == b' ' {
            let j = i + s[i..].len() - s[i..].trim_start().len();
            let t = s[j..]
                .trim_start_matches(['❯', '›', '>', '●', '○', '◉', '◯', '▶', '→', '*', '•', '▸']);
            let t = t.trim_start();
            let digits = t.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 && digits <= 2 && t[digits..].starts_with(". ") {
                return Some(i);
            }
            i = j.max(i + 1);
            continue;
        }
        i += 1;
    }
    None
}

/// A label's trailing key hint: `Yes, proceed (y)` is picked by `y`, `No (esc)` by Escape.
fn split_hint(label: &str) -> (String, Option<String>) {
    if let Some(open) = label.rfind(" (") {
        let hint = &label[open + 2..];
        if let Some(hint) = hint.strip_suffix(')') {
            let keys = match hint.to_ascii_lowercase().as_str() {
                "esc" | "escape" => Some("\x1b".to_string()),
                "enter" => Some("\r".to_string()),
                h if h.chars().count() == 1 && h.chars().all(|c| c.is_ascii_alphanumeric()) => {
                    Some(h.to_string())
                }
                _ => None,
            };
            if keys.is_some() {
                return (label[..open].trim_end().to_string(), keys);
            }
        }
    }
    (label.to_string(), None)
}

/// The question's text for a decision's detail: the live region's last lines with text.
pub fn question_detail(region: &[String]) -> String {
    // Box drawing and block characters (U+2500..U+259F) are frames and rules, not words.
    let frame = |c: char| ('\u{2500}'..='\u{259f}').contains(&c) || c.is_whitespace();
    let text: Vec<&str> = region
        .iter()
        .map(|l| l.trim_matches(frame))
        .filter(|l| !l.is_empty())
        .collect();
    text[text.len().saturating_sub(12)..].join("\n")
}

/// Whether `text` (what was typed) still shows in the live region: a prompt left unsent in the
/// input box. Looks for the last line of the text, or its last 24 characters.
pub fn shows_input(lines: &[String], text: &str) -> bool {
    let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) else {
        return false;
    };
    let last = last.trim();
    let probe: String = {
        let chars: Vec<char> = last.chars().collect();
        chars[chars.len().saturating_sub(24)..].iter().collect()
    };
    // The few lines at the cursor: the input box, not the transcript above it. A long paste may
    // show as a placeholder (Claude Code: `[Pasted text #1 +12 lines]`).
    let multi_line = text.trim_end().contains('\n');
    live_region(lines, 3)
        .iter()
        .any(|l| multi_line && l.contains("[Pasted text"))
        || live_region(lines, 3).iter().any(|l| l.contains(&probe))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_string).collect()
    }

    #[test]
    fn menus_in_the_agents_words() {
        let claude = lines(
            " Bash command\n   touch x\n Do you want to proceed?\n ❯ 1. Yes\n   2. Yes, and always allow access to work1/ from this project\n   3. No\n\n Esc to cancel · Tab to amend",
        );
        assert_eq!(
            menu(&claude),
            [
                ("Yes".to_string(), "1".to_string()),
                (
                    "Yes, and always allow access to work1/ from this project".into(),
                    "2".into()
                ),
                ("No".into(), "3".into()),
            ]
        );
        let codex = lines(
            "  Would you like to run the following command?\n  $ touch x\n› 1. Yes, proceed (y)\n  2. Yes, and don't ask again for commands that start with `touch x` (p)\n  3. No, and tell Codex what to do differently (esc)",
        );
        assert_eq!(
            menu(&codex),
            [
                ("Yes, proceed".to_string(), "y".to_string()),
                (
                    "Yes, and don't ask again for commands that start with `touch x`".into(),
                    "p".into()
                ),
                (
                    "No, and tell Codex what to do differently".into(),
                    "\x1b".into()
                ),
            ]
        );
        let gemini = lines("│ Allow execution of [Shell]? │\n│ ● 1. Allow once  2. Allow for this session  3. No, suggest changes (esc) │");
        assert_eq!(
            menu(&gemini),
            [
                ("Allow once".to_string(), "1".to_string()),
                ("Allow for this session".into(), "2".into()),
                ("No, suggest changes".into(), "\x1b".into()),
            ]
        );
        assert!(menu(&lines("1. only one")).is_empty());
        assert!(menu(&lines("step 2. then 3.")).is_empty());
    }

    #[test]
    fn letter_choices_of_a_line_question() {
        assert_eq!(
            letter_choices("Run shell command? (Y)es/(N)o/(D)on't ask again [Yes]:"),
            [
                ("Yes".to_string(), "y\r".to_string()),
                ("No".into(), "n\r".into()),
                ("Don't ask again".into(), "d\r".into()),
            ]
        );
        assert_eq!(
            letter_choices("create one to track aider's changes (recommended)? (Y)es/(N)o [Yes]:"),
            [
                ("Yes".to_string(), "y\r".to_string()),
                ("No".into(), "n\r".into())
            ]
        );
        assert!(letter_choices("Proceed? [y/N]").is_empty());
    }

    #[test]
    fn the_live_region_is_at_the_cursor() {
        let mut screen: Vec<String> = vec![String::new(); 40];
        for (i, l) in screen.iter_mut().enumerate().take(7) {
            *l = format!("line {i}");
        }
        screen[5] = "Proceed? [y/N]".into();
        let rules = ScreenRules::new(&Watch {
            waiting_patterns: vec![r"Proceed\?".into()],
            look_back: 3,
            ..Watch::default()
        });
        assert_eq!(rules.read(&screen).question.as_deref(), Some(r"Proceed\?"));
        // Answered: output moved on, the question is history now.
        for (i, l) in screen.iter_mut().enumerate().take(20).skip(7) {
            *l = format!("output {i}");
        }
        assert_eq!(rules.read(&screen).question, None);
        // A TUI whose footer is drawn below its cursor: the region reaches the footer.
        let tui = lines("history\n\nDo you want to proceed?\n❯ 1. Yes\n  2. No\n\nEsc to cancel");
        let rules = ScreenRules::new(&Watch {
            waiting_patterns: vec![r"Do you want to proceed\?".into()],
            look_back: 6,
            ..Watch::default()
        });
        assert!(rules.read(&tui).question.is_some());
    }

    #[test]
    fn a_typed_answer_is_the_same_question_another_text_is_another() {
        let rules = ScreenRules::new(&Watch {
            waiting_patterns: vec![r"\(Y\)es/\(N\)o".into(), r"Proceed\?".into()],
            look_back: 1,
            ..Watch::default()
        });
        let line = |s: &str| rules.read(&lines(s)).question_key;
        assert_eq!(line("Proceed? [y/N]"), line("Proceed? [y/N] y"));
        let asked = line("Run shell command? (Y)es/(N)o [Yes]:");
        assert_eq!(asked, line("Run shell command? (Y)es/(N)o [Yes]: y"));
        assert_ne!(
            asked,
            line("Add command output to the chat? (Y)es/(N)o [Yes]:")
        );
    }

    #[test]
    fn unsent_input_is_seen_near_the_cursor() {
        let screen = lines("> earlier prompt\nanswer\n\n❯ fix the build please\n? for shortcuts");
        assert!(shows_input(&screen, "fix the build please"));
        assert!(!shows_input(&screen, "something else"));
        assert!(!shows_input(&screen, ""));
    }
}

/// The built-in kinds' rules against screens captured from the pinned real agents
/// (`tests/fixtures/screens/`, 120x40, see its README): what each screen reads as, and the
/// choices of its questions.
#[cfg(test)]
mod real_screens {
    use super::*;
    use crate::config::builtin_kinds;

    fn fixture(name: &str) -> Option<Vec<String>> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/screens")
            .join(format!("{name}.txt"));
        let text = std::fs::read_to_string(path).ok()?;
        Some(text.lines().map(str::to_string).collect())
    }

    /// `kind`'s reading of each fixture, one line each, with the menu of a question.
    fn readings(kind: &str, fixtures: &[&str]) -> String {
        let k = &builtin_kinds()[kind];
        let rules = ScreenRules::new(&k.watch());
        let mut out = Vec::new();
        for name in fixtures {
            let Some(lines) = fixture(name) else {
                out.push(format!("{name}: missing"));
                continue;
            };
            // The captures carry no cursor: the region's bottom is the last line with text.
            let r = rules.read(&lines);
            let mut line = format!(
                "{name}: question={:?} busy={:?} ready={:?}",
                r.question.is_some(),
                r.busy.is_some(),
                r.ready.is_some()
            );
            if r.question.is_some() && k.waiting_options.is_empty() {
                let options: Vec<String> = choices(
                    rules.region(&lines),
                    r.question_line.as_deref(),
                    k.menu_enter,
                )
                .into_iter()
                .map(|(label, keys)| format!("{label} <{}>", keys.escape_debug()))
                .collect();
                line.push_str(&format!("\n  menu: {}", options.join(" | ")));
            }
            out.push(line);
        }
        out.join("\n")
    }

    /// Every capture of `kind` (`<kind>-*.txt`), in name order.
    fn captures(kind: &str) -> Vec<String> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/screens");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".txt").map(str::to_string))
            .filter(|n| n.starts_with(&format!("{kind}-")))
            .collect();
        names.sort();
        names
    }

    fn check(kind: &str, want: expect_test::Expect) {
        let names = captures(kind);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        want.assert_eq(&readings(kind, &names));
    }

    #[test]
    fn claude() {
        check(
            "claude",
            expect_test::expect![[r#"
            claude-after-no: question=false busy=false ready=true
            claude-after-yes: question=false busy=false ready=true
            claude-approval: question=true busy=false ready=false
              menu: Yes <1> | Yes, and always allow access to kit-ws-F01tlh/ from this project <2> | No <3>
            claude-approval-answered: question=false busy=false ready=true
            claude-busy: question=false busy=true ready=true
            claude-idle: question=false busy=false ready=true
            claude-question: question=true busy=false ready=true
              menu: Red <1> | Blue <2> | Type something. <3> | Chat about this <4>
            claude-question-answered: question=false busy=false ready=true
            claude-question-escaped: question=false busy=false ready=true
            claude-trust: question=true busy=false ready=false
              menu: Yes, I trust this folder <1> | No, exit <2>
            claude-trust-answered: question=false busy=false ready=true"#]],
        );
    }

    #[test]
    fn codex() {
        check(
            "codex",
            expect_test::expect![[r#"
                codex-after-no: question=false busy=false ready=true
                codex-after-yes: question=false busy=false ready=true
                codex-approval: question=true busy=false ready=true
                  menu: Yes, proceed <y> | Yes, and don't ask again for commands that start with `touch made-by-codex` <p> | No, and tell Codex what to do differently <\u{1b}>
                codex-approval-answered: question=false busy=false ready=true
                codex-busy: question=false busy=true ready=true
                codex-exited: question=false busy=false ready=false
                codex-hooks-review: question=true busy=false ready=true
                  menu: Review hooks <1\r> | Trust all and continue <2\r> | Continue without trusting (hooks won't run) <3\r>
                codex-hooks-review-selected: question=true busy=false ready=true
                  menu: Review hooks <1\r> | Trust all and continue <2\r> | Continue without trusting (hooks won't run) <3\r>
                codex-idle: question=false busy=false ready=true
                codex-trust: question=true busy=false ready=true
                  menu: Trust and continue <1\r> | Back to Agent Command Center <2\r>
                codex-trust-answered: question=false busy=false ready=true"#]],
        );
    }

    #[test]
    fn gemini() {
        check(
            "gemini",
            expect_test::expect![[r#"
            gemini-after-no: question=false busy=false ready=true
            gemini-after-yes: question=false busy=false ready=true
            gemini-approval: question=true busy=false ready=false
              menu: Allow once <1> | Allow for this session <2> | No, suggest changes <\u{1b}>
            gemini-approval-answered: question=false busy=false ready=true
            gemini-busy: question=false busy=true ready=true
            gemini-ctrl-c-once: question=false busy=false ready=true
            gemini-idle: question=false busy=false ready=true
            gemini-idle-truecolor: question=false busy=false ready=true
            gemini-trust: question=true busy=false ready=false
              menu: Trust folder (kit-ws-6ppOn4) <1> | Trust parent folder (tmp) <2> | Don't trust <3>
            gemini-trust-answered: question=false busy=false ready=true"#]],
        );
    }

    #[test]
    fn aider() {
        check(
            "aider",
            expect_test::expect![[r#"
            aider-add-output: question=true busy=false ready=false
              menu: Yes <y\r> | No <n\r> | Don't ask again <d\r>
            aider-after-no: question=false busy=false ready=true
            aider-after-yes: question=false busy=false ready=true
            aider-approval: question=true busy=false ready=false
              menu: Yes <y\r> | No <n\r> | Don't ask again <d\r>
            aider-approval-answered: question=false busy=false ready=true
            aider-approval-typed: question=true busy=false ready=false
              menu: Yes <y\r> | No <n\r> | Don't ask again <d\r>
            aider-busy: question=false busy=false ready=false
            aider-busy-streaming: question=false busy=false ready=false
            aider-git: question=true busy=false ready=false
              menu: Yes <y\r> | No <n\r>
            aider-git-answered: question=false busy=false ready=true
            aider-idle: question=false busy=false ready=true"#]],
        );
    }

    #[test]
    fn a_question_in_a_frame_reads_as_words() {
        let Some(lines) = fixture("gemini-approval") else {
            panic!("tests/fixtures/screens/gemini-approval.txt is missing");
        };
        let rules = ScreenRules::new(&builtin_kinds()["gemini"].watch());
        let detail = question_detail(rules.region(&lines));
        assert!(detail.contains("Allow execution of [Shell]?"), "{detail}");
        assert!(detail.contains("● 1. Allow once"), "{detail}");
        assert!(!detail.contains('│') && !detail.contains('▀'), "{detail}");
    }
}
