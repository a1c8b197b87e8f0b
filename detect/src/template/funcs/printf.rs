//! Go's `fmt.Sprint`, `Sprintln` and `Sprintf` for template values: the verbs charts use
//! (`%s %v %d %q %t %f %e %g %x %X %o %b %c %%`) with flags, width and precision; a verb
//! that does not fit its operand prints as Go does (`%!d(string=x)`).

use super::text::go_quote;
use crate::template::value::{format_float_g, Value};

/// `fmt.Sprint`: spaces between operands when neither is a string.
pub(super) fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        out.push_str(&a.to_go());
    }
    out
}

/// `fmt.Sprintln`.
pub(super) fn sprintln(args: &[Value]) -> String {
    let parts: Vec<String> = args.iter().map(Value::to_go).collect();
    parts.join(" ") + "\n"
}

struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

fn pad(s: String, spec: &Spec, numeric: bool) -> String {
    let Some(w) = spec.width else { return s };
    let n = s.chars().count();
    if n >= w {
        return s;
    }
    let fill = w - n;
    if spec.minus {
        s + &" ".repeat(fill)
    } else if spec.zero && numeric {
        let (sign, digits) = if s.starts_with(['-', '+']) {
            s.split_at(1)
        } else {
            ("", s.as_str())
        };
        format!("{sign}{}{digits}", "0".repeat(fill))
    } else {
        " ".repeat(fill) + &s
    }
}

fn bad(verb: char, v: &Value) -> String {
    format!("%!{verb}({}={})", v.type_name(), v.to_go())
}

fn int_verb(verb: char, i: i64, spec: &Spec) -> String {
    let abs = i.unsigned_abs();
    let body = match verb {
        'd' => abs.to_string(),
        'x' => format!("{abs:x}"),
        'X' => format!("{abs:X}"),
        'o' => format!("{abs:o}"),
        'b' => format!("{abs:b}"),
        _ => abs.to_string(),
    };
    let prefix = match (spec.sharp, verb) {
        (true, 'x') => "0x",
        (true, 'X') => "0X",
        (true, 'o') => "0",
        _ => "",
    };
    let sign = if i < 0 {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    };
    format!("{sign}{prefix}{body}")
}

fn float_verb(verb: char, f: f64, spec: &Spec) -> String {
    let sign = if f.is_sign_negative() || !spec.plus {
        ""
    } else {
        "+"
    };
    let body = match verb {
        'f' | 'F' => format!("{:.*}", spec.prec.unwrap_or(6), f),
        'e' | 'E' => {
            let s = format!("{:.*e}", spec.prec.unwrap_or(6), f);
            let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
            let e: i32 = e.parse().unwrap_or(0);
            let s = format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
            if verb == 'E' {
                s.to_uppercase()
            } else {
                s
            }
        }
        _ => match spec.prec {
            Some(p) => {
                let s = format!("{:.*e}", p.max(1) - 1, f);
                let (_, e) = s.split_once('e').unwrap_or((&s, "0"));
                let e: i32 = e.parse().unwrap_or(0);
                if e < -4 || e >= p.max(1) as i32 {
                    float_verb(
                        'e',
                        f,
                        &Spec {
                            prec: Some(p.max(1) - 1),
                            ..*spec
                        },
                    )
                } else {
                    let decimals = (p.max(1) as i32 - 1 - e).max(0) as usize;
                    let s = format!("{f:.decimals$}");
                    if s.contains('.') {
                        s.trim_end_matches('0').trim_end_matches('.').to_string()
                    } else {
                        s
                    }
                }
            }
            None => format_float_g(f),
        },
    };
    format!("{sign}{body}")
}

/// `fmt.Sprintf`; `budget` bounds widths and the result.
pub(super) fn sprintf(format: &str, args: &[Value], budget: usize) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec {
            minus: false,
            plus: false,
            zero: false,
            space: false,
            sharp: false,
            width: None,
            prec: None,
        };
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '0' => spec.zero = true,
                ' ' => spec.space = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            chars.next();
        }
        let num = |chars: &mut std::iter::Peekable<std::str::Chars>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
                chars.next();
            }
            n
        };
        spec.width = num(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(num(&mut chars).unwrap_or(0));
        }
        if spec.width.unwrap_or(0) > budget || spec.prec.unwrap_or(0) > 1000 {
            return Err("width or precision too large".into());
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        let (s, numeric) = match (verb, arg) {
            ('v', v) => (v.to_go(), false),
            ('s', Value::Str(s)) => (
                s.chars().take(spec.prec.unwrap_or(usize::MAX)).collect(),
                false,
            ),
            ('s', v @ (Value::List(_) | Value::Map(_) | Value::Nil | Value::Bool(_))) => {
                (v.to_go(), false)
            }
            ('s', Value::Object(_)) => (arg.to_go(), false),
            ('q', Value::Str(s)) => (go_quote(s), false),
            ('t', Value::Bool(b)) => (b.to_string(), false),
            ('d' | 'x' | 'X' | 'o' | 'b', Value::Int(i)) => (int_verb(verb, *i, &spec), true),
            ('x', Value::Str(s)) => (hex::encode(s.as_bytes()), false),
            ('X', Value::Str(s)) => (hex::encode_upper(s.as_bytes()), false),
            ('c', Value::Int(i)) => (
                u32::try_from(*i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{fffd}')
                    .to_string(),
                false,
            ),
            ('f' | 'F' | 'e' | 'E' | 'g' | 'G', Value::Float(f)) => {
                (float_verb(verb, *f, &spec), true)
            }
            ('f' | 'F' | 'e' | 'E' | 'g' | 'G', Value::Int(_)) => (bad(verb, arg), false),
            _ => (bad(verb, arg), false),
        };
        out.push_str(&pad(s, &spec, numeric));
        if out.len() > budget {
            return Err("result larger than the output bound".into());
        }
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), a.to_go()))
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printf_verbs() {
        let s = |v: &str| Value::str(v);
        assert_eq!(
            sprintf(
                "%s/%s:%s",
                &[
                    s("registry.k8s.io"),
                    s("ingress-nginx/controller"),
                    s("v1.9.4")
                ],
                1000
            )
            .unwrap(),
            "registry.k8s.io/ingress-nginx/controller:v1.9.4"
        );
        assert_eq!(
            sprintf(
                "%d-%05d|%-4s|%q|%v",
                &[
                    Value::Int(3),
                    Value::Int(-42),
                    s("ab"),
                    s("x\"y"),
                    Value::Float(1.0)
                ],
                1000
            )
            .unwrap(),
            "3--0042|ab  |\"x\\\"y\"|1"
        );
        assert_eq!(
            sprintf("%d", &[Value::Float(1.0)], 1000).unwrap(),
            "%!d(float64=1)"
        );
        assert_eq!(
            sprintf(
                "%.2f %x %t %%",
                &[Value::Float(2.5), Value::Int(255), Value::Bool(true)],
                1000
            )
            .unwrap(),
            "2.50 ff true %"
        );
        assert_eq!(sprintf("%s", &[], 1000).unwrap(), "%!s(MISSING)");
        assert_eq!(
            sprint(&[Value::Int(1), Value::Int(2), s("a"), Value::Int(3)]),
            "1 2a3"
        );
    }
}
