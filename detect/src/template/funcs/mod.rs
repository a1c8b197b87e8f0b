//! The functions templates call: Go's builtins, and the Helm and sprig functions real
//! charts use, each with the argument rules Go's reflection applies (a `string` parameter
//! refuses nil and numbers, an `int` parameter refuses a values-file `float64`) so a chart
//! that fails under Helm fails here too. [`known`] is the parser's table: what is
//! implemented, and which Helm/sprig functions are named as unsupported.

mod coll;
mod conv;
mod printf;
mod semver;
mod text;

use std::collections::BTreeMap;
use std::rc::Rc;

use super::value::{Object, Value};

pub(crate) use conv::{to_yaml, yaml_to_value};

/// Whether a function name exists.
pub(crate) enum Known {
    /// Implemented.
    Yes,
    /// A Helm or sprig function chasi does not implement.
    Unsupported,
    /// Not a function of Helm's templates at all.
    No,
}

/// The implemented functions (including those the executor handles itself).
const SUPPORTED: &[&str] = &[
    // executor
    "and",
    "or",
    "include",
    "tpl",
    "required",
    "fail",
    "lookup",
    // Go builtins
    "print",
    "printf",
    "println",
    "len",
    "index",
    "slice",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "not",
    // strings
    "default",
    "quote",
    "squote",
    "upper",
    "lower",
    "title",
    "untitle",
    "trim",
    "trimAll",
    "trimSuffix",
    "trimPrefix",
    "trunc",
    "replace",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "repeat",
    "substr",
    "nospace",
    "cat",
    "indent",
    "nindent",
    "snakecase",
    "camelcase",
    "kebabcase",
    "regexMatch",
    "mustRegexMatch",
    "regexFind",
    "mustRegexFind",
    "regexFindAll",
    "mustRegexFindAll",
    "regexReplaceAll",
    "mustRegexReplaceAll",
    "regexReplaceAllLiteral",
    "mustRegexReplaceAllLiteral",
    "regexSplit",
    "mustRegexSplit",
    "splitList",
    "split",
    "splitn",
    "join",
    "toString",
    "toStrings",
    "sortAlpha",
    "abbrev",
    "wrap",
    "plural",
    "randAlphaNum",
    "randAlpha",
    "randNumeric",
    "randAscii",
    "uuidv4",
    // encodings and conversions
    "b64enc",
    "b64dec",
    "sha256sum",
    "sha1sum",
    "sha512sum",
    "adler32sum",
    "mustFromJson",
    "toYaml",
    "mustToYaml",
    "toJson",
    "mustToJson",
    "toRawJson",
    "mustToRawJson",
    "toPrettyJson",
    "mustToPrettyJson",
    "fromYaml",
    "fromJson",
    "fromYamlArray",
    "fromJsonArray",
    "int",
    "int64",
    "float64",
    "atoi",
    // math
    "add",
    "add1",
    "sub",
    "mul",
    "div",
    "mod",
    "max",
    "min",
    "floor",
    "ceil",
    "round",
    "until",
    "untilStep",
    // lists and dicts
    "list",
    "tuple",
    "dict",
    "get",
    "set",
    "unset",
    "hasKey",
    "keys",
    "values",
    "pick",
    "omit",
    "merge",
    "mustMerge",
    "mergeOverwrite",
    "mustMergeOverwrite",
    "deepCopy",
    "mustDeepCopy",
    "append",
    "push",
    "mustAppend",
    "mustPush",
    "prepend",
    "mustPrepend",
    "first",
    "mustFirst",
    "last",
    "mustLast",
    "rest",
    "mustRest",
    "initial",
    "mustInitial",
    "reverse",
    "mustReverse",
    "uniq",
    "mustUniq",
    "compact",
    "mustCompact",
    "has",
    "mustHas",
    "without",
    "mustWithout",
    "concat",
    "dig",
    // logic and types
    "empty",
    "coalesce",
    "ternary",
    "typeOf",
    "kindOf",
    "kindIs",
    "typeIs",
    "deepEqual",
    "semverCompare",
    "semver",
];

/// Helm and sprig functions that exist but are not implemented: named, never guessed.
const UNSUPPORTED: &[&str] = &[
    "html",
    "js",
    "urlquery",
    "call",
    "genCA",
    "genCAWithKey",
    "genSelfSignedCert",
    "genSelfSignedCertWithKey",
    "genSignedCert",
    "genSignedCertWithKey",
    "genPrivateKey",
    "derivePassword",
    "buildCustomCert",
    "encryptAES",
    "decryptAES",
    "htpasswd",
    "bcrypt",
    "b32enc",
    "b32dec",
    "now",
    "date",
    "dateInZone",
    "dateModify",
    "ago",
    "toDate",
    "mustToDate",
    "unixEpoch",
    "duration",
    "durationRound",
    "htmlDate",
    "htmlDateInZone",
    "urlParse",
    "urlJoin",
    "getHostByName",
    "toToml",
    "fromToml",
    "osBase",
    "osDir",
    "osExt",
    "osClean",
    "osIsAbs",
    "base",
    "dir",
    "ext",
    "clean",
    "isAbs",
    "shuffle",
    "initials",
    "swapcase",
    "seq",
    "toDecimal",
    "addf",
    "add1f",
    "subf",
    "mulf",
    "divf",
    "maxf",
    "minf",
    "randInt",
    "randBytes",
    "biggest",
    "chunk",
    "mustChunk",
    "regexQuoteMeta",
    "mustDig",
    "abbrevboth",
    "wrapWith",
    "typeIsLike",
];

/// Whether `name` is a function, for the parser.
pub(crate) fn known(name: &str) -> Known {
    if SUPPORTED.contains(&name) {
        Known::Yes
    } else if UNSUPPORTED.contains(&name) {
        Known::Unsupported
    } else {
        Known::No
    }
}

/// Calls function `name`; `budget` bounds the bytes it may produce.
pub(crate) fn call(name: &str, args: Vec<Value>, budget: usize) -> Result<Value, String> {
    if let Some(v) = text::call(name, &args, budget)? {
        return Ok(v);
    }
    if let Some(v) = coll::call(name, &args, budget)? {
        return Ok(v);
    }
    if let Some(v) = conv::call(name, &args, budget)? {
        return Ok(v);
    }
    match name {
        "print" => Ok(Value::str(printf::sprint(&args))),
        "println" => Ok(Value::str(printf::sprintln(&args))),
        "printf" => {
            let (fmt, rest) = args
                .split_first()
                .ok_or("wrong number of args for printf: want at least 1 got 0")?;
            Ok(Value::str(printf::sprintf(string(fmt)?, rest, budget)?))
        }
        "semver" => {
            let [v] = args.as_slice() else {
                return Err(count(name, 1, args.len()));
            };
            semver::parse_object(string(v)?)
        }
        "semverCompare" => {
            let [c, v] = args.as_slice() else {
                return Err(count(name, 2, args.len()));
            };
            Ok(Value::Bool(semver::compare(string(c)?, string(v)?)?))
        }
        _ => Err(format!("function {name:?} is not implemented")),
    }
}

/// The wrong-argument-count message of Go.
pub(super) fn count(name: &str, want: usize, got: usize) -> String {
    format!("wrong number of args for {name}: want {want} got {got}")
}

/// A `string` parameter.
pub(super) fn string(v: &Value) -> Result<&str, String> {
    match v {
        Value::Str(s) => Ok(s),
        Value::Nil => Err("wrong type for value; expected string; got interface {}".into()),
        other => Err(format!(
            "wrong type for value; expected string; got {}",
            other.type_name()
        )),
    }
}

/// An `int` parameter (Go converts integer constants, not `float64` values).
pub(super) fn int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Nil => Err("wrong type for value; expected int; got interface {}".into()),
        other => Err(format!(
            "wrong type for value; expected int; got {}",
            other.type_name()
        )),
    }
}

/// sprig's `strval`: a string as is, anything else as `%v`.
pub(super) fn strval(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        other => other.to_go(),
    }
}

/// The `.Files` methods Helm offers.
pub(crate) fn files_method(
    files: &Rc<BTreeMap<String, Rc<Vec<u8>>>>,
    name: &str,
    args: Vec<Value>,
) -> Result<Value, String> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let arg = |args: &[Value]| -> Result<String, String> {
        match args {
            [v] => Ok(string(v)?.to_string()),
            _ => Err(format!(
                "wrong number of args for {name}: want 1 got {}",
                args.len()
            )),
        }
    };
    match name {
        "Get" | "GetBytes" => {
            let n = arg(&args)?;
            Ok(Value::str(
                files.get(&n).map(|b| text(b)).unwrap_or_default(),
            ))
        }
        "Lines" => {
            let n = arg(&args)?;
            let content = files.get(&n).map(|b| text(b)).unwrap_or_default();
            let mut lines: Vec<Value> = content.split('\n').map(Value::str).collect();
            if content.is_empty() {
                lines.clear();
            }
            Ok(Value::list(lines))
        }
        "Glob" => {
            let pattern = arg(&args)?;
            let picked = files
                .iter()
                .filter(|(k, _)| text::glob_match(&pattern, k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Ok(Value::Object(Rc::new(Object::Files(Rc::new(picked)))))
        }
        "AsConfig" | "AsSecrets" => {
            if !args.is_empty() {
                return Err(format!("{name} takes no arguments"));
            }
            let mut m = super::value::Map::new();
            for (k, v) in files.iter() {
                let base = k.rsplit('/').next().unwrap_or(k).to_string();
                let content = if name == "AsConfig" {
                    text(v)
                } else {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD.encode(&**v)
                };
                m.insert(base, Value::str(content));
            }
            Ok(Value::str(
                to_yaml(&Value::map(m))?.trim_end_matches('\n').to_string(),
            ))
        }
        _ => Err(format!("can't evaluate field {name} in type chart.Files")),
    }
}
