//! RUN: the plugin plans, the host executes. The stage's layers are
//! applied to a root file system the host keeps, the command runs there
//! (`kiln:plugin/executor`), and the changes the host reports as a tar
//! become the stage's next layer, written like any other.
//!
//! As BuildKit: the shell form runs through the stage's SHELL, the exec
//! form as it is; neither is expanded by the builder. Here-documents run
//! as [`Run::program`] says; a `#!` document is a file mounted for the
//! command (see [`SCRIPT_DIR`]). The environment is the image's ENV plus
//! the stage's build arguments ENV does not set. A RUN layer is reused
//! when the same command ran on the same layers with the same
//! environment, user, directory, network and mounts.

use kiln_dockerfile::heredoc;
use kiln_dockerfile::instructions::{Program, Run};
use kiln_oci::layer;
use kiln_sdk::Error;
use kiln_sdk::executor::{self as exec, Mount, MountSource, Network, Rootfs, Sharing};

use super::stage::Stage;
use super::{Build, Runner};
use kiln_dockerfile::instructions::Located;

/// Where a RUN's `#!` here-document is mounted. BuildKit mounts it at
/// `/dev/pipes`, but the executor gives each command a fresh `/dev` in
/// which nothing else can be mounted.
const SCRIPT_DIR: &str = "/run/heredocs";

/// A stage's root file system on the host; a clone of the stage (a later
/// `FROM stage`) starts without one and builds its own.
#[derive(Default)]
pub(super) struct HostRoot {
    rootfs: Option<Rootfs>,
    /// How many of the stage's layers the root file system has.
    applied: usize,
}

impl Clone for HostRoot {
    fn clone(&self) -> Self {
        HostRoot::default()
    }
}

impl Runner<'_> {
    /// Run `run` in `stage` and add what it changed as a layer.
    pub(super) fn run_command<T>(
        &mut self,
        stage: &mut Stage,
        at: &Located<T>,
        run: &Run,
        history: &str,
    ) -> Result<(), Error> {
        let mut script = None;
        let args = match run.program() {
            Program::Exec(args) => args,
            Program::Shell(text) => {
                let mut args = stage.shell.clone();
                args.push(text);
                args
            }
            Program::Script {
                name,
                body,
                interpreter,
            } => {
                let (mount, path) = self.script(at, &name, &body)?;
                script = Some(mount);
                let mut args = interpreter;
                args.push(path);
                args
            }
        };
        let mut env: Vec<String> = stage
            .image
            .env()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for (name, value) in &stage.args {
            if !env
                .iter()
                .any(|e| e.split_once('=').is_some_and(|(k, _)| k == name))
            {
                env.push(format!("{name}={value}"));
            }
        }
        match run.security.as_deref() {
            None | Some("sandbox") => {}
            Some(other) => {
                return Err(self.error(
                    at,
                    format!(
                        "RUN --security={other}: kiln never runs a command with the host's privileges; drop the flag"
                    ),
                ));
            }
        }
        let network = match run.network.as_deref() {
            None | Some("default") => Network::Default,
            Some("none") => Network::None,
            Some("host") => Network::Host,
            Some(other) => {
                return Err(self.error(
                    at,
                    format!("RUN --network={other}: use none, default or host"),
                ));
            }
        };
        // The script's mount first, as BuildKit adds it before --mount's.
        let mut mounts: Vec<Mount> = script.into_iter().collect();
        let mut secret_env = Vec::new();
        for spec in &run.mounts {
            let (mut mount, env_name, from) =
                parse_mount(spec, self.build).map_err(|e| self.error(at, e))?;
            if let Some(from) = from {
                mount.source = self.layered_source(at, &from, mount.source)?;
            }
            if let Some(name) = env_name
                && let MountSource::Secret(id) = &mount.source
            {
                secret_env.push((name, id.clone()));
                if mount.target.is_empty() {
                    continue;
                }
            }
            mounts.push(mount);
        }
        let user = stage.user();
        let command = exec::Command {
            args,
            env,
            workdir: format!("/{}", stage.workdir()),
            user,
            network,
            mounts,
            secret_env,
            source_date_epoch: Some(self.build.epoch),
        };
        let key = self.run_key(stage, &command)?;
        if let Some(layer) = self.cached_layer(&key) {
            stage.image.layers.push(layer);
            stage.image.history(&self.created, history, false);
            stage.forget_files();
            return Ok(());
        }
        self.prepare_root(stage)?;
        let diff = self.build.scratch.dir().join(format!(
            "{}run-{}.tar",
            kiln_sdk::files::PARTIAL_PREFIX,
            stage.image.layers.len()
        ));
        let diff_path = diff.to_string_lossy().into_owned();
        let rootfs = stage.root.rootfs.as_ref().expect("prepared above");
        let outcome = rootfs
            .run(&command, &diff_path)
            .map_err(|e| self.run_error(at, e))?;
        kiln_sdk::info!(
            "  ran with {} isolation: {} added, {} changed, {} removed",
            isolation_name(outcome.isolation),
            outcome.added,
            outcome.modified,
            outcome.deleted
        );
        if outcome.exit_code != 0 {
            let _ = std::fs::remove_file(&diff);
            return Err(Error::failed(format!(
                "{}:{}: {history}: the command did not complete successfully: exit code {}",
                self.build.dockerfile_name, at.start_line, outcome.exit_code
            )));
        }
        let tar = std::fs::File::open(&diff).map_err(|e| Error::io(&diff, e))?;
        let written = layer::write_tar(
            tar,
            outcome.diff_size,
            self.build.layout,
            self.build.compression,
        );
        let _ = std::fs::remove_file(&diff);
        let layer = written?;
        self.wrote_layer(key, &layer);
        stage.image.layers.push(layer);
        stage.image.history(&self.created, history, false);
        stage.forget_files();
        // The host's root already holds what this layer holds.
        stage.root.applied = stage.image.layers.len();
        Ok(())
    }

    /// A RUN's `#!` here-document written to the build's scratch
    /// directory and mounted read-only as `name` in [`SCRIPT_DIR`]: the
    /// mount and the script's path.
    fn script<T>(&self, at: &Located<T>, name: &str, body: &str) -> Result<(Mount, String), Error> {
        let name = heredoc::file_name(name).map_err(|e| self.error(at, e))?;
        let digest = kiln_sdk::digest::sha256_oci(body.as_bytes());
        let file = self.build.scratch.dir().join(format!(
            "heredoc-run-{}",
            digest.trim_start_matches("sha256:")
        ));
        std::fs::write(&file, body).map_err(|e| Error::io(&file, e))?;
        let path = format!("{SCRIPT_DIR}/{name}");
        let mount = Mount {
            target: path.clone(),
            source: MountSource::Bind(file.to_string_lossy().into_owned()),
            writable: false,
            mode: None,
            uid: None,
            gid: None,
            required: true,
        };
        Ok((mount, path))
    }

    /// `--mount=type=bind,from=NAME`: the files of the stage or image
    /// `NAME`, built by the host from its layer blobs; `source` holds the
    /// path inside them.
    fn layered_source<T>(
        &mut self,
        at: &Located<T>,
        from: &str,
        source: MountSource,
    ) -> Result<MountSource, Error> {
        let MountSource::Bind(path) = source else {
            return Ok(source);
        };
        let other = self.source_stage(at, from)?;
        kiln_oci::registry::fetch_layers(
            &other.image.layers,
            self.build.layout,
            self.build.insecure,
        )?;
        let mut layers = Vec::new();
        for layer in &other.image.layers {
            let blob = self
                .build
                .layout
                .blob_path(layer.descriptor.digest().as_ref())?;
            layers.push(blob.to_string_lossy().into_owned());
        }
        Ok(MountSource::Layered(exec::LayeredSource { layers, path }))
    }

    /// The layer cache key of `command` on `stage`'s layers. A bind
    /// mount counts by content: the context files' identities, or a
    /// here-document script's name (its digest; the scratch directory
    /// holding it is new for every build).
    fn run_key(&self, stage: &Stage, command: &exec::Command) -> Result<String, Error> {
        let mut text = format!("kiln-run-v2 {:?}\n", self.build.compression);
        for layer in &stage.image.layers {
            text.push_str(&layer.diff_id);
            text.push('\n');
        }
        let mut command = command.clone();
        for mount in &mut command.mounts {
            let MountSource::Bind(path) = &mount.source else {
                continue;
            };
            let path = std::path::Path::new(path);
            let identity = if let Ok(script) = path.strip_prefix(self.build.scratch.dir()) {
                format!("script {}", script.display())
            } else if let Ok(relative) = path.strip_prefix(self.build.context.root()) {
                self.build.context.identity(&relative.to_string_lossy())?
            } else {
                path.display().to_string()
            };
            mount.source = MountSource::Bind(identity);
        }
        text.push_str(&format!("{command:?}"));
        Ok(kiln_sdk::digest::sha256_oci(text.as_bytes()))
    }

    /// Make the stage's root file system hold all its layers.
    fn prepare_root(&mut self, stage: &mut Stage) -> Result<(), Error> {
        if stage.root.rootfs.is_none() {
            let rootfs = Rootfs::create().map_err(host_error)?;
            stage.root = HostRoot {
                rootfs: Some(rootfs),
                applied: 0,
            };
        }
        let pending = &stage.image.layers[stage.root.applied..];
        kiln_oci::registry::fetch_layers(pending, self.build.layout, self.build.insecure)?;
        for layer in pending {
            let path = self
                .build
                .layout
                .blob_path(layer.descriptor.digest().as_ref())?;
            kiln_sdk::info!("  applying layer {}", layer.descriptor.digest());
            stage
                .root
                .rootfs
                .as_ref()
                .expect("created above")
                .apply(&path.to_string_lossy())
                .map_err(Error::failed)?;
        }
        stage.root.applied = stage.image.layers.len();
        Ok(())
    }

    fn run_error<T>(&self, at: &Located<T>, message: String) -> Error {
        if message.starts_with("denied") {
            Error::denied(message)
        } else {
            self.error(at, message)
        }
    }
}

/// The host's refusal as a denial (what to grant), anything else as a
/// failure.
fn host_error(message: String) -> Error {
    if message.starts_with("denied") {
        Error::denied(message)
    } else {
        Error::failed(message)
    }
}

/// One `--mount=...`: the mount, for a secret the variable it also (or
/// only) goes to, and the stage or image `from=` names.
#[allow(clippy::type_complexity)]
fn parse_mount(
    spec: &str,
    build: &Build<'_>,
) -> Result<(Mount, Option<String>, Option<String>), String> {
    let mut kind = "bind".to_owned();
    let mut fields = Vec::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_owned())),
            None => (part.trim().to_ascii_lowercase(), None),
        };
        if key == "type" {
            kind = value.unwrap_or_default();
        } else {
            fields.push((key, value));
        }
    }
    let mut target = String::new();
    let mut source = None;
    let mut id = None;
    let mut writable = None;
    let (mut mode, mut uid, mut gid) = (None, None, None);
    let mut required = false;
    let mut sharing = Sharing::Shared;
    let mut env = None;
    let mut from = None;
    let flag = |value: &Option<String>| value.as_deref().is_none_or(|v| v == "true" || v == "1");
    for (key, value) in &fields {
        let text = || value.clone().unwrap_or_default();
        match key.as_str() {
            "target" | "dst" | "destination" => target = text(),
            "source" | "src" => source = Some(text()),
            "id" => id = Some(text()),
            "ro" | "readonly" => writable = Some(!flag(value)),
            "rw" | "readwrite" => writable = Some(flag(value)),
            "required" => required = flag(value),
            "env" => env = Some(text()),
            "mode" => {
                mode = Some(u32::from_str_radix(&text(), 8).map_err(|_| {
                    format!("RUN --mount mode={}: use octal permission bits", text())
                })?)
            }
            "uid" => {
                uid = Some(
                    text()
                        .parse()
                        .map_err(|_| format!("RUN --mount uid={}", text()))?,
                )
            }
            "gid" => {
                gid = Some(
                    text()
                        .parse()
                        .map_err(|_| format!("RUN --mount gid={}", text()))?,
                )
            }
            "sharing" => {
                sharing = match text().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    other => {
                        return Err(format!(
                            "RUN --mount sharing={other}: use shared, private or locked"
                        ));
                    }
                }
            }
            "from" => from = Some(text()),
            "size" | "relabel" => {}
            other => return Err(format!("RUN --mount={spec}: unknown option `{other}`")),
        }
    }
    let absolute = |target: &str| {
        if target.starts_with('/') {
            target.to_owned()
        } else {
            format!("/{target}")
        }
    };
    if from.is_some() && kind != "bind" {
        return Err(format!(
            "RUN --mount={spec}: `from=` is supported on bind mounts; copy the files into the cache in a RUN instead"
        ));
    }
    let (source, writable) = match kind.as_str() {
        "cache" => {
            if target.is_empty() {
                return Err(format!("RUN --mount={spec}: a cache mount needs target="));
            }
            (
                MountSource::Cache((id.unwrap_or_else(|| absolute(&target)), sharing)),
                writable.unwrap_or(true),
            )
        }
        "tmpfs" => {
            if target.is_empty() {
                return Err(format!("RUN --mount={spec}: a tmpfs mount needs target="));
            }
            (MountSource::Tmpfs, true)
        }
        "secret" => {
            let name = id
                .or_else(|| {
                    target
                        .rsplit('/')
                        .next()
                        .map(str::to_owned)
                        .filter(|n| !n.is_empty())
                })
                .or_else(|| env.clone())
                .ok_or_else(|| format!("RUN --mount={spec}: a secret needs id= or target="))?;
            if target.is_empty() && env.is_none() {
                target = format!("/run/secrets/{name}");
            }
            (MountSource::Secret(name), false)
        }
        "bind" => {
            if target.is_empty() {
                return Err(format!("RUN --mount={spec}: a bind mount needs target="));
            }
            let inside = kiln_oci::path::clean_inside_root(source.as_deref().unwrap_or("."));
            // With `from=` the path is inside that stage, resolved later.
            let path = if from.is_some() {
                format!("/{inside}")
            } else {
                build
                    .context
                    .root()
                    .join(inside)
                    .to_string_lossy()
                    .into_owned()
            };
            (MountSource::Bind(path), writable.unwrap_or(false))
        }
        other => {
            return Err(format!(
                "RUN --mount type={other}: use bind, cache, tmpfs or secret"
            ));
        }
    };
    let target = if target.is_empty() {
        target
    } else {
        absolute(&target)
    };
    Ok((
        Mount {
            target,
            source,
            writable,
            mode,
            uid,
            gid,
            required,
        },
        env,
        from.filter(|_| kind == "bind"),
    ))
}

fn isolation_name(isolation: exec::Isolation) -> &'static str {
    match isolation {
        exec::Isolation::Namespaces => "namespaces",
        exec::Isolation::ChrootLandlock => "chroot-landlock",
        exec::Isolation::Ptrace => "ptrace",
    }
}
