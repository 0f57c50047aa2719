//! The SDK's example step: greets someone, logs progress, and writes the
//! greeting to the step's output directory. It needs nothing beyond the
//! default grant, which makes it the plugin to copy when starting a new one.

use kiln_sdk::{
    CapabilityKind, InputSpec, Inputs, Outputs, PluginInfo, Step, StepContext, StepError,
    ValueKind, export_step,
};

struct Hello;

impl Step for Hello {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "hello",
            env!("CARGO_PKG_VERSION"),
            "Greets someone and writes the greeting to the output directory",
        )
        .input(InputSpec::text("name", "Who to greet").default_text("world"))
        .input(InputSpec::integer("repeat", "How many times to write the greeting").default_int(1))
        .output("message", ValueKind::Text, "The greeting")
        .output("file", ValueKind::Path, "The file holding the greeting")
        .needs(CapabilityKind::Write, "output", "writes greeting.txt")
    }

    fn run(context: StepContext, inputs: Inputs) -> Result<Outputs, StepError> {
        let name = inputs.text("name")?;
        let repeat = inputs.integer("repeat")?;
        if !(1..=1000).contains(&repeat) {
            return Err(StepError::invalid_input(format!(
                "input `repeat` must be between 1 and 1000, got {repeat}"
            )));
        }
        let message = format!("hello, {name}!");
        let file = format!("{}/greeting.txt", context.output);
        let text = format!("{message}\n").repeat(repeat as usize);
        std::fs::write(&file, &text)
            .map_err(|e| StepError::failed(format!("writing {file}: {e}")))?;
        kiln_sdk::log::progress("greeting", text.len() as u64, Some(text.len() as u64));
        kiln_sdk::info!("wrote {file}");
        Ok(Outputs::new().text("message", message).path("file", file))
    }
}

export_step!(Hello);
