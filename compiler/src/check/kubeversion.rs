//! The `KUBEVERSION` range grammar (sealer documents Masterminds SemVer constraints but
//! never checked them): `||`-separated alternatives, each either a hyphen range `A - B` or
//! comparators separated by spaces or commas; a comparator is an optional operator
//! (`=`, `!=`, `>`, `<`, `>=`, `<=`, `~`, `~>`, `^`) and a version `v1`, `1.22`, `1.22.3`,
//! with `x`/`X`/`*` wildcards and optional `-pre` / `+build` suffixes.

/// Checks a range; the error names the first part that is not valid.
pub(crate) fn validate(range: &str) -> Result<(), String> {
    let range = range.trim();
    if range.is_empty() {
        return Err("the range is empty".into());
    }
    for alternative in range.split("||") {
        let alternative = alternative.trim();
        if alternative.is_empty() {
            return Err("an alternative around `||` is empty".into());
        }
        let tokens: Vec<&str> = alternative
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
            .collect();
        if tokens.len() == 3 && tokens[1] == "-" {
            version(tokens[0])?;
            version(tokens[2])?;
            continue;
        }
        let mut i = 0;
        while i < tokens.len() {
            let token = tokens[i];
            let (op, rest) = split_operator(token);
            if rest.is_empty() {
                if op.is_empty() {
                    return Err(format!("`{token}` is not a version"));
                }
                let next = tokens
                    .get(i + 1)
                    .ok_or_else(|| format!("`{op}` is not followed by a version"))?;
                version(next)?;
                i += 2;
            } else {
                version(rest)?;
                i += 1;
            }
        }
    }
    Ok(())
}

fn split_operator(token: &str) -> (&str, &str) {
    for op in [">=", "=>", "<=", "=<", "!=", "~>", ">", "<", "=", "~", "^"] {
        if let Some(rest) = token.strip_prefix(op) {
            return (op, rest);
        }
    }
    ("", token)
}

fn version(text: &str) -> Result<(), String> {
    let bad = || format!("`{text}` is not a version like `1.22`, `v1.22.3` or `1.x`");
    let core = text.strip_prefix(['v', 'V']).unwrap_or(text);
    let (core, build) = match core.split_once('+') {
        Some((c, b)) => (c, Some(b)),
        None => (core, None),
    };
    let (core, pre) = match core.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (core, None),
    };
    let ident_ok = |s: &str| {
        !s.is_empty()
            && s.split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    };
    if pre.is_some_and(|p| !ident_ok(p)) || build.is_some_and(|b| !ident_ok(b)) {
        return Err(bad());
    }
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return Err(bad());
    }
    for part in parts {
        let wildcard = matches!(part, "x" | "X" | "*");
        if !wildcard && (part.is_empty() || !part.chars().all(|c| c.is_ascii_digit())) {
            return Err(bad());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn ranges() {
        for ok in [
            "1.22 - 1.24",
            ">=1.26.0 <1.30.0",
            ">= 1.20, < 1.25",
            "v1.22.15",
            "~1.22 || ^1.24.0-rc.1",
            "1.x",
            "*",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        for bad in ["", "latest", ">=", "1.2.3.4", "1.22 ||", ">=1.a"] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }
}
