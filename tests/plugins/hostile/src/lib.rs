//! A deliberately hostile step plugin for the containment tests.
//!
//! Each `attack` tries to get past its step's grant. When an attack
//! *succeeds* the plugin returns or logs what it obtained, so a test that
//! looks for the stolen data fails; when the sandbox stops it, the plugin
//! reports the refusal as `denied`.

use kiln_sdk::{
    CapabilityKind, InputSpec, Inputs, Outputs, PluginInfo, Step, StepContext, StepError, ValueKind,
};

struct Hostile;

impl Step for Hostile {
    fn describe() -> PluginInfo {
        // Lets a test count how often the host asks.
        kiln_sdk::debug!("described");
        PluginInfo::new("hostile", env!("CARGO_PKG_VERSION"), "Tries to escape its sandbox (test fixture)")
            .input(
                InputSpec::text(
                    "attack",
                    "read-file | write-file | env | http | post | spin | sleep | alloc | trap | log-flood | stdout-flood | leak-secret | stat | empty-fields | deny-flood | open-files | split-secret | write-partial",
                )
                .required(),
            )
            .input(InputSpec::text("target", "The path, variable, URL or secret the attack aims at").default_text(""))
            .output("loot", ValueKind::Text, "What the attack obtained")
            .needs(CapabilityKind::Read, "target", "reads whatever file it is aimed at")
            .needs(CapabilityKind::Net, "target", "fetches whatever URL it is aimed at")
            .needs(CapabilityKind::Env, "target", "reads whatever variable it is aimed at")
            .needs(CapabilityKind::Secret, "target", "prints whatever secret it is given")
    }

    fn run(_context: StepContext, inputs: Inputs) -> Result<Outputs, StepError> {
        let target = inputs.text("target")?;
        let loot = match inputs.text("attack")?.as_str() {
            "read-file" => std::fs::read_to_string(&target)
                .map_err(|e| StepError::denied(format!("reading {target}: {e}")))?,
            "write-file" => {
                std::fs::write(&target, b"overwritten by hostile plugin")
                    .map_err(|e| StepError::denied(format!("writing {target}: {e}")))?;
                format!("wrote {target}")
            }
            "env" => std::env::var(&target)
                .map_err(|e| StepError::denied(format!("reading ${target}: {e}")))?,
            "http" => {
                let response = kiln_sdk::http::get(&target).send()?;
                let status = response.status();
                let body = response.text(1 << 20)?;
                format!("{status} {body}")
            }
            "post" => {
                let response = kiln_sdk::http::Request::new("POST", &target)
                    .body(b"exfiltrated".to_vec())
                    .send()?;
                let status = response.status();
                let body = response.text(1 << 20)?;
                format!("{status} {body}")
            }
            "spin" => spin(),
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                "woke up".to_owned()
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![0xa5; 16 << 20]);
                    kiln_sdk::debug!("holding {} MiB", hoard.len() * 16);
                }
            }
            "trap" => panic!("hostile plugin panics on purpose"),
            "log-flood" => {
                let line = "x".repeat(1 << 20);
                for _ in 0..1024 {
                    kiln_sdk::info!("{line}");
                }
                "logged 1 GiB".to_owned()
            }
            "stdout-flood" => {
                let line = "y".repeat(1 << 20);
                for _ in 0..1024 {
                    println!("{line}");
                }
                "printed 1 GiB".to_owned()
            }
            "leak-secret" => {
                let value = kiln_sdk::secret(&target)?;
                kiln_sdk::info!("the secret is {value}");
                kiln_sdk::log::emit(kiln_sdk::log::Level::Warn, "leaking", &[("secret", &value)]);
                println!("stdout: {value}");
                eprintln!("stderr: {value}");
                return Err(StepError::failed(format!(
                    "giving up, the secret was {value}"
                )));
            }
            "stat" => {
                let meta = kiln_sdk::files::metadata(std::path::Path::new(&target))
                    .map_err(|e| StepError::denied(format!("stat {target}: {e}")))?;
                format!("mode {:o} ctime {}", meta.mode, meta.change_time)
            }
            "empty-fields" => {
                let fields: Vec<(&str, &str)> = vec![("", ""); 5000];
                loop {
                    kiln_sdk::log::emit(kiln_sdk::log::Level::Info, "", &fields);
                }
            }
            "deny-flood" => {
                let host = "a".repeat(60_000);
                for _ in 0..2000 {
                    let _ = kiln_sdk::http::get(&format!("http://{host}.example/")).send();
                }
                "sent 2000 requests".to_owned()
            }
            "open-files" => {
                let mut held = Vec::new();
                loop {
                    match std::fs::File::open(&target) {
                        Ok(file) => held.push(file),
                        Err(e) => {
                            return Err(StepError::failed(format!(
                                "opened {} files, then: {e}",
                                held.len()
                            )));
                        }
                    }
                }
            }
            "write-partial" => {
                // Half-written files, as a download cut off by a timeout
                // leaves them, then a spin the timeout stops.
                std::fs::write("/output/kept.txt", b"finished")
                    .map_err(|e| StepError::failed(e.to_string()))?;
                std::fs::create_dir_all("/output/image/blobs/sha256")
                    .map_err(|e| StepError::failed(e.to_string()))?;
                for path in [
                    "/output/.kiln-partial-1-top",
                    "/output/image/blobs/sha256/.kiln-partial-2-blob",
                ] {
                    std::fs::write(path, b"half").map_err(|e| StepError::failed(e.to_string()))?;
                }
                spin()
            }
            "split-secret" => {
                // The secret straddles the 64 KiB point where the host cuts
                // an endless line.
                let value = kiln_sdk::secret(&target)?;
                let pad = "x".repeat(64 * 1024 - value.len() / 2);
                println!("{pad}{value}{pad}");
                "printed".to_owned()
            }
            other => return Err(StepError::invalid_input(format!("unknown attack {other}"))),
        };
        Ok(Outputs::new().text("loot", loot))
    }
}

/// Burn CPU forever without calling the host, so only epoch interruption
/// can stop it.
fn spin() -> String {
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

kiln_sdk::export_step!(Hostile);
