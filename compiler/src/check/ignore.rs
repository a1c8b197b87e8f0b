//! `.kubefileignore`: which context files never reach the builder, and source globs.
//!
//! The syntax is `.dockerignore`'s (moby `patternmatcher`): one pattern per line, lines
//! starting with `#` are comments, surrounding whitespace is trimmed, `!` makes an
//! exception, a leading `/` is dropped (patterns are always relative to the context), the
//! pattern is cleaned like Go's `filepath.Clean`, each path segment follows Go's
//! `filepath.Match` (`*`, `?`, `[a-z]`, `[^a-z]`, `\` escapes; never across `/`), a whole
//! `**` segment matches any number of directories, a pattern also excludes everything below
//! a directory it matches, and the last matching pattern wins.
//!
//! This is a small matcher of our own rather than `globset`: globset's classes use `[!…]`
//! where Go uses `[^…]`, it has no "a match on a parent directory counts" rule and no
//! last-match-wins exceptions, and it does not reject the patterns Go rejects — each of
//! which would silently change which files reach an image.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// `*`: any run of characters in one segment.
    Star,
    /// `?`: one character.
    One,
    Lit(char),
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`: zero or more whole segments.
    Any,
    Toks(Vec<Tok>),
}

/// A compiled path pattern (Go `filepath.Match` per segment, plus `**`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    segments: Vec<Segment>,
}

/// Why a pattern is invalid (Go's `ErrBadPattern` cases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPattern(pub String);

impl fmt::Display for BadPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `text` contains glob metacharacters.
pub fn has_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Cleans a slash-separated relative path like Go's `path.Clean` (without resolving a
/// leading `..`, which the caller rejects): `./a//b/../c/` → `a/c`, `` → `.`.
pub fn clean(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let absolute = path.starts_with('/');
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|p| *p != "..") {
                    out.pop();
                } else if !absolute {
                    out.push("..");
                }
            }
            p => out.push(p),
        }
    }
    let joined = out.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

impl Pattern {
    /// Compiles a slash-separated pattern.
    pub fn new(pattern: &str) -> Result<Pattern, BadPattern> {
        let mut segments = Vec::new();
        for seg in pattern.split('/') {
            if seg == "**" {
                if segments.last() != Some(&Segment::Any) {
                    segments.push(Segment::Any);
                }
            } else {
                segments.push(Segment::Toks(compile_segment(seg)?));
            }
        }
        Ok(Pattern { segments })
    }

    /// Whether the whole relative path (slash-separated, cleaned) matches.
    pub fn matches(&self, path: &str) -> bool {
        let parts: Vec<&str> = if path.is_empty() || path == "." {
            Vec::new()
        } else {
            path.split('/').collect()
        };
        match_segments(&self.segments, &parts)
    }

    /// Whether the path or one of its parent directories matches.
    pub fn matches_or_parent(&self, path: &str) -> bool {
        if self.matches(path) {
            return true;
        }
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            if self.matches(&path[..end]) {
                return true;
            }
            end += 1;
        }
        false
    }
}

fn compile_segment(seg: &str) -> Result<Vec<Tok>, BadPattern> {
    let bad = |why: &str| BadPattern(format!("`{seg}`: {why}"));
    let chars: Vec<char> = seg.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                if toks.last() != Some(&Tok::Star) {
                    toks.push(Tok::Star);
                }
                i += 1;
            }
            '?' => {
                toks.push(Tok::One);
                i += 1;
            }
            '\\' => {
                let c = *chars.get(i + 1).ok_or_else(|| bad("ends with `\\`"))?;
                toks.push(Tok::Lit(c));
                i += 2;
            }
            '[' => {
                i += 1;
                let negated = chars.get(i) == Some(&'^');
                if negated {
                    i += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err(bad("`[` is never closed"));
                    };
                    if c == ']' && !ranges.is_empty() {
                        i += 1;
                        break;
                    }
                    let read = |i: &mut usize| -> Result<char, BadPattern> {
                        let c = *chars.get(*i).ok_or_else(|| bad("`[` is never closed"))?;
                        *i += 1;
                        if c == '\\' {
                            let e = *chars.get(*i).ok_or_else(|| bad("ends with `\\`"))?;
                            *i += 1;
                            Ok(e)
                        } else if c == ']' || c == '-' {
                            Err(bad("a character class is empty or has a bad range"))
                        } else {
                            Ok(c)
                        }
                    };
                    let lo = read(&mut i)?;
                    let hi = if chars.get(i) == Some(&'-') {
                        i += 1;
                        read(&mut i)?
                    } else {
                        lo
                    };
                    if hi < lo {
                        return Err(bad("a character range is reversed"));
                    }
                    ranges.push((lo, hi));
                }
                toks.push(Tok::Class { negated, ranges });
            }
            c => {
                toks.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    Ok(toks)
}

fn match_segments(pat: &[Segment], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((Segment::Any, rest)) => {
            (0..=path.len()).any(|skip| match_segments(rest, &path[skip..]))
        }
        Some((Segment::Toks(toks), rest)) => match path.split_first() {
            Some((first, tail)) => {
                let name: Vec<char> = first.chars().collect();
                match_toks(toks, &name) && match_segments(rest, tail)
            }
            None => false,
        },
    }
}

fn match_toks(toks: &[Tok], name: &[char]) -> bool {
    match toks.split_first() {
        None => name.is_empty(),
        Some((Tok::Star, rest)) => (0..=name.len()).any(|skip| match_toks(rest, &name[skip..])),
        Some((tok, rest)) => match name.split_first() {
            None => false,
            Some((&c, tail)) => {
                let ok = match tok {
                    Tok::One => true,
                    Tok::Lit(l) => *l == c,
                    Tok::Class { negated, ranges } => {
                        ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
                    }
                    Tok::Star => unreachable!("handled above"),
                };
                ok && match_toks(rest, tail)
            }
        },
    }
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: Pattern,
    exception: bool,
}

/// A parsed `.kubefileignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
    has_exceptions: bool,
}

/// A `.kubefileignore` line that could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreError {
    /// 1-based line in `.kubefileignore`.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl Ignore {
    /// Parses the file's text; invalid lines are returned and otherwise skipped.
    pub fn parse(text: &str) -> (Ignore, Vec<IgnoreError>) {
        let mut ignore = Ignore::default();
        let mut errors = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pat) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            if pat.is_empty() {
                continue;
            }
            let mut cleaned = clean(pat);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            match Pattern::new(&cleaned) {
                Ok(pattern) => {
                    ignore.has_exceptions |= exception;
                    ignore.rules.push(Rule { pattern, exception });
                }
                Err(e) => errors.push(IgnoreError {
                    line: n + 1,
                    message: format!("invalid pattern {e}"),
                }),
            }
        }
        (ignore, errors)
    }

    /// Whether the context-relative path is excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        let mut excluded = false;
        for rule in &self.rules {
            if rule.exception == excluded && rule.pattern.matches_or_parent(path) {
                excluded = !rule.exception;
            }
        }
        excluded
    }

    /// Whether a walk may skip everything below an excluded directory (no exception
    /// pattern could bring a file below it back).
    pub fn can_prune(&self) -> bool {
        !self.has_exceptions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_match_segments() {
        let m = |p: &str, s: &str| Pattern::new(p).unwrap().matches(s);
        assert!(m("*.yaml", "a.yaml"));
        assert!(!m("*.yaml", "d/a.yaml"));
        assert!(m("a?c", "abc"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[^a-c]x", "bx"));
        assert!(m("\\*", "*"));
        assert!(m("**/*.swp", "x.swp"));
        assert!(m("**/*.swp", "a/b/x.swp"));
        assert!(m("a/**", "a/b/c"));
        assert!(m("a/**/z", "a/z"));
        assert!(Pattern::new("[a-").is_err());
        assert!(Pattern::new("a\\").is_err());
        assert!(Pattern::new("[]").is_err());
    }

    #[test]
    fn dockerignore_rules() {
        let (ig, errs) = Ignore::parse("# c\n/tmp\n*.log\n!keep.log\n  \nsrc/*/gen\n[\n");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, 7);
        assert!(ig.is_excluded("tmp"));
        assert!(ig.is_excluded("tmp/a/b"));
        assert!(ig.is_excluded("x.log"));
        assert!(!ig.is_excluded("keep.log"));
        assert!(!ig.is_excluded("d/x.log"));
        assert!(ig.is_excluded("src/a/gen/f"));
        assert!(!ig.is_excluded("src/gen"));
        assert!(!ig.can_prune());
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean("./a//b/../c/"), "a/c");
        assert_eq!(clean(""), ".");
        assert_eq!(clean("../x"), "../x");
        assert_eq!(clean("/../x"), "/x");
    }
}
