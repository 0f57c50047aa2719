//! Evaluating a Dockerfile: stages, variables, and one function per
//! instruction. Metadata instructions change the image config; COPY, ADD
//! and WORKDIR build a tree that becomes one layer.

use std::collections::HashMap;

use kiln_dockerfile::heredoc::Heredoc;
use kiln_dockerfile::instructions::{
    Command, Healthcheck, Instruction, InstructionError, Kind, Located, expose_ports,
};
use kiln_dockerfile::stages::{Base, Plan};
use kiln_dockerfile::{parser, shell};
use kiln_oci::archive::Scratch;
use kiln_oci::image::{self, Image, rfc3339};
use kiln_oci::layer::{self, Compression, Layer};
use kiln_oci::tree::{Tree, join};
use kiln_oci::{ImageLayout, Platform, Reference, registry};
use serde_json::{Value, json};

use crate::cache::LayerCache;
use crate::context::Context;
use kiln_sdk::Error;

mod copy;
mod run;
mod stage;

use stage::Stage;

/// Everything a build needs besides the Dockerfile.
pub struct Build<'a> {
    /// Where the Dockerfile was read from, for messages.
    pub dockerfile_name: &'a str,
    /// The Dockerfile's text.
    pub source: &'a str,
    /// The build context.
    pub context: &'a Context,
    /// `--build-arg` values.
    pub build_args: &'a [(String, String)],
    /// `--target`.
    pub target: Option<&'a str>,
    /// The platform to build for.
    pub platform: Platform,
    /// Layer compression.
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`: file times are clamped to it, `created` is it.
    pub epoch: u64,
    /// Where blobs go.
    pub layout: &'a ImageLayout,
    /// Extracted archive and base-layer files.
    pub scratch: &'a Scratch,
    /// Plain HTTP to base images' registries.
    pub insecure: bool,
    /// Write every layer anew (`--no-cache`), ignoring the layer cache.
    pub no_cache: bool,
    /// Labels set on the final image, after the Dockerfile's (`--label`).
    pub labels: &'a [(String, String)],
    /// Whether to warn about the Dockerfile itself (unused build
    /// arguments): once per build, not once per platform.
    pub warn: bool,
}

/// The result: the final stage's image.
pub struct Built {
    /// The image.
    pub image: Image,
    /// Layers written (not reused from the cache).
    pub written: usize,
    /// Layers reused.
    pub reused: usize,
}

/// Build the target stage of the Dockerfile.
pub fn run(build: &Build<'_>) -> Result<Built, Error> {
    let in_file =
        |e: kiln_dockerfile::Error| Error::invalid_input(e.in_file(build.dockerfile_name));
    let dockerfile = parser::parse(build.source).map_err(|e| in_file(e.into()))?;
    let plan = Plan::new(&dockerfile, build.build_args, &build.platform).map_err(in_file)?;
    let target = plan.target(build.target).map_err(in_file)?;
    for name in plan.unused_build_args().into_iter().filter(|_| build.warn) {
        kiln_sdk::warn!(
            "build argument {name} is not declared by any ARG in {}: it has no effect",
            build.dockerfile_name
        );
    }
    let mut runner = Runner {
        build,
        plan: &plan,
        lines: build.source.lines().map(str::to_owned).collect(),
        stages: Vec::new(),
        images: HashMap::new(),
        cache: LayerCache::load(build.layout),
        written: 0,
        reused: 0,
        created: rfc3339(build.epoch),
    };
    let mut image = runner.run(target)?;
    for (name, value) in build.labels {
        image
            .config_object("Labels")
            .insert(name.clone(), value.clone().into());
    }
    let (written, reused) = (runner.written, runner.reused);
    runner.cache.save()?;
    Ok(Built {
        image,
        written,
        reused,
    })
}

struct Runner<'a> {
    build: &'a Build<'a>,
    /// The stages and what they build on, as the host saw them too.
    plan: &'a Plan,
    /// The source lines instructions are quoted from (a trigger's text
    /// while ONBUILD triggers run).
    lines: Vec<String>,
    stages: Vec<Stage>,
    /// Images named by `COPY --from=IMAGE`, pulled once.
    images: HashMap<String, Stage>,
    cache: LayerCache,
    written: usize,
    reused: usize,
    created: String,
}

impl<'a> Runner<'a> {
    /// Build the stages `target` needs, up to `target`.
    fn run(&mut self, target: usize) -> Result<Image, Error> {
        let needed = self.plan.needed(target);
        for (index, text) in self.plan.stages.iter().enumerate().take(target + 1) {
            if !needed[index] {
                self.stages.push(Stage::placeholder());
                continue;
            }
            let mut stage = self.from(index)?;
            self.run_triggers(&mut stage)?;
            for instruction in &text.instructions {
                self.instruction(&mut stage, instruction, &self.plan.global)?;
            }
            self.stages.push(stage);
        }
        Ok(self.stages.swap_remove(target).image)
    }

    /// An instruction's error, naming the Dockerfile.
    fn located(&self, error: InstructionError) -> Error {
        Error::invalid_input(format!("{}:{error}", self.build.dockerfile_name))
    }

    fn error<T>(&self, at: &Located<T>, message: impl std::fmt::Display) -> Error {
        self.located(at.error(message))
    }

    /// The instruction as written, on one line (for history and ONBUILD).
    fn text_of<T>(&self, at: &Located<T>) -> String {
        let end = at.end_line.min(self.lines.len());
        let start = at.start_line.saturating_sub(1).min(end);
        let lines = &self.lines[start..end];
        let mut text = String::new();
        for line in lines {
            let trimmed = line.trim();
            if trimmed.starts_with('#') {
                continue;
            }
            let piece = trimmed
                .strip_suffix(self.plan.escape)
                .unwrap_or(trimmed)
                .trim_end();
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(piece);
        }
        let keyword_end = text.find(char::is_whitespace).unwrap_or(text.len());
        format!(
            "{}{}",
            text[..keyword_end].to_uppercase(),
            &text[keyword_end..]
        )
    }

    /// The instruction as BuildKit records it when it has here-documents:
    /// its own line(s) joined, then each document's body and delimiter on
    /// lines of their own, so that an ONBUILD trigger parses again.
    fn text_with_heredocs<T>(&self, at: &Located<T>, heredocs: &[Heredoc]) -> String {
        if heredocs.is_empty() {
            return self.text_of(at);
        }
        let body_lines: usize = heredocs.iter().map(|h| h.content.lines().count() + 1).sum();
        let head = Located {
            keyword: at.keyword.clone(),
            value: (),
            start_line: at.start_line,
            end_line: at.end_line.saturating_sub(body_lines).max(at.start_line),
        };
        let mut text = self.text_of(&head);
        for heredoc in heredocs {
            text.push('\n');
            text.push_str(&heredoc.content);
            text.push_str(&heredoc.name);
        }
        text
    }

    fn expand<T>(
        &self,
        at: &Located<T>,
        word: &str,
        scope: &[(String, String)],
    ) -> Result<String, Error> {
        self.plan.expand(word, scope).map_err(|e| self.error(at, e))
    }

    fn expand_words<T>(
        &self,
        at: &Located<T>,
        word: &str,
        vars: &[(String, String)],
    ) -> Result<Vec<String>, Error> {
        shell::process_words(word, &vars, self.plan.escape).map_err(|e| self.error(at, e))
    }

    /// Stage `index`'s starting point: an earlier stage, the empty image
    /// or a pulled one, as the plan says.
    fn from(&mut self, index: usize) -> Result<Stage, Error> {
        let from = &self.plan.stages[index].from;
        let base = self.plan.base(index).map_err(|e| self.located(e))?;
        let platform = self
            .plan
            .platform(index, &self.build.platform)
            .map_err(|e| Error::invalid_input(e.in_file(self.build.dockerfile_name)))?;
        let mut stage = match base {
            Base::Stage(earlier) => self.stages[earlier].clone(),
            Base::Scratch => Stage::new(image::empty(&platform)),
            Base::Image(name) => self.pull(from, &name, &platform)?,
        };
        stage.args.clear();
        stage.cmd_set = false;
        Ok(stage)
    }

    fn pull<T>(&self, at: &Located<T>, image: &str, platform: &Platform) -> Result<Stage, Error> {
        let reference = Reference::parse(image).map_err(|e| self.error(at, e))?;
        kiln_sdk::info!("resolving {reference} for {platform}");
        let image =
            registry::pull_image(&reference, platform, self.build.layout, self.build.insecure)
                .map_err(|e| match self.plan.stage_hint(image) {
                    Some(hint) => self.error(at, format!("{e} ({hint})")),
                    None => self.error(at, e),
                })?;
        let mut stage = Stage::new(image);
        stage.base_layers = stage.image.layers.len();
        if let Some(shell) = stage.image.strings("Shell") {
            stage.shell = shell;
        }
        Ok(stage)
    }

    /// Run the base image's ONBUILD triggers, then clear them.
    fn run_triggers(&mut self, stage: &mut Stage) -> Result<(), Error> {
        let Some(triggers) = stage.image.strings("OnBuild") else {
            return Ok(());
        };
        stage.image.config().remove("OnBuild");
        for trigger in triggers {
            let parsed =
                kiln_dockerfile::stages::parse_instructions(&trigger).map_err(|e| match e {
                    kiln_dockerfile::Error::Instruction(e) => self.located(e),
                    other => Error::invalid_input(format!(
                        "ONBUILD trigger `{trigger}` of the base image: {other}"
                    )),
                })?;
            let file = std::mem::replace(
                &mut self.lines,
                trigger.lines().map(str::to_owned).collect(),
            );
            kiln_sdk::info!("running the base image's trigger ONBUILD {trigger}");
            let result = parsed
                .iter()
                .try_for_each(|instruction| self.instruction(stage, instruction, &[]));
            self.lines = file;
            result?;
        }
        Ok(())
    }

    fn instruction(
        &mut self,
        stage: &mut Stage,
        instruction: &Instruction,
        global: &[(String, String)],
    ) -> Result<(), Error> {
        let heredocs = |kind: &Kind| match kind {
            Kind::Run(run) => run.heredocs.clone(),
            Kind::Copy(copy) | Kind::Add(copy) => copy.documents.clone(),
            _ => Vec::new(),
        };
        let documents = match &instruction.value {
            Kind::Onbuild(Some(trigger)) => heredocs(&trigger.value),
            other => heredocs(other),
        };
        let history = self.text_with_heredocs(instruction, &documents);
        kiln_sdk::info!(
            "{}:{}: {history}",
            self.build.dockerfile_name,
            instruction.start_line,
        );
        let vars = stage.vars();
        match &instruction.value {
            Kind::Arg(decls) => {
                // Defaults may use earlier ARGs and ENVs of the stage.
                let mut scope = global.to_vec();
                scope.extend(stage.vars());
                let values = self
                    .plan
                    .arg_values(decls, &scope)
                    .map_err(|e| self.error(instruction, e))?;
                for (name, value) in values {
                    if let Some(value) = value {
                        stage.args.retain(|(k, _)| *k != name);
                        stage.args.push((name, value));
                    }
                }
            }
            Kind::Env(pairs) => {
                for (key, value) in pairs {
                    let value = self.expand(instruction, value, &vars)?;
                    stage.image.set_env(key, &value);
                }
            }
            Kind::Label(pairs) => {
                let mut labels = Vec::new();
                for (key, value) in pairs {
                    labels.push((
                        self.expand(instruction, key, &vars)?,
                        self.expand(instruction, value, &vars)?,
                    ));
                }
                let map = stage.image.config_object("Labels");
                for (key, value) in labels {
                    map.insert(key, json!(value));
                }
            }
            Kind::Maintainer(who) => {
                stage.image.document.insert("author".into(), json!(who));
            }
            Kind::Expose(words) => {
                let mut ports = Vec::new();
                for word in words {
                    for port in self.expand_words(instruction, word, &vars)? {
                        ports.extend(expose_ports(&port).map_err(|e| self.error(instruction, e))?);
                    }
                }
                let map = stage.image.config_object("ExposedPorts");
                for port in ports {
                    map.insert(port, json!({}));
                }
            }
            Kind::Volume(words) => {
                let mut volumes = Vec::new();
                for word in words {
                    volumes.extend(self.expand_words(instruction, word, &vars)?);
                }
                if volumes.iter().any(String::is_empty) {
                    return Err(self.error(instruction, "a volume may not be empty"));
                }
                let map = stage.image.config_object("Volumes");
                for volume in volumes {
                    map.insert(volume, json!({}));
                }
            }
            Kind::User(user) => {
                let user = self.expand(instruction, user, &vars)?;
                stage.image.config().insert("User".into(), json!(user));
            }
            Kind::StopSignal(signal) => {
                let signal = self.expand(instruction, signal, &vars)?;
                stage
                    .image
                    .config()
                    .insert("StopSignal".into(), json!(signal));
            }
            Kind::Workdir(dir) => {
                let dir = self.expand(instruction, dir, &vars)?;
                let path = within(&stage.workdir(), &dir);
                stage
                    .image
                    .config()
                    .insert("WorkingDir".into(), json!(format!("/{path}")));
                let (real, existing) = stage.resolve(&path, self.build)?;
                if !real.is_empty() && existing.is_none() {
                    // BuildKit creates the directory as the current USER.
                    let user = stage.user();
                    let owner = if user.is_empty() {
                        None
                    } else {
                        Some(
                            stage
                                .owner(&user, self.build)
                                .map_err(|e| self.error(instruction, e))?,
                        )
                    };
                    let mut tree = Tree::default();
                    stage.add_parents(&mut tree, &format!("{real}/x"), self.build, owner)?;
                    return self.commit_layer(stage, tree, &history);
                }
            }
            Kind::Cmd(command) => {
                let command = stage.command(command);
                stage.cmd_set = true;
                stage.image.config().insert("Cmd".into(), json!(command));
            }
            Kind::Entrypoint(command) => {
                let command = stage.command(command);
                if !stage.cmd_set {
                    stage.image.config().remove("Cmd");
                }
                stage
                    .image
                    .config()
                    .insert("Entrypoint".into(), json!(command));
            }
            Kind::Shell(shell) => {
                stage.shell = shell.clone();
                stage
                    .image
                    .config()
                    .insert("Shell".into(), json!(stage.shell));
            }
            Kind::Healthcheck(check) => {
                let check = healthcheck(check);
                stage.image.config().insert("Healthcheck".into(), check);
            }
            Kind::Onbuild(_) => {
                let trigger = history
                    .split_once(char::is_whitespace)
                    .map(|(_, rest)| rest.trim().to_owned())
                    .unwrap_or_default();
                let list = stage
                    .image
                    .config()
                    .entry("OnBuild")
                    .or_insert_with(|| json!([]));
                if let Some(list) = list.as_array_mut() {
                    list.push(json!(trigger));
                }
            }
            Kind::Copy(copy) | Kind::Add(copy) => {
                let is_add = matches!(instruction.value, Kind::Add(_));
                let tree = self.copy(stage, instruction, copy, is_add, &vars)?;
                return self.commit_layer(stage, tree, &format!("{history} # buildkit"));
            }
            Kind::Run(run) => {
                return self.run_command(stage, instruction, run, &history);
            }
            Kind::From(_) => {
                return Err(self.error(instruction, "FROM cannot be an ONBUILD trigger"));
            }
        }
        stage.image.history(&self.created, &history, true);
        Ok(())
    }

    /// The stage or image `COPY --from=NAME` reads from.
    fn source_stage<T>(&mut self, at: &Located<T>, name: &str) -> Result<Stage, Error> {
        let current = self.stages.len();
        match self
            .plan
            .copy_source(current, name, at)
            .map_err(|e| self.located(e))?
        {
            Base::Stage(index) => Ok(self.stages[index].clone()),
            _ => {
                if let Some(stage) = self.images.get(name) {
                    return Ok(stage.clone());
                }
                let stage = self.pull(at, name, &self.build.platform.clone())?;
                self.images.insert(name.to_owned(), stage.clone());
                Ok(stage)
            }
        }
    }

    /// The cached layer for `key` (unless `--no-cache`), counted and said.
    fn cached_layer(&mut self, key: &str) -> Option<Layer> {
        if self.build.no_cache {
            return None;
        }
        let layer = self.cache.get(key, self.build.layout)?;
        self.reused += 1;
        kiln_sdk::info!("  reused layer {}", layer.descriptor.digest());
        Some(layer)
    }

    /// A layer just written: counted, said, and cached under `key`.
    fn wrote_layer(&mut self, key: String, layer: &Layer) {
        self.written += 1;
        kiln_sdk::info!(
            "  wrote layer {} ({} bytes)",
            layer.descriptor.digest(),
            layer.descriptor.size()
        );
        self.cache.put(key, layer.clone());
    }

    /// Turn `tree` into a layer (or reuse the cached one) and add it.
    fn commit_layer(&mut self, stage: &mut Stage, tree: Tree, history: &str) -> Result<(), Error> {
        let key = LayerCache::key(&tree, self.build.compression);
        let layer = match self.cached_layer(&key) {
            Some(layer) => layer,
            None => {
                let layer = layer::write(&tree, self.build.layout, self.build.compression)?;
                self.wrote_layer(key, &layer);
                layer
            }
        };
        stage.image.layers.push(layer);
        stage.image.history(&self.created, history, false);
        if let Some(view) = stage.view.as_mut() {
            view.overlay(&tree);
        }
        stage.own.overlay(&tree);
        Ok(())
    }
}

/// An image path relative to the working directory `workdir` unless
/// absolute, cleaned.
fn within(workdir: &str, path: &str) -> String {
    if path.starts_with('/') {
        kiln_oci::path::clean_inside_root(path)
    } else {
        kiln_oci::path::clean_inside_root(&join(workdir, path))
    }
}

/// The config's `Healthcheck` for `check`: durations in nanoseconds, the
/// shell form run by `CMD-SHELL`.
fn healthcheck(check: &Healthcheck) -> Value {
    match check {
        Healthcheck::None => json!({"Test": ["NONE"]}),
        Healthcheck::Check {
            command,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test: Vec<String> = match command {
                Command::Exec(args) => std::iter::once("CMD".to_owned())
                    .chain(args.iter().cloned())
                    .collect(),
                Command::Shell(line) => vec!["CMD-SHELL".to_owned(), line.clone()],
            };
            let mut value = json!({"Test": test});
            for (field, setting) in [
                ("Interval", interval),
                ("Timeout", timeout),
                ("StartPeriod", start_period),
                ("StartInterval", start_interval),
                ("Retries", retries),
            ] {
                if let Some(setting) = setting {
                    value[field] = json!(setting);
                }
            }
            value
        }
    }
}
