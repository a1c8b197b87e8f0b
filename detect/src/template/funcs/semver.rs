//! `semverCompare`: Masterminds/semver v3 constraints as Helm evaluates them (`>=1.19-0`,
//! `^1.2`, `~1.2.3`, `1.2.x`, `1.2 - 1.4`, `,` or space for "and", `||` for "or"), with its
//! rule that a prerelease version only satisfies a constraint that names a prerelease.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Vec<String>,
}

/// A version with the parts that were wildcards or absent (`1.2` has no patch).
#[derive(Debug, Clone)]
struct Partial {
    v: Version,
    /// How many of major/minor/patch were given as numbers.
    given: usize,
}

fn parse_partial(s: &str) -> Result<Partial, String> {
    let s = s.trim();
    let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
    let (s, _build) = s.split_once('+').unwrap_or((s, ""));
    let (core, pre) = match s.split_once('-') {
        Some((c, p)) => (c, p.split('.').map(str::to_string).collect()),
        None => (s, Vec::new()),
    };
    let mut nums = [0u64; 3];
    let mut given = 0;
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty() || parts.len() > 3 || parts[0].is_empty() {
        return Err(format!("invalid semantic version {s:?}"));
    }
    let mut wild = false;
    for (i, p) in parts.iter().enumerate() {
        if matches!(*p, "x" | "X" | "*") {
            wild = true;
            continue;
        }
        if wild {
            return Err(format!("invalid semantic version {s:?}"));
        }
        nums[i] = p
            .parse()
            .map_err(|_| format!("invalid semantic version {s:?}"))?;
        given = i + 1;
    }
    Ok(Partial {
        v: Version {
            major: nums[0],
            minor: nums[1],
            patch: nums[2],
            pre,
        },
        given,
    })
}

fn cmp_pre(a: &[String], b: &[String]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    for (x, y) in a.iter().zip(b.iter()) {
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(p), Ok(q)) => p.cmp(&q),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            _ => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

fn cmp(a: &Version, b: &Version) -> Ordering {
    (a.major, a.minor, a.patch)
        .cmp(&(b.major, b.minor, b.patch))
        .then_with(|| cmp_pre(&a.pre, &b.pre))
}

/// The smallest version above every version matching the given parts (`1.2` → `1.3.0`).
fn next(p: &Partial) -> Version {
    let v = &p.v;
    match p.given {
        0 => Version {
            major: u64::MAX,
            minor: 0,
            patch: 0,
            pre: Vec::new(),
        },
        1 => Version {
            major: v.major + 1,
            minor: 0,
            patch: 0,
            pre: Vec::new(),
        },
        2 => Version {
            major: v.major,
            minor: v.minor + 1,
            patch: 0,
            pre: Vec::new(),
        },
        _ => Version {
            major: v.major,
            minor: v.minor,
            patch: v.patch + 1,
            pre: Vec::new(),
        },
    }
}

fn check(term: &str, v: &Version) -> Result<bool, String> {
    let ops = [">=", "=>", "<=", "=<", "!=", "~>", ">", "<", "=", "~", "^"];
    let (op, rest) = ops
        .iter()
        .find_map(|op| term.strip_prefix(op).map(|r| (*op, r)))
        .unwrap_or(("", term));
    let c = parse_partial(rest)?;
    if !v.pre.is_empty() && c.v.pre.is_empty() {
        return Ok(false);
    }
    let lower = &c.v;
    let ge = cmp(v, lower) != Ordering::Less;
    let below_next = cmp(v, &next(&c)) == Ordering::Less;
    Ok(match op {
        "" | "=" => {
            if c.given == 3 {
                cmp(v, lower) == Ordering::Equal
            } else {
                ge && below_next
            }
        }
        "!=" => {
            if c.given == 3 {
                cmp(v, lower) != Ordering::Equal
            } else {
                !(ge && below_next)
            }
        }
        ">" => {
            if c.given == 3 {
                cmp(v, lower) == Ordering::Greater
            } else {
                !below_next
            }
        }
        ">=" | "=>" => ge,
        "<" => cmp(v, lower) == Ordering::Less,
        "<=" | "=<" => {
            if c.given == 3 {
                cmp(v, lower) != Ordering::Greater
            } else {
                below_next
            }
        }
        "~" | "~>" => {
            let upper = if c.given <= 1 {
                next(&Partial {
                    given: 1,
                    ..c.clone()
                })
            } else {
                next(&Partial {
                    given: 2,
                    ..c.clone()
                })
            };
            ge && cmp(v, &upper) == Ordering::Less
        }
        _ => {
            // ^: the leftmost non-zero part stays.
            let given = if c.v.major > 0 || c.given <= 1 {
                1
            } else if c.v.minor > 0 || c.given == 2 {
                2
            } else {
                3
            };
            ge && cmp(v, &next(&Partial { given, ..c.clone() })) == Ordering::Less
        }
    })
}

/// sprig's `semver`: the parts of a version, as the fields of Masterminds' `*semver.Version`.
pub(super) fn parse_object(version: &str) -> Result<crate::template::value::Value, String> {
    use crate::template::value::{Object, Value};
    let p = parse_partial(version)?;
    if p.given == 0 {
        return Err(format!("invalid semantic version {version:?}"));
    }
    let core = version.trim().trim_start_matches(['v', 'V']);
    let metadata = core.split_once('+').map(|(_, m)| m).unwrap_or("");
    let int = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
    let fields = [
        ("Major", int(p.v.major)),
        ("Minor", int(p.v.minor)),
        ("Patch", int(p.v.patch)),
        ("Prerelease", Value::str(p.v.pre.join("."))),
        ("Metadata", Value::str(metadata)),
        ("Original", Value::str(version)),
    ];
    let text = format!("{}.{}.{}", p.v.major, p.v.minor, p.v.patch)
        + &if p.v.pre.is_empty() {
            String::new()
        } else {
            format!("-{}", p.v.pre.join("."))
        }
        + &if metadata.is_empty() {
            String::new()
        } else {
            format!("+{metadata}")
        };
    Ok(Value::Object(std::rc::Rc::new(Object::Struct {
        type_name: "*semver.Version",
        fields: fields.into_iter().collect(),
        text: Some(text),
    })))
}

/// Whether `version` satisfies `constraint`.
pub(super) fn compare(constraint: &str, version: &str) -> Result<bool, String> {
    let v = parse_partial(version)?;
    if v.given == 0 {
        return Err(format!("invalid semantic version {version:?}"));
    }
    let v = v.v;
    for group in constraint.split("||") {
        let group = group.trim();
        // Hyphen ranges: "1.2 - 1.4".
        let normal = match group.split_once(" - ") {
            Some((a, b)) => format!(">={} <={}", a.trim(), b.trim()),
            None => group.to_string(),
        };
        let mut terms: Vec<String> = Vec::new();
        for t in normal
            .split([',', ' '])
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            // An operator written apart from its version: ">= 1.2".
            match terms.last_mut() {
                Some(last) if last.chars().all(|c| "<>=!~^".contains(c)) => last.push_str(t),
                _ => terms.push(t.to_string()),
            }
        }
        if terms.is_empty() {
            return Err(format!("improper constraint: {constraint}"));
        }
        let mut all = true;
        for t in &terms {
            if !check(t, &v).map_err(|_| format!("improper constraint: {constraint}"))? {
                all = false;
                break;
            }
        }
        if all {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::compare;

    #[test]
    fn helm_style_constraints() {
        let k = "v1.28.0";
        for (c, want) in [
            (">=1.19-0", true),
            ("<1.19-0", false),
            (">=1.21-0", true),
            (">= 1.16.0-0, < 1.29.0-0", true),
            ("^1.20", true),
            ("~1.28", true),
            ("~1.27", false),
            ("1.28.x", true),
            ("1.27 - 1.28", true),
            (">1.28", false),
            ("<1.20 || >=1.25", true),
            (">=1.29.0", false),
        ] {
            assert_eq!(compare(c, k).unwrap(), want, "{c}");
        }
        assert!(!compare(">=1.19", "v1.28.0-gke.1").unwrap());
        assert!(compare(">=1.19-0", "v1.28.0-gke.1").unwrap());
        assert!(compare("nonsense!", k).is_err());
        assert!(compare(">=1.0", "not-a-version").is_err());
        let v = super::parse_object("v1.28.3-rc.1+abc").unwrap();
        assert_eq!(v.to_go(), "1.28.3-rc.1+abc");
    }
}
