//! Builders for the `describe()` data, so a plugin's description reads as a
//! list of what it accepts rather than a wall of struct literals.

use crate::{Capability, CapabilityKind, InputSpec, OutputSpec, PluginInfo, Value, ValueKind};

impl PluginInfo {
    /// A plugin with no inputs, outputs or capabilities yet.
    pub fn new(name: &str, version: &str, summary: &str) -> Self {
        PluginInfo {
            name: name.to_owned(),
            version: version.to_owned(),
            summary: summary.to_owned(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            capabilities: Vec::new(),
        }
    }

    /// Add an input.
    pub fn input(mut self, input: InputSpec) -> Self {
        self.inputs.push(input);
        self
    }

    /// Add an output.
    pub fn output(mut self, name: &str, kind: ValueKind, description: &str) -> Self {
        self.outputs.push(OutputSpec {
            name: name.to_owned(),
            description: description.to_owned(),
            kind,
        });
        self
    }

    /// Declare a capability the step needs beyond the default grant.
    pub fn needs(mut self, kind: CapabilityKind, target: &str, reason: &str) -> Self {
        self.capabilities.push(Capability {
            kind,
            target: target.to_owned(),
            reason: reason.to_owned(),
        });
        self
    }
}

impl InputSpec {
    /// An optional input of the given kind, with no default.
    pub fn new(name: &str, kind: ValueKind, description: &str) -> Self {
        InputSpec {
            name: name.to_owned(),
            description: description.to_owned(),
            kind,
            default: None,
            required: false,
            secret: false,
        }
    }

    /// An optional text input.
    pub fn text(name: &str, description: &str) -> Self {
        Self::new(name, ValueKind::Text, description)
    }

    /// An optional boolean input.
    pub fn boolean(name: &str, description: &str) -> Self {
        Self::new(name, ValueKind::Boolean, description)
    }

    /// An optional integer input.
    pub fn integer(name: &str, description: &str) -> Self {
        Self::new(name, ValueKind::Integer, description)
    }

    /// An optional guest-path input.
    pub fn path(name: &str, description: &str) -> Self {
        Self::new(name, ValueKind::Path, description)
    }

    /// The caller must give a value.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Mask the value in everything the host prints.
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    /// Default for a text input.
    pub fn default_text(self, value: &str) -> Self {
        self.default(Value::Text(value.to_owned()))
    }

    /// Default for a boolean input.
    pub fn default_bool(self, value: bool) -> Self {
        self.default(Value::Boolean(value))
    }

    /// Default for an integer input.
    pub fn default_int(self, value: i64) -> Self {
        self.default(Value::Integer(value))
    }

    /// Default for a path input.
    pub fn default_path(self, value: &str) -> Self {
        self.default(Value::Path(value.to_owned()))
    }

    fn default(mut self, value: Value) -> Self {
        self.default = Some(value);
        self
    }
}
