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

    /// Add an input: an [`crate::input::Input`] declaration (`&NAME`) or
    /// a plain [`InputSpec`].
    pub fn input(mut self, input: impl Into<InputSpec>) -> Self {
        self.inputs.push(input.into());
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

/// Plain input declarations, for plugins that name their inputs at the
/// call site; [`crate::input::Input`] declares an input once for both
/// `describe()` and `run()`.
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

    /// The caller must give a value.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Default for a text input.
    pub fn default_text(mut self, value: &str) -> Self {
        self.default = Some(Value::Text(value.to_owned()));
        self
    }
}
