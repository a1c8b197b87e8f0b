//! Lists, dicts, comparisons, logic and integer math: Go's comparison builtins with their
//! kind rules (an `int` never equals a values-file `float64`), and sprig's collection
//! functions, whose dicts are shared maps (`set` and `merge` change them in place).

use std::rc::Rc;

use super::{count, int, string, strval};
use crate::template::value::{Map, Value};

#[derive(PartialEq, Eq, Clone, Copy)]
enum Kind {
    Invalid,
    Bool,
    Int,
    Float,
    Str,
    Other,
}

fn kind(v: &Value) -> Kind {
    match v {
        Value::Nil => Kind::Invalid,
        Value::Bool(_) => Kind::Bool,
        Value::Int(_) => Kind::Int,
        Value::Float(_) => Kind::Float,
        Value::Str(_) => Kind::Str,
        _ => Kind::Other,
    }
}

/// `reflect.DeepEqual`.
pub(super) fn deep_eq(a: &Value, b: &Value, depth: usize) -> bool {
    if depth > 100 {
        return false;
    }
    match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|(a, b)| deep_eq(a, b, depth + 1))
        }
        (Value::Map(x), Value::Map(y)) => {
            if Rc::ptr_eq(x, y) {
                return true;
            }
            let (x, y) = (x.borrow(), y.borrow());
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((ka, va), (kb, vb))| ka == kb && deep_eq(va, vb, depth + 1))
        }
        (Value::Object(x), Value::Object(y)) => Rc::ptr_eq(x, y),
        _ => false,
    }
}

fn eq(args: &[Value]) -> Result<bool, String> {
    let (a, rest) = args
        .split_first()
        .ok_or("missing argument for comparison")?;
    if rest.is_empty() {
        return Err("missing argument for comparison".into());
    }
    let ka = kind(a);
    for b in rest {
        let kb = kind(b);
        let truth = if ka != kb {
            if ka != Kind::Invalid && kb != Kind::Invalid {
                return Err("incompatible types for comparison".into());
            }
            false
        } else {
            match (a, b) {
                (Value::List(_) | Value::Map(_), _) => {
                    return Err(format!("non-comparable type {}", a.type_name()))
                }
                _ => deep_eq(a, b, 0),
            }
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

fn less(a: &Value, b: &Value) -> Result<bool, String> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x < y),
        (Value::Float(x), Value::Float(y)) => Ok(x < y),
        (Value::Str(x), Value::Str(y)) => Ok(x < y),
        _ if kind(a) != kind(b)
            && kind(a) != Kind::Other
            && kind(b) != Kind::Other
            && kind(a) != Kind::Invalid
            && kind(b) != Kind::Invalid =>
        {
            Err("incompatible types for comparison".into())
        }
        _ => Err("invalid type for comparison".into()),
    }
}

/// sprig's `empty`.
pub(super) fn empty(v: &Value) -> bool {
    match v {
        Value::Object(_) => false,
        v => !v.truthy(),
    }
}

/// cast.ToInt64 as sprig's math uses it.
pub(super) fn to_i64(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Float(f) if f.is_finite() => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::Str(s) => parse_go_int(s).unwrap_or(0),
        _ => 0,
    }
}

/// `strconv.ParseInt(s, 0, 64)`.
pub(super) fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let body = body.replace('_', "");
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(b) = body.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else if let Some(o) = body.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()?
    } else if body.len() > 1 && body.starts_with('0') {
        i64::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

/// cast.ToFloat64.
pub(super) fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Str(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn list_of<'a>(name: &str, v: &'a Value) -> Result<Option<&'a [Value]>, String> {
    match v {
        Value::List(l) => Ok(Some(l)),
        Value::Nil => Ok(None),
        other => Err(format!("cannot {name} on type {}", other.type_name())),
    }
}

fn dict_of(v: &Value) -> Result<&Rc<std::cell::RefCell<Map>>, String> {
    match v {
        Value::Map(m) => Ok(m),
        Value::Nil => {
            Err("wrong type for value; expected map[string]interface {}; got interface {}".into())
        }
        other => Err(format!(
            "wrong type for value; expected map[string]interface {{}}; got {}",
            other.type_name()
        )),
    }
}

/// Deep merge of `src` into `dst`, mergo's rules: a missing or nil key is filled, maps are
/// merged, other keys are replaced only when `overwrite` and the source is not empty.
pub(super) fn merge_into(
    dst: &Rc<std::cell::RefCell<Map>>,
    src: &Value,
    overwrite: bool,
    depth: usize,
    budget: &mut usize,
) -> Result<(), String> {
    if depth > 100 || *budget == 0 {
        return Err("maps too large or nested too deep to merge".into());
    }
    *budget -= 1;
    let Value::Map(src) = src else {
        return match src {
            Value::Nil => Ok(()),
            other => Err(format!("cannot merge a {} into a map", other.type_name())),
        };
    };
    if Rc::ptr_eq(dst, src) {
        return Ok(());
    }
    let entries: Vec<(String, Value)> = src
        .borrow()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, sv) in entries {
        let dv = dst.borrow().get(&k).cloned();
        match (dv, &sv) {
            (Some(Value::Map(dm)), Value::Map(_)) => {
                merge_into(&dm, &sv, overwrite, depth + 1, budget)?
            }
            (None | Some(Value::Nil), _) => {
                dst.borrow_mut().insert(k, sv);
            }
            (Some(_), sv) if overwrite && !empty(sv) => {
                dst.borrow_mut().insert(k, sv.clone());
            }
            _ => {}
        }
    }
    Ok(())
}

/// The collection, logic and math functions; `None` when `name` is not one of them.
pub(super) fn call(name: &str, args: &[Value], budget: usize) -> Result<Option<Value>, String> {
    let v = match name {
        "eq" => Value::Bool(eq(args)?),
        "ne" => {
            let [a, b] = args else {
                return Err(count(name, 2, args.len()));
            };
            Value::Bool(!eq(&[a.clone(), b.clone()])?)
        }
        "lt" | "le" | "gt" | "ge" => {
            let [a, b] = args else {
                return Err(count(name, 2, args.len()));
            };
            let r = match name {
                "lt" => less(a, b)?,
                "le" => less(a, b)? || eq(&[a.clone(), b.clone()])?,
                "gt" => !less(a, b)? && !eq(&[a.clone(), b.clone()])?,
                _ => !less(a, b)?,
            };
            Value::Bool(r)
        }
        "not" => {
            let [a] = args else {
                return Err(count(name, 1, args.len()));
            };
            Value::Bool(!a.truthy())
        }
        "default" => {
            let (d, given) = args.split_first().ok_or_else(|| count(name, 2, 0))?;
            match given.first() {
                Some(g) if !empty(g) => g.clone(),
                _ => d.clone(),
            }
        }
        "empty" => {
            let [a] = args else {
                return Err(count(name, 1, args.len()));
            };
            Value::Bool(empty(a))
        }
        "coalesce" => args
            .iter()
            .find(|v| !empty(v))
            .cloned()
            .unwrap_or(Value::Nil),
        "ternary" => {
            let [t, f, c] = args else {
                return Err(count(name, 3, args.len()));
            };
            match c {
                Value::Bool(true) => t.clone(),
                Value::Bool(false) => f.clone(),
                other => {
                    return Err(format!(
                        "wrong type for value; expected bool; got {}",
                        other.type_name()
                    ))
                }
            }
        }
        "typeOf" | "kindOf" => {
            let [a] = args else {
                return Err(count(name, 1, args.len()));
            };
            Value::str(if name == "typeOf" {
                a.type_name()
            } else {
                a.kind_name()
            })
        }
        "typeIs" | "kindIs" => {
            let [t, a] = args else {
                return Err(count(name, 2, args.len()));
            };
            let t = string(t)?;
            Value::Bool(if name == "typeIs" {
                a.type_name() == t
            } else {
                a.kind_name() == t
            })
        }
        "deepEqual" => {
            let [a, b] = args else {
                return Err(count(name, 2, args.len()));
            };
            Value::Bool(deep_eq(a, b, 0))
        }
        "len" => {
            let [a] = args else {
                return Err(count(name, 1, args.len()));
            };
            Value::Int(match a {
                Value::Str(s) => s.len(),
                Value::List(l) => l.len(),
                Value::Map(m) => m.borrow().len(),
                Value::Nil => return Err("len of nil pointer".into()),
                other => return Err(format!("len of type {}", other.type_name())),
            } as i64)
        }
        "index" => {
            let (mut cur, idx) = args
                .split_first()
                .map(|(a, r)| (a.clone(), r))
                .ok_or_else(|| count(name, 1, 0))?;
            for i in idx {
                cur = match (&cur, i) {
                    (Value::List(l), Value::Int(n)) => {
                        match usize::try_from(*n).ok().and_then(|n| l.get(n)) {
                            Some(v) => v.clone(),
                            None => return Err(format!("index out of range: {n}")),
                        }
                    }
                    (Value::Map(m), Value::Str(k)) => {
                        m.borrow().get(&**k).cloned().unwrap_or(Value::Nil)
                    }
                    (Value::Nil, _) => return Err("index of untyped nil".into()),
                    (Value::List(_), other) => {
                        return Err(format!(
                            "cannot index slice/array with type {}",
                            other.type_name()
                        ))
                    }
                    (Value::Map(_), other) => {
                        return Err(format!(
                            "value has type {}; should be string",
                            other.type_name()
                        ))
                    }
                    (other, _) => {
                        return Err(format!("can't index item of type {}", other.type_name()))
                    }
                };
            }
            cur
        }
        "slice" => {
            let (item, idx) = args.split_first().ok_or_else(|| count(name, 1, 0))?;
            let idx: Vec<i64> = idx.iter().map(int).collect::<Result<_, _>>()?;
            let len = match item {
                Value::List(l) => l.len(),
                Value::Str(s) => s.len(),
                other => return Err(format!("can't slice item of type {}", other.type_name())),
            } as i64;
            let a = idx.first().copied().unwrap_or(0);
            let b = idx.get(1).copied().unwrap_or(len);
            if a < 0 || b < a || b > len {
                return Err(format!("index out of range: {a}:{b}"));
            }
            match item {
                Value::List(l) => Value::list(l[a as usize..b as usize].to_vec()),
                Value::Str(s) => Value::str(
                    String::from_utf8_lossy(&s.as_bytes()[a as usize..b as usize]).into_owned(),
                ),
                _ => Value::Nil,
            }
        }
        "list" | "tuple" => Value::list(args.to_vec()),
        "dict" => {
            let mut m = Map::new();
            for pair in args.chunks(2) {
                let v = pair.get(1).cloned().unwrap_or_else(|| Value::str(""));
                m.insert(strval(&pair[0]), v);
            }
            Value::map(m)
        }
        "get" => {
            let [d, k] = args else {
                return Err(count(name, 2, args.len()));
            };
            let (d, k) = (dict_of(d)?, string(k)?);
            let found = d.borrow().get(k).cloned();
            found.unwrap_or_else(|| Value::str(""))
        }
        "set" => {
            let [d, k, v] = args else {
                return Err(count(name, 3, args.len()));
            };
            let m = dict_of(d)?;
            m.borrow_mut().insert(string(k)?.to_string(), v.clone());
            d.clone()
        }
        "unset" => {
            let [d, k] = args else {
                return Err(count(name, 2, args.len()));
            };
            dict_of(d)?.borrow_mut().remove(string(k)?);
            d.clone()
        }
        "hasKey" => {
            let [d, k] = args else {
                return Err(count(name, 2, args.len()));
            };
            let (d, k) = (dict_of(d)?, string(k)?);
            let has = d.borrow().contains_key(k);
            Value::Bool(has)
        }
        "keys" => {
            let mut out = Vec::new();
            for d in args {
                out.extend(dict_of(d)?.borrow().keys().map(|k| Value::str(k.as_str())));
            }
            Value::list(out)
        }
        "values" => {
            let [d] = args else {
                return Err(count(name, 1, args.len()));
            };
            let vals: Vec<Value> = dict_of(d)?.borrow().values().cloned().collect();
            Value::list(vals)
        }
        "pick" | "omit" => {
            let (d, keys) = args.split_first().ok_or_else(|| count(name, 1, 0))?;
            let keys: Vec<&str> = keys.iter().map(string).collect::<Result<_, _>>()?;
            let m: Map = dict_of(d)?
                .borrow()
                .iter()
                .filter(|(k, _)| keys.contains(&k.as_str()) == (name == "pick"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Value::map(m)
        }
        "merge" | "mustMerge" | "mergeOverwrite" | "mustMergeOverwrite" => {
            let (d, srcs) = args.split_first().ok_or_else(|| count(name, 1, 0))?;
            let dst = dict_of(d)?;
            let mut budget = 1_000_000;
            for s in srcs {
                merge_into(dst, s, name.contains("Overwrite"), 0, &mut budget)?;
            }
            d.clone()
        }
        "deepCopy" | "mustDeepCopy" => {
            let [a] = args else {
                return Err(count(name, 1, args.len()));
            };
            a.deep_copy(0)
        }
        "append" | "push" | "mustAppend" | "mustPush" | "prepend" | "mustPrepend" => {
            let [l, v] = args else {
                return Err(count(name, 2, args.len()));
            };
            let mut items = list_of(name, l)?.map(<[Value]>::to_vec).unwrap_or_default();
            if name.contains("repend") {
                items.insert(0, v.clone());
            } else {
                items.push(v.clone());
            }
            Value::list(items)
        }
        "first" | "mustFirst" | "last" | "mustLast" => {
            let [l] = args else {
                return Err(count(name, 1, args.len()));
            };
            let items = list_of(name, l)?.unwrap_or(&[]);
            let pick = if name.contains("irst") {
                items.first()
            } else {
                items.last()
            };
            pick.cloned().unwrap_or(Value::Nil)
        }
        "rest" | "mustRest" | "initial" | "mustInitial" | "reverse" | "mustReverse" | "uniq"
        | "mustUniq" | "compact" | "mustCompact" => {
            let [l] = args else {
                return Err(count(name, 1, args.len()));
            };
            let items = list_of(name, l)?.unwrap_or(&[]);
            let out: Vec<Value> = match name.trim_start_matches("must").to_lowercase().as_str() {
                "rest" => items.iter().skip(1).cloned().collect(),
                "initial" => items[..items.len().saturating_sub(1)].to_vec(),
                "reverse" => items.iter().rev().cloned().collect(),
                "uniq" => {
                    let mut out: Vec<Value> = Vec::new();
                    for v in items {
                        if !out.iter().any(|o| deep_eq(o, v, 0)) {
                            out.push(v.clone());
                        }
                    }
                    out
                }
                _ => items.iter().filter(|v| !empty(v)).cloned().collect(),
            };
            Value::list(out)
        }
        "has" | "mustHas" => {
            let [needle, l] = args else {
                return Err(count(name, 2, args.len()));
            };
            let items = list_of(name, l)?.unwrap_or(&[]);
            Value::Bool(items.iter().any(|v| deep_eq(v, needle, 0)))
        }
        "without" | "mustWithout" => {
            let (l, drop) = args.split_first().ok_or_else(|| count(name, 1, 0))?;
            let items = list_of(name, l)?.unwrap_or(&[]);
            Value::list(
                items
                    .iter()
                    .filter(|v| !drop.iter().any(|d| deep_eq(d, v, 0)))
                    .cloned()
                    .collect(),
            )
        }
        "concat" => {
            let mut out = Vec::new();
            for l in args {
                out.extend(list_of(name, l)?.unwrap_or(&[]).iter().cloned());
            }
            Value::list(out)
        }
        "dig" => {
            if args.len() < 3 {
                return Err(count(name, 3, args.len()));
            }
            let (d, rest) = args.split_last().ok_or_else(|| count(name, 3, 0))?;
            let (default, keys) = rest.split_last().ok_or_else(|| count(name, 3, 0))?;
            let mut cur = Value::Map(dict_of(d)?.clone());
            for k in keys {
                let next = match &cur {
                    Value::Map(m) => m.borrow().get(string(k)?).cloned(),
                    _ => None,
                };
                match next {
                    Some(n) => cur = n,
                    None => return Ok(Some(default.clone())),
                }
            }
            cur
        }
        "add" => Value::Int(args.iter().map(to_i64).fold(0i64, i64::wrapping_add)),
        "mul" => Value::Int(args.iter().map(to_i64).fold(1i64, i64::wrapping_mul)),
        "add1" => {
            let [a] = args else {
                return Err(count(name, 1, args.len()));
            };
            Value::Int(to_i64(a).wrapping_add(1))
        }
        "sub" | "div" | "mod" => {
            let [a, b] = args else {
                return Err(count(name, 2, args.len()));
            };
            let (a, b) = (to_i64(a), to_i64(b));
            Value::Int(match name {
                "sub" => a.wrapping_sub(b),
                _ if b == 0 => return Err("runtime error: integer divide by zero".into()),
                "div" => a.wrapping_div(b),
                _ => a.wrapping_rem(b),
            })
        }
        "max" | "min" => {
            let vals: Vec<i64> = args.iter().map(to_i64).collect();
            let r = if name == "max" {
                vals.iter().max()
            } else {
                vals.iter().min()
            };
            Value::Int(*r.ok_or_else(|| count(name, 1, 0))?)
        }
        "floor" | "ceil" => {
            let [a] = args else {
                return Err(count(name, 1, args.len()));
            };
            let f = to_f64(a);
            Value::Float(if name == "floor" { f.floor() } else { f.ceil() })
        }
        "round" => {
            let (a, rest) = args.split_first().ok_or_else(|| count(name, 2, 0))?;
            let places = rest.first().map(to_i64).unwrap_or(0).clamp(0, 15);
            let p = 10f64.powi(places as i32);
            Value::Float((to_f64(a) * p).round() / p)
        }
        "until" | "untilStep" => {
            let (start, stop, step) = match args {
                [n] if name == "until" => {
                    let n = int(n)?;
                    (0, n, if n < 0 { -1 } else { 1 })
                }
                [a, b, s] if name == "untilStep" => (int(a)?, int(b)?, int(s)?),
                _ => return Err(count(name, if name == "until" { 1 } else { 3 }, args.len())),
            };
            if step == 0 || (stop - start).signum() != step.signum() {
                Value::list(Vec::new())
            } else {
                let n = ((stop - start) / step).unsigned_abs() as usize + 1;
                if n > 1_000_000 || n.saturating_mul(8) > budget {
                    return Err("range larger than 1000000 elements".into());
                }
                let mut out = Vec::new();
                let mut i = start;
                while (step > 0 && i < stop) || (step < 0 && i > stop) {
                    out.push(Value::Int(i));
                    i += step;
                }
                Value::list(out)
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, args: &[Value]) -> Result<String, String> {
        call(name, args, 1 << 20).map(|v| v.unwrap().to_go())
    }

    #[test]
    fn comparisons_follow_go_kinds() {
        assert_eq!(
            run("eq", &[Value::Int(1), Value::Int(2), Value::Int(1)]).unwrap(),
            "true"
        );
        assert!(run("eq", &[Value::Int(1), Value::Float(1.0)])
            .unwrap_err()
            .contains("incompatible"));
        assert_eq!(run("eq", &[Value::Nil, Value::str("x")]).unwrap(), "false");
        assert_eq!(
            run("lt", &[Value::str("a"), Value::str("b")]).unwrap(),
            "true"
        );
        assert_eq!(run("ge", &[Value::Int(2), Value::Int(2)]).unwrap(), "true");
        assert_eq!(
            run("gt", &[Value::Float(1.5), Value::Float(2.0)]).unwrap(),
            "false"
        );
    }

    #[test]
    fn dicts_are_shared_and_merged() {
        let d = call("dict", &[Value::str("a"), Value::Int(1)], 100)
            .unwrap()
            .unwrap();
        call("set", &[d.clone(), Value::str("b"), Value::Int(2)], 100).unwrap();
        assert_eq!(d.to_go(), "map[a:1 b:2]");
        let src = call(
            "dict",
            &[
                Value::str("a"),
                Value::Int(9),
                Value::str("c"),
                Value::Int(3),
            ],
            100,
        )
        .unwrap()
        .unwrap();
        call("merge", &[d.clone(), src.clone()], 100).unwrap();
        assert_eq!(d.to_go(), "map[a:1 b:2 c:3]");
        call("mergeOverwrite", &[d.clone(), src], 100).unwrap();
        assert_eq!(d.to_go(), "map[a:9 b:2 c:3]");
        assert_eq!(run("get", &[d.clone(), Value::str("zz")]).unwrap(), "");
        call("merge", &[d.clone(), d.clone()], 100).unwrap();
    }

    #[test]
    fn lists_and_math() {
        let l = Value::list(vec![Value::str("a"), Value::str(""), Value::str("a")]);
        assert_eq!(run("compact", std::slice::from_ref(&l)).unwrap(), "[a a]");
        assert_eq!(run("uniq", std::slice::from_ref(&l)).unwrap(), "[a ]");
        assert_eq!(run("until", &[Value::Int(3)]).unwrap(), "[0 1 2]");
        assert_eq!(
            run("add", &[Value::Int(1), Value::Float(2.0), Value::str("3")]).unwrap(),
            "6"
        );
        assert!(run("div", &[Value::Int(1), Value::Int(0)]).is_err());
        assert_eq!(run("default", &[Value::str("d"), Value::Nil]).unwrap(), "d");
        assert_eq!(
            run("default", &[Value::str("d"), Value::str("x")]).unwrap(),
            "x"
        );
        assert_eq!(run("index", &[l, Value::Int(2)]).unwrap(), "a");
    }
}
