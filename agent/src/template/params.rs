//! A template's typed parameters: their definitions (`[parameters.NAME]`), the values given with
//! `--set NAME=VALUE` or as defaults, and the checks of each value against its type and bounds.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use trust::{Digest, PublicKey};

/// The types a parameter can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// Text; bounds: `max_length` (bytes), `allowed`.
    String,
    /// A signed 64-bit integer; bounds: `min`, `max`, `allowed`.
    Int,
    /// `true` or `false`.
    Bool,
    /// A size with a unit, `MiB` or `GiB` (`512MiB`, `2GiB`), held in MiB; bounds: `min`, `max`.
    Size,
    /// An ed25519 public key line, `nullos-ed25519 <64 hex>`.
    Key,
    /// A BLAKE3 digest, 64 hex characters.
    Digest,
}

impl ParamType {
    /// The name in templates and messages.
    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Bool => "bool",
            ParamType::Size => "size",
            ParamType::Key => "key",
            ParamType::Digest => "digest",
        }
    }

    /// The name with its article, for messages: "an int", "a size".
    pub fn with_article(self) -> &'static str {
        match self {
            ParamType::String => "a string",
            ParamType::Int => "an int",
            ParamType::Bool => "a bool",
            ParamType::Size => "a size",
            ParamType::Key => "a key",
            ParamType::Digest => "a digest",
        }
    }

    /// What a value of this type looks like, for messages.
    fn example(self) -> &'static str {
        match self {
            ParamType::String => "text",
            ParamType::Int => "an integer such as 2",
            ParamType::Bool => "true or false",
            ParamType::Size => "a size such as 512MiB or 2GiB",
            ParamType::Key => "a public key line 'nullos-ed25519 <64 hex>'",
            ParamType::Digest => "a BLAKE3 digest of 64 hex characters",
        }
    }
}

/// A parameter's value, of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string.
    String(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A size in MiB.
    Size(u64),
    /// A public key.
    Key(PublicKey),
    /// A digest.
    Digest(Digest),
}

impl Value {
    /// The value's type.
    pub fn kind(&self) -> ParamType {
        match self {
            Value::String(_) => ParamType::String,
            Value::Int(_) => ParamType::Int,
            Value::Bool(_) => ParamType::Bool,
            Value::Size(_) => ParamType::Size,
            Value::Key(_) => ParamType::Key,
            Value::Digest(_) => ParamType::Digest,
        }
    }
}

/// How a value is written inside a string (`"x ${p} y"`) and in messages: sizes as `NMiB`,
/// keys as their line, digests as hex.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => f.write_str(s),
            Value::Int(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Size(mib) => write!(f, "{}", format_size(*mib)),
            Value::Key(k) => write!(f, "{k}"),
            Value::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// A size in its shortest exact unit: `2GiB`, `1536MiB`.
pub fn format_size(mib: u64) -> String {
    if mib != 0 && mib % 1024 == 0 {
        format!("{}GiB", mib / 1024)
    } else {
        format!("{mib}MiB")
    }
}

/// Reads `512MiB`, `2GiB` (a space before the unit is allowed) into MiB.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, factor) = if let Some(n) = text.strip_suffix("GiB") {
        (n, 1024u64)
    } else if let Some(n) = text.strip_suffix("MiB") {
        (n, 1)
    } else {
        return Err(format!(
            "'{}' is not a size: write a whole number with MiB or GiB, such as 512MiB or 2GiB",
            cut(text)
        ));
    };
    let number = number.trim_end();
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{}' is not a whole number of MiB or GiB", cut(text)))?;
    n.checked_mul(factor)
        .ok_or_else(|| format!("'{}' is too large", cut(text)))
}

/// Reads a value of type `ty` from text (a `--set` value or a string default).
pub fn parse_value(ty: ParamType, text: &str) -> Result<Value, String> {
    let bad = || format!("'{}' is not {}", cut(text), ty.example());
    Ok(match ty {
        ParamType::String => Value::String(text.to_owned()),
        ParamType::Int => Value::Int(text.trim().parse().map_err(|_| bad())?),
        ParamType::Bool => match text.trim() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(bad()),
        },
        ParamType::Size => Value::Size(parse_size(text)?),
        ParamType::Key => Value::Key(
            PublicKey::from_text(text)
                .map_err(|e| format!("'{}' is not a usable public key: {e}", cut(text)))?,
        ),
        ParamType::Digest => Value::Digest(Digest::from_hex(text.trim()).map_err(|_| bad())?),
    })
}

/// A parameter's definition as written in the template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamDef {
    /// The type.
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// The value when none is set; without one the parameter must be set.
    pub default: Option<toml::Value>,
    /// Least value (int, size).
    pub min: Option<toml::Value>,
    /// Greatest value (int, size).
    pub max: Option<toml::Value>,
    /// Longest value in bytes (string).
    pub max_length: Option<u64>,
    /// The only values accepted (string, int).
    pub allowed: Option<Vec<toml::Value>>,
    /// What the parameter is for, shown to the user.
    #[serde(default)]
    pub description: String,
}

/// A checked parameter: its type, bounds and default, all of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The type.
    pub ty: ParamType,
    /// The default, checked against the bounds.
    pub default: Option<Value>,
    /// Least value (int and size: an Int or a Size).
    pub min: Option<Value>,
    /// Greatest value.
    pub max: Option<Value>,
    /// Longest string, in bytes.
    pub max_length: Option<u64>,
    /// The only values accepted.
    pub allowed: Vec<Value>,
    /// What the parameter is for.
    pub description: String,
}

/// Reads a TOML literal (a default, a bound, an allowed value) as a value of type `ty`.
pub fn literal(ty: ParamType, value: &toml::Value) -> Result<Value, String> {
    match (ty, value) {
        (_, toml::Value::String(s)) => parse_value(ty, s),
        (ParamType::Int, toml::Value::Integer(n)) => Ok(Value::Int(*n)),
        (ParamType::Bool, toml::Value::Boolean(b)) => Ok(Value::Bool(*b)),
        _ => Err(format!("{} is not {}", short_toml(value), ty.example())),
    }
}

impl Param {
    /// Checks a definition: bounds of the type's kind only, each of the type, the default
    /// within them. Every problem is pushed to `mistakes` as `parameter 'NAME': ...`.
    pub fn from_def(name: &str, def: &ParamDef, mistakes: &mut Vec<String>) -> Option<Param> {
        let start = mistakes.len();
        let mut say = |m: String| mistakes.push(format!("template parameter '{name}': {m}"));
        let ty = def.ty;
        let numeric = matches!(ty, ParamType::Int | ParamType::Size);
        let bound = |what: &str, v: &Option<toml::Value>, say: &mut dyn FnMut(String)| {
            let v = v.as_ref()?;
            if !numeric {
                say(format!(
                    "'{what}' applies to int and size parameters, not {}",
                    ty.name()
                ));
                return None;
            }
            literal(ty, v)
                .map_err(|e| say(format!("'{what}': {e}")))
                .ok()
        };
        let min = bound("min", &def.min, &mut say);
        let max = bound("max", &def.max, &mut say);
        if def.max_length.is_some() && ty != ParamType::String {
            say(format!(
                "'max_length' applies to string parameters, not {}",
                ty.name()
            ));
        }
        let mut allowed = Vec::new();
        if let Some(list) = &def.allowed {
            if !matches!(ty, ParamType::String | ParamType::Int) {
                say(format!(
                    "'allowed' applies to string and int parameters, not {}",
                    ty.name()
                ));
            } else if list.is_empty() {
                say("'allowed' is empty, so no value could be given".into());
            }
            for v in list {
                match literal(ty, v) {
                    Ok(v) => allowed.push(v),
                    Err(e) => say(format!("'allowed': {e}")),
                }
            }
        }
        let default = def.default.as_ref().and_then(|v| {
            literal(ty, v)
                .map_err(|e| say(format!("default: {e}")))
                .ok()
        });
        let param = Param {
            ty,
            default,
            min,
            max,
            max_length: def.max_length,
            allowed,
            description: def.description.clone(),
        };
        if let (Some(lo), Some(hi)) = (&param.min, &param.max) {
            if order(lo) > order(hi) {
                say(format!("'min' {lo} is above 'max' {hi}"));
            }
        }
        if let Some(d) = &param.default {
            if let Err(e) = param.check(d) {
                say(format!("default {e}"));
            }
        }
        (mistakes.len() == start).then_some(param)
    }

    /// Checks a value of this parameter's type against its bounds.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        if let Some(min) = &self.min {
            if order(value) < order(min) {
                return Err(format!("{value} is below the minimum {min}"));
            }
        }
        if let Some(max) = &self.max {
            if order(value) > order(max) {
                return Err(format!("{value} is above the maximum {max}"));
            }
        }
        if let (Some(max), Value::String(s)) = (self.max_length, value) {
            if s.len() as u64 > max {
                return Err(format!(
                    "'{}' is {} bytes, longer than the maximum of {max}",
                    cut(s),
                    s.len()
                ));
            }
        }
        if !self.allowed.is_empty() && !self.allowed.contains(value) {
            let list: Vec<String> = self.allowed.iter().map(|v| format!("'{v}'")).collect();
            return Err(format!(
                "'{}' is not one of the allowed values {}",
                cut(&value.to_string()),
                list.join(", ")
            ));
        }
        Ok(())
    }
}

/// The number bounds compare: ints and sizes (never mixed: both sides have the param's type).
fn order(v: &Value) -> i128 {
    match v {
        Value::Int(n) => i128::from(*n),
        Value::Size(n) => i128::from(*n),
        _ => 0,
    }
}

/// Resolves the parameters' values: every `--set` of a known parameter parsed and checked,
/// unknown names refused, unset parameters take their default or are reported missing.
pub fn resolve(
    params: &BTreeMap<String, Param>,
    sets: &[(String, String)],
    mistakes: &mut Vec<String>,
) -> BTreeMap<String, Value> {
    let mut values = BTreeMap::new();
    let mut given: Vec<&str> = Vec::new();
    for (name, text) in sets {
        let Some(param) = params.get(name) else {
            let known: Vec<&str> = params.keys().map(String::as_str).collect();
            mistakes.push(format!(
                "--set {name}: unknown parameter (the template has: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
            continue;
        };
        if given.contains(&name.as_str()) {
            mistakes.push(format!("--set {name}: given more than once"));
            continue;
        }
        given.push(name);
        match parse_value(param.ty, text).and_then(|v| param.check(&v).map(|()| v)) {
            Ok(v) => {
                values.insert(name.clone(), v);
            }
            Err(e) => mistakes.push(format!("--set {name}: {e}")),
        }
    }
    for (name, param) in params {
        if given.contains(&name.as_str()) {
            continue;
        }
        match &param.default {
            Some(d) => {
                values.insert(name.clone(), d.clone());
            }
            None => mistakes.push(format!(
                "parameter '{name}' ({}) has no default and was not set: give --set {name}=<{}>",
                param.ty.name(),
                param.ty.example()
            )),
        }
    }
    values
}

/// At most 64 characters of untrusted text, for messages.
pub fn cut(text: &str) -> String {
    let mut out: String = text.chars().take(64).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

fn short_toml(v: &toml::Value) -> String {
    cut(&v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(toml_text: &str) -> ParamDef {
        toml::from_str(toml_text).unwrap()
    }

    fn param(toml_text: &str) -> Result<Param, Vec<String>> {
        let mut mistakes = Vec::new();
        Param::from_def("p", &def(toml_text), &mut mistakes).ok_or(mistakes)
    }

    #[test]
    fn sizes_take_mib_and_gib_only() {
        assert_eq!(parse_size("512MiB"), Ok(512));
        assert_eq!(parse_size("2GiB"), Ok(2048));
        assert_eq!(parse_size("2 GiB"), Ok(2048));
        assert!(parse_size("512").is_err());
        assert!(parse_size("1.5GiB").is_err());
        assert!(parse_size("512MB").is_err());
        assert!(parse_size("-1MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
        assert_eq!(format_size(2048), "2GiB");
        assert_eq!(format_size(1536), "1536MiB");
    }

    #[test]
    fn values_parse_by_type() {
        assert_eq!(parse_value(ParamType::Int, "-3"), Ok(Value::Int(-3)));
        assert!(parse_value(ParamType::Int, "two").is_err());
        assert_eq!(parse_value(ParamType::Bool, "true"), Ok(Value::Bool(true)));
        assert!(parse_value(ParamType::Bool, "yes").is_err());
        assert!(parse_value(ParamType::Key, "nullos-ed25519 00").is_err());
        assert!(parse_value(ParamType::Digest, &"ab".repeat(32)).is_ok());
        assert!(parse_value(ParamType::Digest, "abc").is_err());
    }

    #[test]
    fn bounds_are_checked_for_sets_and_defaults() {
        let p = param("type = 'size'\nmin = '64MiB'\nmax = '1GiB'\ndefault = '128MiB'").unwrap();
        assert!(p.check(&Value::Size(1024)).is_ok());
        assert_eq!(
            p.check(&Value::Size(2048)),
            Err("2GiB is above the maximum 1GiB".into())
        );
        assert!(p.check(&Value::Size(32)).unwrap_err().contains("below"));

        let errs = param("type = 'int'\nmin = 1\nmax = 4\ndefault = 9").unwrap_err();
        assert_eq!(
            errs,
            ["template parameter 'p': default 9 is above the maximum 4"]
        );
        let s = param("type = 'string'\nmax_length = 3\nallowed = ['ab', 'cd']").unwrap();
        assert!(s.check(&Value::String("ab".into())).is_ok());
        assert!(s.check(&Value::String("xy".into())).is_err());
        assert!(s.check(&Value::String("abcd".into())).is_err());
    }

    #[test]
    fn definitions_refuse_bounds_of_another_type() {
        let errs = param("type = 'bool'\nmax = 3\nmax_length = 2\nallowed = [true]").unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        let errs = param("type = 'int'\nmin = 5\nmax = 1").unwrap_err();
        assert!(errs[0].contains("above 'max'"), "{errs:?}");
        assert!(toml::from_str::<ParamDef>("type = 'float'").is_err());
        assert!(toml::from_str::<ParamDef>("type = 'int'\nmaximum = 3").is_err());
    }

    #[test]
    fn resolve_reports_every_mistake() {
        let mut params = BTreeMap::new();
        params.insert(
            "n".to_owned(),
            param("type = 'int'\nmax = 4\ndefault = 1").unwrap(),
        );
        params.insert("k".to_owned(), param("type = 'key'").unwrap());
        params.insert(
            "m".to_owned(),
            param("type = 'size'\ndefault = '1GiB'").unwrap(),
        );
        let sets = [
            ("n".to_owned(), "9".to_owned()),
            ("x".to_owned(), "1".to_owned()),
            ("m".to_owned(), "lots".to_owned()),
        ];
        let mut mistakes = Vec::new();
        let values = resolve(&params, &sets, &mut mistakes);
        assert_eq!(mistakes.len(), 4, "{mistakes:?}");
        assert!(mistakes[0].starts_with("--set n: 9 is above the maximum 4"));
        assert!(mistakes[1].starts_with("--set x: unknown parameter (the template has: k, m, n)"));
        assert!(mistakes[2].starts_with("--set m: 'lots' is not a size"));
        assert!(mistakes[3].starts_with("parameter 'k' (key) has no default"));
        assert!(
            !values.contains_key("n"),
            "a refused value does not fall back to the default"
        );
        assert_eq!(values.get("m"), None);
    }
}
