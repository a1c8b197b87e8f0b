//! String functions: sprig's string, regular-expression and list-of-string functions, and
//! the deterministic stand-ins for its random ones.

use super::{count, int, string, strval};
use crate::template::value::Value;

fn s1<'a>(name: &str, args: &'a [Value]) -> Result<&'a str, String> {
    match args {
        [a] => string(a),
        _ => Err(count(name, 1, args.len())),
    }
}

fn s2<'a>(name: &str, args: &'a [Value]) -> Result<(&'a str, &'a str), String> {
    match args {
        [a, b] => Ok((string(a)?, string(b)?)),
        _ => Err(count(name, 2, args.len())),
    }
}

fn regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("error parsing regexp {pattern:?}: {e}"))
}

fn bounded(len: usize, budget: usize) -> Result<(), String> {
    if len > budget {
        return Err("result larger than the output bound".into());
    }
    Ok(())
}

/// Go's `%q` of a string.
pub(super) fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn words(s: &str) -> Vec<String> {
    // Split at non-alphanumerics and at lower→upper boundaries, as xstrings does.
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in s.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn title(s: &str) -> String {
    let mut out = String::new();
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

/// Whether `name` matches `pattern` (`*` within a path element, `**` across, `?`, `[...]`).
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') if p.get(1) == Some(&'*') => (0..=n.len()).any(|i| go(&p[2..], &n[i..])),
            Some('*') => {
                for i in 0..=n.len() {
                    if go(&p[1..], &n[i..]) {
                        return true;
                    }
                    if n.get(i) == Some(&'/') {
                        break;
                    }
                }
                false
            }
            Some('?') => n.first().is_some_and(|c| *c != '/') && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(end) = p.iter().position(|c| *c == ']') else {
                    return false;
                };
                let Some(c) = n.first() else { return false };
                let set = &p[1..end];
                let (neg, set) = match set.first() {
                    Some('!' | '^') => (true, &set[1..]),
                    _ => (false, set),
                };
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= *c && *c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == *c;
                        i += 1;
                    }
                }
                hit != neg && go(&p[end + 1..], &n[1..])
            }
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    if p.len() > 200 {
        return false;
    }
    go(&p, &n)
}

fn random(n: i64, alphabet: &str, budget: usize) -> Result<Value, String> {
    // Random by definition: any characters of the alphabet are a correct result, and
    // fixed ones keep detection reproducible.
    let n = usize::try_from(n).map_err(|_| "negative length".to_string())?;
    bounded(n, budget)?;
    let chars: Vec<char> = alphabet.chars().collect();
    Ok(Value::str(
        (0..n)
            .map(|i| chars[(i * 7 + 3) % chars.len()])
            .collect::<String>(),
    ))
}

/// The string functions; `None` when `name` is not one of them.
pub(super) fn call(name: &str, args: &[Value], budget: usize) -> Result<Option<Value>, String> {
    let v = match name {
        "quote" => Value::str(
            args.iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(|v| go_quote(&strval(v)))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "squote" => Value::str(
            args.iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(|v| format!("'{}'", strval(v)))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "upper" => Value::str(s1(name, args)?.to_uppercase()),
        "lower" => Value::str(s1(name, args)?.to_lowercase()),
        "title" => Value::str(title(s1(name, args)?)),
        "untitle" => {
            let s = s1(name, args)?;
            let mut out = String::new();
            let mut start = true;
            for c in s.chars() {
                if start {
                    out.extend(c.to_lowercase());
                } else {
                    out.push(c);
                }
                start = c.is_whitespace();
            }
            Value::str(out)
        }
        "trim" => Value::str(s1(name, args)?.trim()),
        "nospace" => Value::str(
            s1(name, args)?
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>(),
        ),
        "trimAll" => {
            let (cut, s) = s2(name, args)?;
            Value::str(s.trim_matches(|c| cut.contains(c)))
        }
        "trimSuffix" => {
            let (suf, s) = s2(name, args)?;
            Value::str(s.strip_suffix(suf).unwrap_or(s))
        }
        "trimPrefix" => {
            let (pre, s) = s2(name, args)?;
            Value::str(s.strip_prefix(pre).unwrap_or(s))
        }
        "contains" => {
            let (sub, s) = s2(name, args)?;
            Value::Bool(s.contains(sub))
        }
        "hasPrefix" => {
            let (pre, s) = s2(name, args)?;
            Value::Bool(s.starts_with(pre))
        }
        "hasSuffix" => {
            let (suf, s) = s2(name, args)?;
            Value::Bool(s.ends_with(suf))
        }
        "replace" => {
            let [old, new, src] = args else {
                return Err(count(name, 3, args.len()));
            };
            let (old, new, src) = (string(old)?, string(new)?, string(src)?);
            let out = src.replace(old, new);
            bounded(out.len(), budget)?;
            Value::str(out)
        }
        "trunc" => {
            let [c, s] = args else {
                return Err(count(name, 2, args.len()));
            };
            let (c, s) = (int(c)?, string(s)?);
            let chars: Vec<char> = s.chars().collect();
            let n = chars.len() as i64;
            let out: String = if c >= 0 {
                chars[..c.min(n) as usize].iter().collect()
            } else {
                chars[(n + c).max(0) as usize..].iter().collect()
            };
            Value::str(out)
        }
        "abbrev" => {
            let [w, s] = args else {
                return Err(count(name, 2, args.len()));
            };
            let (w, s) = (int(w)?, string(s)?);
            let chars: Vec<char> = s.chars().collect();
            if w < 4 || chars.len() as i64 <= w {
                Value::str(s)
            } else {
                Value::str(chars[..(w - 3) as usize].iter().collect::<String>() + "...")
            }
        }
        "repeat" => {
            let [c, s] = args else {
                return Err(count(name, 2, args.len()));
            };
            let (c, s) = (int(c)?, string(s)?);
            let c = usize::try_from(c).map_err(|_| "negative repeat count".to_string())?;
            bounded(c.saturating_mul(s.len()), budget)?;
            Value::str(s.repeat(c))
        }
        "substr" => {
            let [a, b, s] = args else {
                return Err(count(name, 3, args.len()));
            };
            let (a, b, s) = (int(a)?, int(b)?, string(s)?);
            let bytes = s.as_bytes();
            let n = bytes.len() as i64;
            let (a, b) = if a < 0 { (0, b) } else { (a, b) };
            let out = if b < 0 || b > n {
                &bytes[a.min(n) as usize..]
            } else if a > b {
                &[][..]
            } else {
                &bytes[a as usize..b as usize]
            };
            Value::str(String::from_utf8_lossy(out).into_owned())
        }
        "cat" => Value::str(
            args.iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(strval)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "indent" | "nindent" => {
            let [n, s] = args else {
                return Err(count(name, 2, args.len()));
            };
            let (n, s) = (int(n)?, string(s)?);
            let n = usize::try_from(n).map_err(|_| "negative indent".to_string())?;
            let lines = s.matches('\n').count() + 1;
            bounded(n.saturating_mul(lines).saturating_add(s.len()), budget)?;
            let pad = " ".repeat(n);
            let body = format!("{pad}{}", s.replace('\n', &format!("\n{pad}")));
            Value::str(if name == "nindent" {
                format!("\n{body}")
            } else {
                body
            })
        }
        "wrap" => {
            let [w, s] = args else {
                return Err(count(name, 2, args.len()));
            };
            let (w, s) = (int(w)?.max(1) as usize, string(s)?);
            let mut out = String::new();
            let mut line = 0;
            for word in s.split(' ') {
                if line > 0 && line + word.len() > w {
                    out.push('\n');
                    line = 0;
                } else if line > 0 {
                    out.push(' ');
                    line += 1;
                }
                out.push_str(word);
                line += word.len();
            }
            Value::str(out)
        }
        "plural" => {
            let [one, many, n] = args else {
                return Err(count(name, 3, args.len()));
            };
            Value::str(if int(n)? == 1 {
                string(one)?
            } else {
                string(many)?
            })
        }
        "snakecase" => Value::str(
            words(s1(name, args)?)
                .iter()
                .map(|w| w.to_lowercase())
                .collect::<Vec<_>>()
                .join("_"),
        ),
        "kebabcase" => Value::str(
            words(s1(name, args)?)
                .iter()
                .map(|w| w.to_lowercase())
                .collect::<Vec<_>>()
                .join("-"),
        ),
        "camelcase" => Value::str(
            s1(name, args)?
                .split('_')
                .map(|w| {
                    let mut c = w.chars();
                    match c.next() {
                        Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                        None => String::new(),
                    }
                })
                .collect::<String>(),
        ),
        "regexMatch" | "mustRegexMatch" => {
            let (re, s) = s2(name, args)?;
            Value::Bool(regex(re)?.is_match(s))
        }
        "regexFind" | "mustRegexFind" => {
            let (re, s) = s2(name, args)?;
            Value::str(regex(re)?.find(s).map(|m| m.as_str()).unwrap_or(""))
        }
        "regexFindAll" | "mustRegexFindAll" => {
            let [re, s, n] = args else {
                return Err(count(name, 3, args.len()));
            };
            let (re, s, n) = (regex(string(re)?)?, string(s)?, int(n)?);
            let limit = if n < 0 { usize::MAX } else { n as usize };
            Value::list(
                re.find_iter(s)
                    .take(limit)
                    .map(|m| Value::str(m.as_str()))
                    .collect(),
            )
        }
        "regexReplaceAll"
        | "mustRegexReplaceAll"
        | "regexReplaceAllLiteral"
        | "mustRegexReplaceAllLiteral" => {
            let [re, s, r] = args else {
                return Err(count(name, 3, args.len()));
            };
            let (re, s, r) = (regex(string(re)?)?, string(s)?, string(r)?);
            let out = if name.contains("Literal") {
                re.replace_all(s, regex::NoExpand(r))
            } else {
                re.replace_all(s, r)
            };
            bounded(out.len(), budget)?;
            Value::str(out.into_owned())
        }
        "regexSplit" | "mustRegexSplit" => {
            let [re, s, n] = args else {
                return Err(count(name, 3, args.len()));
            };
            let (re, s, n) = (regex(string(re)?)?, string(s)?, int(n)?);
            let parts: Vec<Value> = if n < 0 {
                re.split(s).map(Value::str).collect()
            } else {
                re.splitn(s, n as usize).map(Value::str).collect()
            };
            Value::list(parts)
        }
        "splitList" => {
            let (sep, s) = s2(name, args)?;
            Value::list(
                split(s, sep, usize::MAX)
                    .into_iter()
                    .map(Value::str)
                    .collect(),
            )
        }
        "split" | "splitn" => {
            let (sep, s, n) = match (name, args) {
                ("split", [sep, s]) => (string(sep)?, string(s)?, usize::MAX),
                ("splitn", [sep, n, s]) => (
                    string(sep)?,
                    string(s)?,
                    usize::try_from(int(n)?).unwrap_or(0),
                ),
                _ => return Err(count(name, if name == "split" { 2 } else { 3 }, args.len())),
            };
            let mut m = crate::template::value::Map::new();
            for (i, part) in split(s, sep, n).into_iter().enumerate() {
                m.insert(format!("_{i}"), Value::str(part));
            }
            Value::map(m)
        }
        "join" => {
            let [sep, v] = args else {
                return Err(count(name, 2, args.len()));
            };
            let sep = string(sep)?;
            let parts: Vec<String> = strslice(v);
            Value::str(parts.join(sep))
        }
        "toStrings" => {
            let [v] = args else {
                return Err(count(name, 1, args.len()));
            };
            Value::list(strslice(v).into_iter().map(Value::str).collect())
        }
        "sortAlpha" => {
            let [v] = args else {
                return Err(count(name, 1, args.len()));
            };
            let mut parts = strslice(v);
            parts.sort();
            Value::list(parts.into_iter().map(Value::str).collect())
        }
        "toString" => {
            let [v] = args else {
                return Err(count(name, 1, args.len()));
            };
            Value::str(strval(v))
        }
        "randAlphaNum" | "randAlpha" | "randNumeric" | "randAscii" => {
            let [n] = args else {
                return Err(count(name, 1, args.len()));
            };
            let alphabet = match name {
                "randAlphaNum" => "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
                "randAlpha" => "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
                "randNumeric" => "0123456789",
                _ => "!#%&()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_abcdefghijklmnopqrstuvwxyz{|}~",
            };
            random(int(n)?, alphabet, budget)?
        }
        "uuidv4" => Value::str("00000000-0000-4000-8000-000000000000"),
        "base" | "dir" | "ext" | "clean" | "isAbs" => {
            let p = s1(name, args)?;
            match name {
                "base" => Value::str(path_base(p)),
                "dir" => Value::str(path_clean(match p.rfind('/') {
                    Some(i) => &p[..=i],
                    None => "",
                })),
                "ext" => {
                    let b = &p[p.rfind('/').map_or(0, |i| i + 1)..];
                    Value::str(b.rfind('.').map_or("", |i| &b[i..]))
                }
                "clean" => Value::str(path_clean(p)),
                _ => Value::Bool(p.starts_with('/')),
            }
        }
        "html" | "js" | "urlquery" => {
            let text: String = args.iter().map(strval).collect::<Vec<_>>().join(" ");
            Value::str(match name {
                "html" => escape_html(&text),
                "js" => escape_js(&text),
                _ => escape_query(&text),
            })
        }
        _ => return Ok(None),
    };
    Ok(Some(v))
}

/// Go's `path.Base`.
fn path_base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

/// Go's `path.Clean`.
fn path_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Go's `template.HTMLEscapeString`.
fn escape_html(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
fn escape_js(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' | '>' | '&' | '=' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Go's `url.QueryEscape`.
fn escape_query(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn split<'a>(s: &'a str, sep: &str, n: usize) -> Vec<&'a str> {
    if n == 0 {
        return Vec::new();
    }
    if sep.is_empty() {
        let mut out: Vec<&str> = Vec::new();
        let mut idx: Vec<usize> = s.char_indices().map(|(i, _)| i).collect();
        idx.push(s.len());
        for w in idx.windows(2) {
            if out.len() + 1 == n {
                out.push(&s[w[0]..]);
                return out;
            }
            out.push(&s[w[0]..w[1]]);
        }
        return out;
    }
    s.splitn(n, sep).collect()
}

/// sprig's `strslice`: a list's non-nil items as strings; a string alone; nil as nothing.
pub(super) fn strslice(v: &Value) -> Vec<String> {
    match v {
        Value::List(items) => items
            .iter()
            .filter(|v| !matches!(v, Value::Nil))
            .map(strval)
            .collect(),
        Value::Nil => Vec::new(),
        other => vec![strval(other)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::str(v)
    }

    fn run(name: &str, args: &[Value]) -> String {
        call(name, args, 1 << 20).unwrap().unwrap().to_go()
    }

    #[test]
    fn string_functions() {
        assert_eq!(run("trunc", &[Value::Int(5), s("ingress-nginx")]), "ingre");
        assert_eq!(run("trunc", &[Value::Int(-5), s("ingress-nginx")]), "nginx");
        assert_eq!(
            run("nindent", &[Value::Int(2), s("a: 1\nb: 2")]),
            "\n  a: 1\n  b: 2"
        );
        assert_eq!(run("title", &[s("hello wide world")]), "Hello Wide World");
        assert_eq!(run("replace", &[s("+"), s("_"), s("v1+k3s")]), "v1_k3s");
        assert_eq!(run("splitList", &[s(","), s("a,b")]), "[a b]");
        assert_eq!(
            run(
                "join",
                &[s("-"), Value::list(vec![s("a"), Value::Int(1), Value::Nil])]
            ),
            "a-1"
        );
        assert_eq!(
            run(
                "regexReplaceAll",
                &[s("a(x*)b"), s("-ab-axxb-"), s("${1}W")]
            ),
            "-W-xxW-"
        );
        assert_eq!(run("snakecase", &[s("FirstName")]), "first_name");
        assert_eq!(go_quote("a\"b\n"), "\"a\\\"b\\n\"");
        assert!(call("upper", &[Value::Float(1.0)], 10)
            .unwrap_err()
            .contains("expected string; got float64"));
        assert!(call("repeat", &[Value::Int(1 << 40), s("x")], 10).is_err());
    }

    #[test]
    fn paths_and_escapes() {
        assert_eq!(run("base", &[s("a/b/c.yaml")]), "c.yaml");
        assert_eq!(run("dir", &[s("a/b/c.yaml")]), "a/b");
        assert_eq!(run("ext", &[s("a/b/c.yaml")]), ".yaml");
        assert_eq!(run("clean", &[s("a/../b/./c/")]), "b/c");
        assert_eq!(
            run("html", &[s("<a href=\"x\">&</a>")]),
            "&lt;a href=&#34;x&#34;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(run("js", &[s("it's <b>")]), "it\\'s \\u003Cb\\u003E");
        assert_eq!(run("urlquery", &[s("a b&c")]), "a+b%26c");
    }

    #[test]
    fn globs() {
        assert!(glob_match("files/*.conf", "files/a.conf"));
        assert!(!glob_match("files/*.conf", "files/x/a.conf"));
        assert!(glob_match("files/**.conf", "files/x/a.conf"));
        assert!(glob_match("f?le[0-9]", "file7"));
    }
}
