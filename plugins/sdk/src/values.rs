//! Access to a step's inputs and a builder for its outputs.

use crate::input::{self, Kind, Text};
use crate::{Error, NamedValue, Value};

/// The inputs given to `run`, checked by the host against `describe()`.
/// Read them through their [`input::Input`] declarations.
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

    /// The value of `name` as kind `K`, if given or defaulted; a value of
    /// another kind is an error naming the input.
    pub fn value<K: Kind>(&self, name: &str) -> Result<Option<K::Value>, Error> {
        self.get(name)
            .map(|value| {
                K::read(value).ok_or_else(|| {
                    Error::invalid_input(format!("input `{name}` must be a {}", K::NAME))
                })
            })
            .transpose()
    }

    /// A text input read by name, for plugins that declare their inputs
    /// as plain [`crate::InputSpec`]s; an error names the input when it
    /// is absent.
    pub fn text(&self, name: &str) -> Result<String, Error> {
        self.value::<Text>(name)?
            .ok_or_else(|| input::required(name))
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
