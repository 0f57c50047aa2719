//! The SDK's example step: greets someone, logs progress, and writes the
//! greeting to the step's output directory. It needs nothing beyond the
//! default grant, which makes it the plugin to copy when starting a new one.

use kiln_sdk::input::{Given, Input, Integer, Text};
use kiln_sdk::{
    CapabilityKind, Context, Error, Inputs, Outputs, PluginInfo, Step, StepContext, ValueKind,
    export_step,
};

const NAME: Input<Text, Given> = Input::text("name", "Who to greet").default("world");
const REPEAT: Input<Integer, Given> =
    Input::integer("repeat", "How many times to write the greeting").default(1);

struct Hello;

impl Step for Hello {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "hello",
            env!("CARGO_PKG_VERSION"),
            "Greets someone and writes the greeting to the output directory",
        )
        .input(&NAME)
        .input(&REPEAT)
        .output("message", ValueKind::Text, "The greeting")
        .output("file", ValueKind::Path, "The file holding the greeting")
        .needs(CapabilityKind::Write, "output", "writes greeting.txt")
    }

    fn run(context: StepContext, inputs: Inputs) -> Result<Outputs, Error> {
        let name = NAME.get(&inputs)?;
        let repeat = REPEAT.get(&inputs)?;
        if !(1..=1000).contains(&repeat) {
            return Err(Error::invalid_input(format!(
                "input `{}` must be between 1 and 1000, got {repeat}",
                REPEAT.name()
            )));
        }
        let message = format!("hello, {name}!");
        let file = format!("{}/greeting.txt", context.output);
        let text = format!("{message}\n").repeat(repeat as usize);
        std::fs::write(&file, &text).context(format!("writing {file}"))?;
        kiln_sdk::log::progress("greeting", text.len() as u64, Some(text.len() as u64));
        kiln_sdk::info!("wrote {file}");
        Ok(Outputs::new().text("message", message).path("file", file))
    }
}

export_step!(Hello);
