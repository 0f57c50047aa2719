//! A builder for a step's outputs.

use crate::{NamedValue, Value};

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
