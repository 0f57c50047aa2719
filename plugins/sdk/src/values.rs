//! Typed access to a step's inputs and a builder for its outputs.

use crate::{NamedValue, StepError, Value};

/// The inputs given to `run`, checked by the host against `describe()`.
pub struct Inputs {
    values: Vec<NamedValue>,
}

impl Inputs {
    /// Wrap the raw inputs (used by [`crate::export_step!`]).
    pub fn new(values: Vec<NamedValue>) -> Self {
        Inputs { values }
    }

    /// The raw value of `name`, if given or defaulted.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values
            .iter()
            .find(|v| v.name == name)
            .map(|v| &v.value)
    }

    /// A text input; an error names the input when it is absent.
    pub fn text(&self, name: &str) -> Result<String, StepError> {
        match self.get(name) {
            Some(Value::Text(text)) => Ok(text.clone()),
            other => Err(mismatch(name, "text", other)),
        }
    }

    /// A text input that may be absent.
    pub fn optional_text(&self, name: &str) -> Result<Option<String>, StepError> {
        self.get(name).map(|_| self.text(name)).transpose()
    }

    /// A boolean input.
    pub fn boolean(&self, name: &str) -> Result<bool, StepError> {
        match self.get(name) {
            Some(Value::Boolean(flag)) => Ok(*flag),
            other => Err(mismatch(name, "boolean", other)),
        }
    }

    /// An integer input.
    pub fn integer(&self, name: &str) -> Result<i64, StepError> {
        match self.get(name) {
            Some(Value::Integer(number)) => Ok(*number),
            other => Err(mismatch(name, "integer", other)),
        }
    }

    /// A guest-path input that may be absent.
    pub fn optional_path(&self, name: &str) -> Result<Option<String>, StepError> {
        self.get(name).map(|_| self.path(name)).transpose()
    }

    /// A guest-path input.
    pub fn path(&self, name: &str) -> Result<String, StepError> {
        match self.get(name) {
            Some(Value::Path(path)) => Ok(path.clone()),
            other => Err(mismatch(name, "path", other)),
        }
    }
}

fn mismatch(name: &str, expected: &str, found: Option<&Value>) -> StepError {
    match found {
        None => StepError::InvalidInput(format!("input `{name}` is required")),
        Some(_) => StepError::InvalidInput(format!("input `{name}` must be a {expected}")),
    }
}

/// The outputs a step returns, built fluently.
#[derive(Default)]
pub struct Outputs {
    values: Vec<NamedValue>,
}

impl Outputs {
    /// No outputs yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an output value.
    pub fn value(mut self, name: &str, value: Value) -> Self {
        self.values.push(NamedValue {
            name: name.to_owned(),
            value,
        });
        self
    }

    /// Add a text output.
    pub fn text(self, name: &str, value: impl Into<String>) -> Self {
        self.value(name, Value::Text(value.into()))
    }

    /// Add a path output.
    pub fn path(self, name: &str, value: impl Into<String>) -> Self {
        self.value(name, Value::Path(value.into()))
    }

    /// Add an integer output.
    pub fn integer(self, name: &str, value: i64) -> Self {
        self.value(name, Value::Integer(value))
    }

    /// The raw values (used by [`crate::export_step!`]).
    pub fn into_values(self) -> Vec<NamedValue> {
        self.values
    }
}
