//! The crate kiln step plugins are written with.
//!
//! A plugin is a WASI Preview 2 component implementing the `kiln:plugin`
//! contract (see `wit/plugin.wit`). This crate hides the generated bindings
//! behind a small, typed API: inputs declared once ([`input::Input`]), one
//! [`Error`] type that `?` converts into from the SDK's own errors, and
//! logging, secrets, files and HTTP through the host.
//!
//! ```ignore
//! use kiln_sdk::input::{Given, Input, Text};
//! use kiln_sdk::{export_step, Context, Error, Inputs, Outputs, PluginInfo, Step, StepContext};
//!
//! const NAME: Input<Text, Given> = Input::text("name", "Who to greet").default("world");
//!
//! struct Greet;
//!
//! impl Step for Greet {
//!     fn describe() -> PluginInfo {
//!         PluginInfo::new("greet", env!("CARGO_PKG_VERSION"), "Says hello").input(&NAME)
//!     }
//!     fn run(context: StepContext, inputs: Inputs) -> Result<Outputs, Error> {
//!         let name = NAME.get(&inputs)?;
//!         let file = format!("{}/greeting.txt", context.output);
//!         std::fs::write(&file, format!("hello, {name}\n")).context(format!("writing {file}"))?;
//!         kiln_sdk::info!("greeted {name}");
//!         Ok(Outputs::new().text("message", format!("hello, {name}")))
//!     }
//! }
//!
//! export_step!(Greet);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` and run it
//! with `kiln step path/to/plugin.wasm`.
#![deny(missing_docs)]

pub mod compress;
pub mod digest;
mod error;
pub mod executor;
pub mod files;
pub mod http;
pub mod input;
pub mod log;
mod outputs;
mod spec;

pub use error::{Context, Error, ErrorKind, StepError};
pub use input::Inputs;
pub use outputs::Outputs;

/// Bindings generated from `wit/plugin.wit`; most plugins never need them.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "step-plugin",
        pub_export_macro: true,
        export_macro_name: "export_raw",
        default_bindings_module: "kiln_sdk::bindings",
    });
}

pub use bindings::kiln::plugin::types::{
    Capability, CapabilityKind, InputSpec, NamedValue, NeededArtifact, OutputSpec, PluginInfo,
    StepContext, Value, ValueKind,
};

/// What a plugin implements: the two functions of the `step` interface.
///
/// Export the implementing type with [`export_step!`].
pub trait Step {
    /// Describe the plugin. The host asks once per loaded component and
    /// keeps the answer, so it must not depend on anything but the code.
    fn describe() -> PluginInfo;

    /// Run the step. Inputs have been checked against [`Step::describe`]
    /// and defaults filled in by the host.
    fn run(context: StepContext, inputs: Inputs) -> Result<Outputs, Error>;
}

/// Export a [`Step`] implementation as the component's `step` interface.
///
/// Use it once per plugin crate, at the crate root. This is where an
/// [`Error`] becomes the contract's `step-error`.
#[macro_export]
macro_rules! export_step {
    ($step:ty) => {
        #[doc(hidden)]
        pub struct __KilnStepExport;

        impl $crate::bindings::exports::kiln::plugin::step::Guest for __KilnStepExport {
            fn describe() -> $crate::PluginInfo {
                <$step as $crate::Step>::describe()
            }

            fn run(
                context: $crate::StepContext,
                inputs: ::std::vec::Vec<$crate::NamedValue>,
            ) -> ::std::result::Result<
                ::std::vec::Vec<$crate::NamedValue>,
                $crate::bindings::kiln::plugin::types::StepError,
            > {
                <$step as $crate::Step>::run(context, $crate::Inputs::new(inputs))
                    .map($crate::Outputs::into_values)
                    .map_err($crate::Error::into_contract)
            }
        }

        $crate::bindings::export_raw!(__KilnStepExport with_types_in $crate::bindings);
    };
}

/// The value of the secret `name` granted to this step.
///
/// Secrets are not environment variables: the host answers only for names
/// in the step's grant, and masks their values in everything it prints.
pub fn secret(name: &str) -> Result<String, Error> {
    bindings::kiln::plugin::secrets::get(name).ok_or_else(|| {
        Error::denied(format!(
            "secret {name} is not granted to this step (grant it with `--secret {name}` or `allow: {{ secrets: [{name}] }}`)"
        ))
    })
}
