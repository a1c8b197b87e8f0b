//! Encodings and conversions: `toYaml` (go-yaml v2's layout: sorted keys, sequences not
//! indented under their key, strings quoted when they would read back as something else),
//! `toJson` (Go's encoder, HTML-escaped), `fromYaml`/`fromJson` (Helm's: a map holding
//! `Error` on failure), base64, SHA-256 and sprig's lenient number casts.

use std::fmt::Write as _;

use base64::Engine as _;
use sha2::Digest as _;

use super::coll::{parse_go_int, to_f64, to_i64};
use super::{count, string, strval};
use crate::template::value::{format_float_json, Map, Object, Value};
use crate::yaml::{self, Node, Yaml};

const MAX_DEPTH: usize = 100;

/// A YAML node as Helm sees it after its YAML→JSON round trip: numbers are `float64`,
/// keys are strings, `<<` merge keys are applied.
pub(crate) fn yaml_to_value(node: &Node) -> Value {
    fn go(node: &Node, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::Nil;
        }
        match &node.value {
            Yaml::Null => Value::Nil,
            Yaml::Bool(b) => Value::Bool(*b),
            Yaml::Int(i) => Value::Float(*i as f64),
            Yaml::Float(f) => Value::Float(*f),
            Yaml::Str(s) => Value::str(s.as_str()),
            Yaml::Seq(items) => Value::list(items.iter().map(|n| go(n, depth + 1)).collect()),
            Yaml::Map(entries) => {
                let mut m = Map::new();
                for (k, v) in entries {
                    if matches!(&k.value, Yaml::Str(s) if s == "<<") {
                        let merged: Vec<&Node> = match &v.value {
                            Yaml::Seq(items) => items.iter().collect(),
                            _ => vec![v],
                        };
                        for src in merged {
                            if let Value::Map(sm) = go(src, depth + 1) {
                                for (sk, sv) in sm.borrow().iter() {
                                    m.entry(sk.clone()).or_insert_with(|| sv.clone());
                                }
                            }
                        }
                        continue;
                    }
                    m.insert(key_text(k), go(v, depth + 1));
                }
                Value::map(m)
            }
        }
    }
    go(node, 0)
}

fn key_text(k: &Node) -> String {
    match &k.value {
        Yaml::Null => "null".into(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Int(i) => i.to_string(),
        Yaml::Float(f) => format_float_json(*f),
        Yaml::Str(s) => s.clone(),
        _ => String::new(),
    }
}

fn plain_ok(s: &str) -> bool {
    if s.is_empty() || s.trim() != s || !matches!(yaml::resolve(s), Yaml::Str(_)) {
        return false;
    }
    if matches!(s, "y" | "Y" | "n" | "N" | "=" | "<<") {
        return false;
    }
    let first = s.chars().next().unwrap_or(' ');
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return s.len() > 1
            && (first == '-' || first == '?' || first == ':')
            && !s[1..].starts_with(' ')
            && plain_rest(s);
    }
    plain_rest(s)
}

fn plain_rest(s: &str) -> bool {
    !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && !s.chars().any(|c| c.is_control() || c == '\u{feff}')
}

fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || c == '\u{feff}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn scalar(v: &Value) -> Option<String> {
    Some(match v {
        Value::Nil => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format_float_json(*f),
        Value::Str(s) if s.contains('\n') => return None,
        Value::Str(s) if plain_ok(s) => s.to_string(),
        Value::Str(s) => quoted(s),
        Value::List(l) if l.is_empty() => "[]".into(),
        Value::Map(m) if m.borrow().is_empty() => "{}".into(),
        Value::Object(o) => match &**o {
            Object::Struct { .. } | Object::ApiVersions(_) | Object::Files(_) => quoted(&v.to_go()),
        },
        _ => return None,
    })
}

fn literal_ok(s: &str) -> bool {
    !s.starts_with([' ', '\t', '\n'])
        && !s
            .chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{feff}')
        && !s.lines().any(|l| l.ends_with([' ', '\t']))
}

struct Emitter {
    out: String,
    budget: usize,
}

impl Emitter {
    fn push(&mut self, s: &str) -> Result<(), String> {
        if self.out.len() + s.len() > self.budget {
            return Err("result larger than the output bound".into());
        }
        self.out.push_str(s);
        Ok(())
    }

    /// Writes `v` after a key or dash, whose line is already started; `indent` is the
    /// column of nested mappings.
    fn value(&mut self, v: &Value, indent: usize, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("value nested too deep to encode".into());
        }
        if let Some(s) = scalar(v) {
            return self.push(&format!(" {s}\n"));
        }
        match v {
            Value::Str(s) => self.block(s, indent),
            Value::List(items) => {
                self.push("\n")?;
                self.seq(items, indent.saturating_sub(2), depth)
            }
            Value::Map(m) => {
                self.push("\n")?;
                let m = m.borrow().clone();
                self.map(&m, indent, depth)
            }
            _ => Ok(()),
        }
    }

    fn block(&mut self, s: &str, indent: usize) -> Result<(), String> {
        if !literal_ok(s) {
            return self.push(&format!(" {}\n", quoted(s)));
        }
        let chomp = if s.ends_with("\n\n") {
            "+"
        } else if s.ends_with('\n') {
            ""
        } else {
            "-"
        };
        self.push(&format!(" |{chomp}\n"))?;
        let pad = " ".repeat(indent);
        let body = s.strip_suffix('\n').unwrap_or(s);
        for line in body.split('\n') {
            if line.is_empty() {
                self.push("\n")?;
            } else {
                self.push(&format!("{pad}{line}\n"))?;
            }
        }
        Ok(())
    }

    fn map(&mut self, m: &Map, indent: usize, depth: usize) -> Result<(), String> {
        let pad = " ".repeat(indent);
        for (k, v) in m {
            let key = if plain_ok(k) { k.clone() } else { quoted(k) };
            self.push(&format!("{pad}{key}:"))?;
            self.value(v, indent + 2, depth + 1)?;
        }
        Ok(())
    }

    fn seq(&mut self, items: &[Value], indent: usize, depth: usize) -> Result<(), String> {
        let pad = " ".repeat(indent);
        for item in items {
            self.push(&format!("{pad}-"))?;
            match item {
                Value::Map(m) if !m.borrow().is_empty() => {
                    let m = m.borrow().clone();
                    let mut first = true;
                    for (k, v) in &m {
                        let key = if plain_ok(k) { k.clone() } else { quoted(k) };
                        if first {
                            self.push(&format!(" {key}:"))?;
                            first = false;
                        } else {
                            self.push(&format!("{pad}  {key}:"))?;
                        }
                        self.value(v, indent + 4, depth + 1)?;
                    }
                }
                Value::List(l) if !l.is_empty() => {
                    self.push("\n")?;
                    self.seq(l, indent + 2, depth + 1)?;
                }
                other => self.value(other, indent + 2, depth + 1)?,
            }
        }
        Ok(())
    }
}

/// go-yaml v2's encoding of `v`, ending in a newline.
pub(crate) fn to_yaml(v: &Value) -> Result<String, String> {
    let mut e = Emitter {
        out: String::new(),
        budget: crate::template::exec::MAX_OUTPUT,
    };
    match v {
        Value::Map(m) if !m.borrow().is_empty() => {
            let m = m.borrow().clone();
            e.map(&m, 0, 0)?;
        }
        Value::List(l) if !l.is_empty() => e.seq(l, 0, 0)?,
        Value::Str(s) if s.contains('\n') => {
            e.block(s, 2)?;
            e.out = e.out.trim_start().to_string();
        }
        other => e.push(&format!("{}\n", scalar(other).unwrap_or_default()))?,
    }
    Ok(e.out)
}

/// Go's `json.Marshal` of `v` (`html`: escape `<`, `>`, `&`), or indented by `pretty`.
pub(crate) fn to_json(v: &Value, html: bool, pretty: bool) -> Result<String, String> {
    fn s(out: &mut String, text: &str, html: bool) {
        out.push('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '<' | '>' | '&' if html => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                '\u{2028}' | '\u{2029}' => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    fn go(
        out: &mut String,
        v: &Value,
        html: bool,
        pretty: bool,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH || out.len() > crate::template::exec::MAX_OUTPUT {
            return Err("value too large or nested too deep to encode".into());
        }
        let nl = |out: &mut String, d: usize| {
            if pretty {
                out.push('\n');
                out.push_str(&"  ".repeat(d));
            }
        };
        match v {
            Value::Nil => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(f) if f.is_finite() => out.push_str(&format_float_json(*f)),
            Value::Float(f) => return Err(format!("json: unsupported value: {f}")),
            Value::Str(t) => s(out, t, html),
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    nl(out, depth + 1);
                    go(out, item, html, pretty, depth + 1)?;
                }
                if !items.is_empty() {
                    nl(out, depth);
                }
                out.push(']');
            }
            Value::Map(m) => {
                out.push('{');
                let m = m.borrow().clone();
                for (i, (k, item)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    nl(out, depth + 1);
                    s(out, k, html);
                    out.push(':');
                    if pretty {
                        out.push(' ');
                    }
                    go(out, item, html, pretty, depth + 1)?;
                }
                if !m.is_empty() {
                    nl(out, depth);
                }
                out.push('}');
            }
            Value::Object(_) => s(out, &v.to_go(), html),
        }
        Ok(())
    }
    let mut out = String::new();
    go(&mut out, v, html, pretty, 0)?;
    Ok(out)
}

fn from_yaml(text: &str, array: bool) -> Value {
    let error = |msg: String| {
        if array {
            Value::list(vec![Value::str(msg)])
        } else {
            let mut m = Map::new();
            m.insert("Error".into(), Value::str(msg));
            Value::map(m)
        }
    };
    match yaml::parse_stream(text) {
        Ok(docs) => match docs.first().map(yaml_to_value) {
            None if array => Value::list(Vec::new()),
            None => Value::map(Map::new()),
            Some(v @ Value::Map(_)) if !array => v,
            Some(v @ Value::List(_)) if array => v,
            Some(other) => error(format!(
                "cannot unmarshal {} into {}",
                other.type_name(),
                if array {
                    "[]interface {}"
                } else {
                    "map[string]interface {}"
                }
            )),
        },
        Err(e) => error(format!("yaml: line {}: {}", e.line, e.message)),
    }
}

/// The conversion functions; `None` when `name` is not one of them.
pub(super) fn call(name: &str, args: &[Value], _budget: usize) -> Result<Option<Value>, String> {
    let one = || match args {
        [a] => Ok(a),
        _ => Err(count(name, 1, args.len())),
    };
    let v = match name {
        "b64enc" => Value::str(base64::engine::general_purpose::STANDARD.encode(string(one()?)?)),
        "b64dec" => {
            let s = string(one()?)?;
            match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(b) => Value::str(String::from_utf8_lossy(&b).into_owned()),
                Err(e) => Value::str(e.to_string()),
            }
        }
        "sha256sum" => Value::str(hex::encode(sha2::Sha256::digest(
            string(one()?)?.as_bytes(),
        ))),
        "toYaml" | "mustToYaml" => match to_yaml(one()?) {
            Ok(s) => Value::str(s.strip_suffix('\n').unwrap_or(&s)),
            Err(e) if name == "mustToYaml" => return Err(e),
            Err(e) if e.contains("output bound") => return Err(e),
            Err(_) => Value::str(""),
        },
        "toJson" | "mustToJson" | "toRawJson" | "mustToRawJson" | "toPrettyJson"
        | "mustToPrettyJson" => {
            let html = !name.contains("Raw");
            match to_json(one()?, html, name.contains("Pretty")) {
                Ok(s) => Value::str(s),
                Err(e) if name.starts_with("must") => return Err(e),
                Err(_) => Value::str(""),
            }
        }
        "sha1sum" => Value::str(hex::encode(ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            string(one()?)?.as_bytes(),
        ))),
        "sha512sum" => Value::str(hex::encode(sha2::Sha512::digest(
            string(one()?)?.as_bytes(),
        ))),
        "adler32sum" => {
            let (mut a, mut b) = (1u32, 0u32);
            for byte in string(one()?)?.bytes() {
                a = (a + u32::from(byte)) % 65521;
                b = (b + a) % 65521;
            }
            Value::str(((b << 16) | a).to_string())
        }
        "mustFromJson" => {
            let v = from_yaml(string(one()?)?, false);
            if let Value::Map(m) = &v {
                if let Some(Value::Str(e)) = m.borrow().get("Error") {
                    return Err(e.to_string());
                }
            }
            v
        }
        "fromYaml" | "fromJson" => from_yaml(string(one()?)?, false),
        "fromYamlArray" | "fromJsonArray" => from_yaml(string(one()?)?, true),
        "int" | "int64" => Value::Int(match one()? {
            Value::Str(s) => parse_go_int(s.trim()).unwrap_or(0),
            v => to_i64(v),
        }),
        "float64" => Value::Float(to_f64(one()?)),
        "atoi" => Value::Int(string(one()?)?.trim().parse().unwrap_or(0)),
        _ => return Ok(None),
    };
    let _ = strval;
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Value {
        yaml_to_value(&yaml::parse_stream(text).unwrap()[0])
    }

    #[test]
    fn to_yaml_round_trips() {
        let text = "b:\n  list:\n  - x: 1\n    y: \"true\"\n  - - nested\n  s: |-\n    line one\n    line two\na: \"\"\nc: {}\nd: []\ne: \"- x\"\nf: 1.5\ng: null\nh: 'a: b'\n";
        let v = parse(text);
        let out = to_yaml(&v).unwrap();
        assert_eq!(parse(&out).to_go(), v.to_go(), "{out}");
        assert!(
            out.starts_with("a: \"\"\nb:\n  list:\n  - x: 1\n    \"y\": \"true\"\n"),
            "{out}"
        );
    }

    #[test]
    fn to_json_is_gos() {
        let v = parse("b: [1, 2.5, \"<x>\"]\na: {c: null}\n");
        assert_eq!(
            to_json(&v, true, false).unwrap(),
            r#"{"a":{"c":null},"b":[1,2.5,"\u003cx\u003e"]}"#
        );
        assert_eq!(to_json(&v, false, true).unwrap().lines().count(), 10);
    }

    #[test]
    fn checksums() {
        let run = |name: &str| {
            call(name, &[Value::str("abc")], 100)
                .unwrap()
                .unwrap()
                .to_go()
        };
        assert_eq!(run("sha1sum"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            run("sha256sum"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(run("sha512sum").starts_with("ddaf35a193617aba"));
        assert_eq!(run("adler32sum"), "38600999");
    }

    #[test]
    fn from_yaml_errors_in_a_map() {
        let v = from_yaml("a: [", false);
        assert!(
            v.to_go().starts_with("map[Error:yaml: line"),
            "{}",
            v.to_go()
        );
    }
}
