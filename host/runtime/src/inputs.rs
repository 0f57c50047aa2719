//! Checking a step's inputs against its plugin's `describe()` before it
//! runs, so a plugin only ever sees well-typed, known inputs.

use crate::host_api::{InputSpec, NamedValue, PluginInfo, Value, ValueKind};

/// The inputs of a step, typed, with defaults filled in, plus the values
/// that must be masked because their input is secret.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedInputs {
    /// Values in the plugin's declaration order.
    pub values: Vec<NamedValue>,
    /// Values of secret inputs.
    pub secret_values: Vec<String>,
}

/// Type-check `given` (`name`, raw text) against `info`.
///
/// Errors name the input and what is expected; the message never contains
/// the value of a secret input.
pub fn check(info: &PluginInfo, given: &[(String, String)]) -> Result<CheckedInputs, String> {
    for (index, (name, _)) in given.iter().enumerate() {
        if !info.inputs.iter().any(|spec| spec.name == *name) {
            let accepted: Vec<&str> = info.inputs.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "unknown input `{name}` for plugin {} (it accepts: {})",
                info.name,
                if accepted.is_empty() {
                    "no inputs".to_owned()
                } else {
                    accepted.join(", ")
                }
            ));
        }
        if given[..index].iter().any(|(earlier, _)| earlier == name) {
            return Err(format!("input `{name}` is given twice"));
        }
    }
    let mut checked = CheckedInputs {
        values: Vec::new(),
        secret_values: Vec::new(),
    };
    for spec in &info.inputs {
        let value = match given.iter().find(|(name, _)| *name == spec.name) {
            Some((_, raw)) => parse(spec, raw)?,
            None => match &spec.default {
                Some(default) => default.clone(),
                None if spec.required => {
                    return Err(format!(
                        "input `{}` is required: {} (give it with --input {}=VALUE)",
                        spec.name, spec.description, spec.name
                    ));
                }
                None => continue,
            },
        };
        if spec.secret
            && let Value::Text(text) | Value::Path(text) = &value
        {
            checked.secret_values.push(text.clone());
        }
        checked.values.push(NamedValue {
            name: spec.name.clone(),
            value,
        });
    }
    Ok(checked)
}

fn parse(spec: &InputSpec, raw: &str) -> Result<Value, String> {
    let shown = if spec.secret { "(secret)" } else { raw };
    match spec.kind {
        ValueKind::Text => Ok(Value::Text(raw.to_owned())),
        ValueKind::Path => Ok(Value::Path(raw.to_owned())),
        ValueKind::Boolean => match raw {
            "true" => Ok(Value::Boolean(true)),
            "false" => Ok(Value::Boolean(false)),
            _ => Err(format!(
                "input `{}` must be true or false, got `{shown}`",
                spec.name
            )),
        },
        ValueKind::Integer => raw
            .trim()
            .parse()
            .map(Value::Integer)
            .map_err(|_| format!("input `{}` must be an integer, got `{shown}`", spec.name)),
    }
}

/// A value as the user would type it.
pub fn display(value: &Value) -> String {
    match value {
        Value::Text(text) | Value::Path(text) => text.clone(),
        Value::Boolean(flag) => flag.to_string(),
        Value::Integer(number) => number.to_string(),
    }
}

/// A value as JSON events carry it: text and paths as strings, integers
/// as numbers, booleans as booleans.
pub fn json(value: &Value) -> serde_json::Value {
    match value {
        Value::Text(text) | Value::Path(text) => text.clone().into(),
        Value::Boolean(flag) => (*flag).into(),
        Value::Integer(number) => (*number).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> PluginInfo {
        let spec = |name: &str, kind, default: Option<Value>, required, secret| InputSpec {
            name: name.into(),
            description: format!("the {name}"),
            kind,
            default,
            required,
            secret,
        };
        PluginInfo {
            name: "demo".into(),
            version: "1.0.0".into(),
            summary: String::new(),
            inputs: vec![
                spec(
                    "name",
                    ValueKind::Text,
                    Some(Value::Text("world".into())),
                    false,
                    false,
                ),
                spec("count", ValueKind::Integer, None, true, false),
                spec("dry-run", ValueKind::Boolean, None, false, false),
                spec("token", ValueKind::Text, None, false, true),
            ],
            outputs: vec![],
            capabilities: vec![],
        }
    }

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fills_defaults_and_types_values() {
        let checked = check(&info(), &given(&[("count", "3"), ("token", "s3cret")])).unwrap();
        assert_eq!(checked.values.len(), 3);
        assert_eq!(checked.values[0].value, Value::Text("world".into()));
        assert_eq!(checked.values[1].value, Value::Integer(3));
        assert_eq!(checked.secret_values, vec!["s3cret".to_owned()]);
    }

    #[test]
    fn explains_bad_inputs() {
        let err = check(&info(), &given(&[])).unwrap_err();
        assert!(err.contains("input `count` is required"), "{err}");
        let err = check(&info(), &given(&[("count", "x")])).unwrap_err();
        assert!(err.contains("must be an integer"), "{err}");
        let err = check(&info(), &given(&[("count", "1"), ("nmae", "x")])).unwrap_err();
        assert!(
            err.contains("unknown input `nmae`") && err.contains("name, count"),
            "{err}"
        );
        let err = check(&info(), &given(&[("count", "1"), ("dry-run", "yes")])).unwrap_err();
        assert!(err.contains("true or false"), "{err}");
        let err = check(&info(), &given(&[("count", "1"), ("count", "2")])).unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }
}
