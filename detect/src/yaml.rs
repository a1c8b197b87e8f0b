//! YAML streams parsed into trees that keep each node's line and column, so an image is
//! reported where it is written and a malformed document where it breaks.
//!
//! Events come from `saphyr-parser` (a YAML 1.2 parser); scalars are resolved the way
//! Kubernetes and Helm read them (go-yaml: `true`/`yes`/`on` are booleans, `~` and `null`
//! are null, integers and floats by their YAML forms). Aliases are expanded with a bound on
//! the total number of nodes (no alias bomb) and nesting is bounded.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 200;
/// Most nodes of one stream, aliases expanded.
const MAX_NODES: usize = 2_000_000;

/// A node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// Its value.
    pub(crate) value: Yaml,
    /// 1-based line.
    pub(crate) line: u32,
    /// 1-based column.
    pub(crate) column: u32,
}

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Yaml {
    /// `null`, `~` or nothing.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The value of key `key` of a mapping.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Yaml::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.value, Yaml::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string value, if this is a string.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.value {
            Yaml::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A stream that is not YAML, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    /// 1-based line.
    pub(crate) line: u32,
    /// 1-based column.
    pub(crate) column: u32,
    /// What is wrong.
    pub(crate) message: String,
}

fn pos(span: &Span) -> (u32, u32) {
    (
        u32::try_from(span.start.line()).unwrap_or(u32::MAX),
        u32::try_from(span.start.col() + 1).unwrap_or(u32::MAX),
    )
}

enum Frame {
    Seq(Node, usize),
    Map(Node, usize, Option<Node>),
}

/// Parses every document of `text`; empty documents are left out.
pub(crate) fn parse_stream(text: &str) -> Result<Vec<Node>, YamlError> {
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: std::collections::HashMap<usize, Node> = std::collections::HashMap::new();
    let mut nodes = 0usize;
    let mut root: Option<Node> = None;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| YamlError {
            line: u32::try_from(e.marker().line()).unwrap_or(u32::MAX),
            column: u32::try_from(e.marker().col() + 1).unwrap_or(u32::MAX),
            message: e.info().to_string(),
        })?;
        let (line, column) = pos(&span);
        let err = |message: &str| YamlError {
            line,
            column,
            message: message.to_string(),
        };
        let done: Option<Node> = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => None,
            Event::DocumentStart(_) => {
                root = None;
                None
            }
            Event::DocumentEnd => {
                if let Some(doc) = root.take() {
                    if doc.value != Yaml::Null {
                        docs.push(doc);
                    }
                }
                None
            }
            Event::Alias(id) => {
                let node = anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| err("unknown alias"))?;
                nodes += count(&node);
                Some(Node {
                    line,
                    column,
                    ..node
                })
            }
            Event::Scalar(value, style, anchor, tag) => {
                nodes += 1;
                let plain = style == ScalarStyle::Plain;
                let tagged_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let v = if plain && !tagged_str {
                    resolve(&value)
                } else {
                    Yaml::Str(value.into_owned())
                };
                let node = Node {
                    value: v,
                    line,
                    column,
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                Some(node)
            }
            Event::SequenceStart(anchor, _) => {
                nodes += 1;
                if stack.len() >= MAX_DEPTH {
                    return Err(err("nesting too deep"));
                }
                stack.push(Frame::Seq(
                    Node {
                        value: Yaml::Seq(Vec::new()),
                        line,
                        column,
                    },
                    anchor,
                ));
                None
            }
            Event::MappingStart(anchor, _) => {
                nodes += 1;
                if stack.len() >= MAX_DEPTH {
                    return Err(err("nesting too deep"));
                }
                stack.push(Frame::Map(
                    Node {
                        value: Yaml::Map(Vec::new()),
                        line,
                        column,
                    },
                    anchor,
                    None,
                ));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq(node, anchor)) | Some(Frame::Map(node, anchor, None)) => {
                    if anchor > 0 {
                        anchors.insert(anchor, node.clone());
                    }
                    Some(node)
                }
                _ => return Err(err("unbalanced collection")),
            },
        };
        if nodes > MAX_NODES {
            return Err(err("too many nodes (aliases expand past the bound)"));
        }
        if let Some(node) = done {
            match stack.last_mut() {
                None => root = Some(node),
                Some(Frame::Seq(seq, _)) => {
                    if let Yaml::Seq(items) = &mut seq.value {
                        items.push(node);
                    }
                }
                Some(Frame::Map(map, _, key)) => match key.take() {
                    None => *key = Some(node),
                    Some(k) => {
                        if let Yaml::Map(entries) = &mut map.value {
                            entries.push((k, node));
                        }
                    }
                },
            }
        }
    }
    Ok(docs)
}

fn count(node: &Node) -> usize {
    match &node.value {
        Yaml::Seq(items) => 1 + items.iter().map(count).sum::<usize>(),
        Yaml::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count(k) + count(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// The value of a plain scalar, as go-yaml resolves it.
pub(crate) fn resolve(s: &str) -> Yaml {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Yaml::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => {
            return if s.eq_ignore_ascii_case("y") {
                Yaml::Str(s.into())
            } else {
                Yaml::Bool(true)
            }
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            return Yaml::Bool(false)
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Yaml::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Yaml::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Yaml::Float(f64::NAN),
        _ => {}
    }
    if let Some(i) = parse_int(s) {
        return Yaml::Int(i);
    }
    let looks_float = s
        .trim_start_matches(['-', '+'])
        .starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && s.chars()
            .all(|c| c.is_ascii_digit() || "+-.eE_".contains(c))
        && s.chars().any(|c| c.is_ascii_digit());
    if looks_float {
        if let Ok(f) = s.replace('_', "").parse::<f64>() {
            return Yaml::Float(f);
        }
    }
    Yaml::Str(s.to_string())
}

fn parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() || !body.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let clean = body.replace('_', "");
    let v = if let Some(h) = clean.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(o) = clean.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()?
    } else if let Some(b) = clean.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else if clean.len() > 1 && clean.starts_with('0') && clean.chars().all(|c| c.is_ascii_digit())
    {
        i64::from_str_radix(&clean[1..], 8).ok()?
    } else if clean.chars().all(|c| c.is_ascii_digit()) {
        clean.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_documents() {
        let docs = parse_stream("a: 1\n---\n# empty\n---\nb:\n  - image: \"x\"\n").unwrap();
        assert_eq!(docs.len(), 2);
        let item = &docs[1].get("b").unwrap();
        let Yaml::Seq(items) = &item.value else {
            panic!()
        };
        let image = items[0].get("image").unwrap();
        assert_eq!(
            (image.line, image.column, image.as_str()),
            (6, 12, Some("x"))
        );
    }

    #[test]
    fn scalars_resolve_as_go_yaml() {
        assert_eq!(resolve("yes"), Yaml::Bool(true));
        assert_eq!(resolve("0x10"), Yaml::Int(16));
        assert_eq!(resolve("1.5"), Yaml::Float(1.5));
        assert_eq!(resolve("1.25.0"), Yaml::Str("1.25.0".into()));
        assert_eq!(resolve("~"), Yaml::Null);
        assert_eq!(resolve("v1"), Yaml::Str("v1".into()));
    }

    #[test]
    fn malformed_yaml_has_a_position() {
        let err = parse_stream("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
        let err = parse_stream("a: b: c\n").unwrap_err();
        assert_eq!(err.line, 1, "{err:?}");
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            text.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        assert!(parse_stream(&text)
            .unwrap_err()
            .message
            .contains("too many nodes"));
    }
}
