//! Inputs declared once: a constant per input carries its name, type,
//! description and default, gives `describe()` its [`InputSpec`] and reads
//! its value in `run()`, so the two can never name an input differently.
//!
//! ```ignore
//! use kiln_sdk::input::{Given, Input, Integer, Text};
//!
//! const NAME: Input<Text, Given> = Input::text("name", "Who to greet").default("world");
//! const REPEAT: Input<Integer, Given> = Input::integer("repeat", "How often").default(1);
//! const TITLE: Input<Text> = Input::text("title", "An optional title");
//!
//! // describe(): PluginInfo::new(..).input(&NAME).input(&REPEAT).input(&TITLE)
//! // run():      let name: String = NAME.get(&inputs)?;
//! //             let title: Option<String> = TITLE.get(&inputs)?;
//! ```
//!
//! An input with a default or marked required is [`Given`]: the host fills
//! in the default and refuses a step without a required value, so `get`
//! returns the value itself. Any other is [`Optional`] and `get` returns an
//! `Option`.

use std::marker::PhantomData;

use crate::{Error, InputSpec, NamedValue, Value, ValueKind};

/// The type of an input's value, as the contract's `value-kind` says it.
pub trait Kind {
    /// The contract's kind.
    const KIND: ValueKind;
    /// How the kind is named in messages (`a text`).
    const NAME: &'static str;
    /// What a plugin reads.
    type Value;
    /// The value, if `value` is of this kind.
    fn read(value: &Value) -> Option<Self::Value>;
}

/// Declare a [`Kind`]: its marker type, the contract's kind, its name in
/// messages, and the value a plugin reads.
macro_rules! kinds {
    ($($(#[$doc:meta])* $kind:ident: $contract:ident, $name:literal, $value:ty;)*) => {$(
        $(#[$doc])*
        pub struct $kind;

        impl Kind for $kind {
            const KIND: ValueKind = ValueKind::$contract;
            const NAME: &'static str = $name;
            type Value = $value;
            fn read(value: &Value) -> Option<$value> {
                match value {
                    Value::$contract(v) => Some(v.clone()),
                    _ => None,
                }
            }
        }
    )*};
}

kinds! {
    /// Free text, read as a `String`.
    Text: Text, "text", String;
    /// `true` or `false`.
    Boolean: Boolean, "boolean", bool;
    /// A signed 64-bit integer.
    Integer: Integer, "integer", i64;
    /// A path inside the guest, read as a `String`.
    GuestPath: Path, "path", String;
}

/// An input that may be absent: `get` returns an `Option`.
pub struct Optional;
/// An input that is always there (defaulted or required): `get` returns
/// the value.
pub struct Given;

/// A default, in a form a constant can hold.
#[derive(Debug, Clone, Copy)]
enum Default {
    Text(&'static str),
    Boolean(bool),
    Integer(i64),
}

impl Default {
    fn value(self) -> Value {
        match self {
            Default::Text(text) => Value::Text(text.to_owned()),
            Default::Boolean(flag) => Value::Boolean(flag),
            Default::Integer(number) => Value::Integer(number),
        }
    }
}

/// One input of a step, of kind `K` ([`Text`], [`Boolean`], [`Integer`],
/// [`GuestPath`]), [`Optional`] or [`Given`].
pub struct Input<K, P = Optional> {
    name: &'static str,
    description: &'static str,
    default: Option<Default>,
    required: bool,
    secret: bool,
    marker: PhantomData<fn() -> (K, P)>,
}

// Not derived: a derive would ask the markers to be `Clone` too.
impl<K, P> Clone for Input<K, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, P> Copy for Input<K, P> {}

impl<K> Input<K, Optional> {
    const fn new(name: &'static str, description: &'static str) -> Self {
        Input {
            name,
            description,
            default: None,
            required: false,
            secret: false,
            marker: PhantomData,
        }
    }

    /// The caller must give a value; the host refuses the step otherwise.
    pub const fn required(self) -> Input<K, Given> {
        self.given(None)
    }

    const fn given(self, default: Option<Default>) -> Input<K, Given> {
        Input {
            name: self.name,
            description: self.description,
            default,
            required: self.required || default.is_none(),
            secret: self.secret,
            marker: PhantomData,
        }
    }
}

impl Input<Text> {
    /// A text input; `description` is one line saying what it controls
    /// (and, without a default, what happens when it is absent).
    pub const fn text(name: &'static str, description: &'static str) -> Self {
        Input::new(name, description)
    }

    /// Used when the caller gives no value.
    pub const fn default(self, value: &'static str) -> Input<Text, Given> {
        self.given(Some(Default::Text(value)))
    }
}

impl Input<Boolean> {
    /// A boolean input.
    pub const fn boolean(name: &'static str, description: &'static str) -> Self {
        Input::new(name, description)
    }

    /// Used when the caller gives no value.
    pub const fn default(self, value: bool) -> Input<Boolean, Given> {
        self.given(Some(Default::Boolean(value)))
    }
}

impl Input<Integer> {
    /// An integer input.
    pub const fn integer(name: &'static str, description: &'static str) -> Self {
        Input::new(name, description)
    }

    /// Used when the caller gives no value.
    pub const fn default(self, value: i64) -> Input<Integer, Given> {
        self.given(Some(Default::Integer(value)))
    }
}

impl Input<GuestPath> {
    /// A guest-path input. It takes no default: where the guest's
    /// directories are is the host's to say, in the [`crate::StepContext`]
    /// given to `run`, so resolve an absent path from it there and say so
    /// in the description ("default: the step's workspace").
    pub const fn path(name: &'static str, description: &'static str) -> Self {
        Input::new(name, description)
    }
}

impl<K, P> Input<K, P> {
    /// Mask the value in everything the host prints.
    pub const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    /// The input's name, as callers write it (`--input NAME=VALUE`) and as
    /// capabilities refer to it.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<K: Kind, P> Input<K, P> {
    /// The declaration `describe()` returns.
    pub fn spec(&self) -> InputSpec {
        let mut spec = InputSpec::new(self.name, K::KIND, self.description);
        spec.default = self.default.map(Default::value);
        spec.required = self.required;
        spec.secret = self.secret;
        spec
    }

    fn read(&self, inputs: &Inputs) -> Result<Option<K::Value>, Error> {
        inputs.value::<K>(self.name)
    }
}

impl<K: Kind> Input<K, Optional> {
    /// The value, if the caller gave one.
    pub fn get(&self, inputs: &Inputs) -> Result<Option<K::Value>, Error> {
        self.read(inputs)
    }

    /// The value, which what the step is doing needs though the input is
    /// optional (one operation of several needs it); an error names the
    /// input when it is absent.
    pub fn require(&self, inputs: &Inputs) -> Result<K::Value, Error> {
        self.read(inputs)?.ok_or_else(|| required(self.name))
    }
}

impl<K: Kind> Input<K, Given> {
    /// The value, given or defaulted.
    pub fn get(&self, inputs: &Inputs) -> Result<K::Value, Error> {
        self.read(inputs)?.ok_or_else(|| required(self.name))
    }
}

impl<K: Kind, P> From<&Input<K, P>> for InputSpec {
    fn from(input: &Input<K, P>) -> InputSpec {
        input.spec()
    }
}

/// The error for an input that is absent though it must be given.
pub(crate) fn required(name: &str) -> Error {
    Error::invalid_input(format!("input `{name}` is required"))
}

/// The inputs given to `run`, checked by the host against `describe()`.
/// Read them through their [`Input`] declarations.
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
        self.value::<Text>(name)?.ok_or_else(|| required(name))
    }
}
