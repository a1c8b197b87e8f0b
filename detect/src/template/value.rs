//! The values templates compute with, shaped like what Go's `text/template` sees in Helm:
//! values files decode to `float64` numbers, strings, `[]interface{}` and
//! `map[string]interface{}` (shared by reference, so sprig's `set` is seen by every holder),
//! and the objects Helm passes (`.Chart`, `.Capabilities`, `.Files`) are structs whose
//! missing fields are errors. Printing follows Go's `%v`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

/// A map of values, in key order (Go's templates and encoders sort map keys).
pub(crate) type Map = BTreeMap<String, Value>;

/// A template value.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// Go's `nil` (a missing map key under Helm's `missingkey=zero`).
    Nil,
    /// `bool`.
    Bool(bool),
    /// `int` (template literals and function results).
    Int(i64),
    /// `float64` (every number of a values file).
    Float(f64),
    /// `string`.
    Str(Rc<str>),
    /// `[]interface{}`.
    List(Rc<Vec<Value>>),
    /// `map[string]interface{}`, shared.
    Map(Rc<RefCell<Map>>),
    /// A Go struct Helm passes in.
    Object(Rc<Object>),
}

/// The struct values of Helm's top-level object.
#[derive(Debug)]
pub(crate) enum Object {
    /// Fields by name; a missing one is an error. `text` is what `%v` prints, if set.
    Struct {
        /// The Go type, for messages.
        type_name: &'static str,
        /// The fields.
        fields: BTreeMap<&'static str, Value>,
        /// Its `String()` method.
        text: Option<String>,
    },
    /// `.Files`: the chart's non-template files.
    Files(Rc<BTreeMap<String, Rc<Vec<u8>>>>),
    /// `.Capabilities.APIVersions`.
    ApiVersions(Rc<Vec<String>>),
}

impl Value {
    /// A string value.
    pub(crate) fn str(s: impl Into<Rc<str>>) -> Value {
        Value::Str(s.into())
    }

    /// A new shared map.
    pub(crate) fn map(m: Map) -> Value {
        Value::Map(Rc::new(RefCell::new(m)))
    }

    /// A list.
    pub(crate) fn list(v: Vec<Value>) -> Value {
        Value::List(Rc::new(v))
    }

    /// Go's truth of a value (`if`, `with`, `and`, `not`).
    pub(crate) fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.borrow().is_empty(),
            Value::Object(_) => true,
        }
    }

    /// Go's type name (sprig's `typeOf`).
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "[]interface {}",
            Value::Map(_) => "map[string]interface {}",
            Value::Object(o) => match &**o {
                Object::Struct { type_name, .. } => type_name,
                Object::Files(_) => "chart.Files",
                Object::ApiVersions(_) => "chartutil.VersionSet",
            },
        }
    }

    /// Go's kind name (sprig's `kindOf`, `kindIs`).
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Value::Nil => "invalid",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "slice",
            Value::Map(_) => "map",
            Value::Object(o) => match &**o {
                Object::Files(_) => "map",
                Object::ApiVersions(_) => "slice",
                Object::Struct { .. } => "ptr",
            },
        }
    }

    /// The string inside, if this is a string.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// What `{{ . }}` prints (Go's `%v`; Helm prints `nil` as nothing).
    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        self.write_go(&mut out, 0, true);
        out
    }

    /// Go's `%v` (`<nil>` for nil).
    pub(crate) fn to_go(&self) -> String {
        let mut out = String::new();
        self.write_go(&mut out, 0, false);
        out
    }

    fn write_go(&self, out: &mut String, depth: usize, top: bool) {
        // Shared maps can hold themselves: bound the depth and the text.
        if depth > 64 || out.len() > super::exec::MAX_OUTPUT {
            out.push_str("...");
            return;
        }
        match self {
            Value::Nil if top => {}
            Value::Nil => out.push_str("<nil>"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&format_float_g(*f)),
            Value::Str(s) => out.push_str(s),
            Value::List(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.write_go(out, depth + 1, false);
                }
                out.push(']');
            }
            Value::Map(m) => {
                out.push_str("map[");
                for (i, (k, v)) in m.borrow().iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    v.write_go(out, depth + 1, false);
                }
                out.push(']');
            }
            Value::Object(o) => match &**o {
                Object::Struct { text: Some(t), .. } => out.push_str(t),
                Object::Struct { fields, .. } => {
                    out.push('{');
                    for (i, v) in fields.values().enumerate() {
                        if i > 0 {
                            out.push(' ');
                        }
                        v.write_go(out, depth + 1, false);
                    }
                    out.push('}');
                }
                Object::Files(files) => {
                    out.push_str("map[");
                    let names: Vec<&str> = files.keys().map(String::as_str).collect();
                    out.push_str(&names.join(" "));
                    out.push(']');
                }
                Object::ApiVersions(v) => {
                    out.push('[');
                    out.push_str(&v.join(" "));
                    out.push(']');
                }
            },
        }
    }

    /// A deep copy (maps are no longer shared).
    pub(crate) fn deep_copy(&self, depth: usize) -> Value {
        if depth > 100 {
            return Value::Nil;
        }
        match self {
            Value::List(items) => {
                Value::list(items.iter().map(|v| v.deep_copy(depth + 1)).collect())
            }
            Value::Map(m) => Value::map(
                m.borrow()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.deep_copy(depth + 1)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)`: the shortest digits, in `%e` form when the
/// exponent is below -4 or at least 6 (`1e+06`, the famous Helm surprise).
pub(crate) fn format_float_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let s = format!("{f}");
        s
    }
}

/// Go's JSON and YAML encoding of a float: integral values without a fraction.
pub(crate) fn format_float_json(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{}", f as i128)
    } else if f.is_finite() {
        let s = format!("{f}");
        s
    } else if f.is_nan() {
        ".nan".into()
    } else if f > 0.0 {
        ".inf".into()
    } else {
        "-.inf".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go() {
        assert_eq!(format_float_g(8080.0), "8080");
        assert_eq!(format_float_g(1e6), "1e+06");
        assert_eq!(format_float_g(1234567.0), "1.234567e+06");
        assert_eq!(format_float_g(0.5), "0.5");
        assert_eq!(format_float_g(0.00001), "1e-05");
        assert_eq!(format_float_json(1e6), "1000000");
    }

    #[test]
    fn maps_print_sorted() {
        let mut m = Map::new();
        m.insert("b".into(), Value::Int(2));
        m.insert("a".into(), Value::list(vec![Value::str("x"), Value::Nil]));
        assert_eq!(Value::map(m).to_text(), "map[a:[x <nil>] b:2]");
    }
}
