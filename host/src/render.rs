//! Plugin descriptions as the pages `kiln plugin list` and `kiln plugin
//! inspect` print.

use kiln_runtime::inputs::display;
use kiln_runtime::{CapabilityKind, PluginInfo, ValueKind};

/// One line per plugin: name, version, summary.
pub fn plugin_table(infos: &[PluginInfo]) -> String {
    let width = infos.iter().map(|i| i.name.len()).max().unwrap_or(0);
    infos
        .iter()
        .map(|info| {
            format!(
                "{:width$}  {:8}  {}\n",
                info.name, info.version, info.summary
            )
        })
        .collect()
}

fn kind_name(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Text => "text",
        ValueKind::Boolean => "boolean",
        ValueKind::Integer => "integer",
        ValueKind::Path => "path",
    }
}

fn capability_name(kind: CapabilityKind) -> &'static str {
    match kind {
        CapabilityKind::Read => "read",
        CapabilityKind::Write => "write",
        CapabilityKind::Net => "net",
        CapabilityKind::Env => "env",
        CapabilityKind::Secret => "secret",
    }
}

/// `kiln plugin inspect`: the description, then what RUN takes.
pub fn inspection(inspection: &kiln::Inspection) -> String {
    let mut out = plugin_info(&inspection.info);
    if let Some(run) = &inspection.run {
        out.push_str("\nnative commands (RUN):\n");
        out.push_str(&format!("  needs   {}\n", run.grant));
        match (&run.isolation, &run.unavailable) {
            (Some(tier), _) => out.push_str(&format!("  here    isolated by {tier}\n")),
            (None, Some(why)) => out.push_str(&format!("  here    unavailable: {why}\n")),
            (None, None) => {}
        }
    }
    out
}

/// `describe()` data as the human-readable page `plugin inspect` prints.
fn plugin_info(info: &PluginInfo) -> String {
    let mut out = format!("{} {}\n{}\n", info.name, info.version, info.summary);
    out.push_str("\ninputs:\n");
    if info.inputs.is_empty() {
        out.push_str("  (none)\n");
    }
    for input in &info.inputs {
        let mut notes = Vec::new();
        if input.required {
            notes.push("required".to_owned());
        }
        if let Some(default) = &input.default {
            notes.push(format!("default {:?}", display(default)));
        }
        if input.secret {
            notes.push("secret".to_owned());
        }
        out.push_str(&format!(
            "  {:16} {:8} {}{}\n",
            input.name,
            kind_name(input.kind),
            input.description,
            if notes.is_empty() {
                String::new()
            } else {
                format!(" [{}]", notes.join(", "))
            }
        ));
    }
    out.push_str("\noutputs:\n");
    if info.outputs.is_empty() {
        out.push_str("  (none)\n");
    }
    for output in &info.outputs {
        out.push_str(&format!(
            "  {:16} {:8} {}\n",
            output.name,
            kind_name(output.kind),
            output.description
        ));
    }
    out.push_str("\ncapabilities:\n");
    if info.capabilities.is_empty() {
        out.push_str("  (none beyond the default grant)\n");
    }
    for capability in &info.capabilities {
        out.push_str(&format!(
            "  {:6} {:24} {}\n",
            capability_name(capability.kind),
            capability.target,
            capability.reason
        ));
    }
    out
}
