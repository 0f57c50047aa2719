//! Evaluating a Dockerfile: stages, variables, and one function per
//! instruction. Metadata instructions change the image config; COPY, ADD
//! and WORKDIR build a tree that becomes one layer.

use std::collections::HashMap;

use kiln_dockerfile::parser::{self, Arg, Dockerfile, Node};
use kiln_dockerfile::shell;
use kiln_oci::archive::Scratch;
use kiln_oci::image::{self, Image, rfc3339};
use kiln_oci::layer::{self, Compression};
use kiln_oci::tree::{self, Tree, join};
use kiln_oci::{ImageLayout, Platform, Reference, registry};
use serde_json::{Value, json};

use crate::BuildError;
use crate::cache::LayerCache;
use crate::context::Context;

mod copy;
mod grammar;
mod stage;

use grammar::{expose, parse_duration};
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
pub fn run(build: &Build<'_>) -> Result<Built, BuildError> {
    let dockerfile = parser::parse(build.source)
        .map_err(|e| BuildError::input(format!("{}:{e}", build.dockerfile_name)))?;
    let mut runner = Runner {
        build,
        escape: dockerfile.escape,
        lines: build.source.lines().map(str::to_owned).collect(),
        stages: Vec::new(),
        images: HashMap::new(),
        cache: LayerCache::load(build.layout),
        written: 0,
        reused: 0,
        created: rfc3339(build.epoch),
    };
    let image = runner.run(&dockerfile)?;
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
    escape: char,
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

/// The instructions of one stage, with its FROM.
struct StageText<'n> {
    from: &'n Node,
    body: Vec<&'n Node>,
    name: Option<String>,
}

impl<'a> Runner<'a> {
    fn run(&mut self, dockerfile: &Dockerfile) -> Result<Image, BuildError> {
        let mut global: Vec<(String, String)> = self.platform_args();
        let mut texts: Vec<StageText<'_>> = Vec::new();
        for node in &dockerfile.instructions {
            match (node.instruction.as_str(), texts.last_mut()) {
                ("from", _) => texts.push(StageText {
                    from: node,
                    body: Vec::new(),
                    name: stage_name(node),
                }),
                ("arg", None) => {
                    for (name, value) in self.arg_values(node, &global)? {
                        if let Some(value) = value {
                            global.push((name, value));
                        }
                    }
                }
                (_, None) => {
                    return Err(self.error(
                        node,
                        "the first instruction must be FROM (or ARG before it)",
                    ));
                }
                (_, Some(stage)) => stage.body.push(node),
            }
        }
        let target = match self.build.target {
            Some(target) => texts
                .iter()
                .position(|s| {
                    s.name
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(target))
                })
                .ok_or_else(|| {
                    BuildError::input(format!(
                        "{}: there is no stage named `{target}` (stages: {})",
                        self.build.dockerfile_name,
                        texts
                            .iter()
                            .filter_map(|s| s.name.clone())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?,
            None => texts.len().checked_sub(1).ok_or_else(|| {
                BuildError::input(format!(
                    "{}: no FROM instruction",
                    self.build.dockerfile_name
                ))
            })?,
        };
        let needed = needed_stages(&texts, target, &global, self.escape);
        for (index, text) in texts.iter().enumerate().take(target + 1) {
            if !needed[index] {
                self.stages.push(Stage::placeholder());
                continue;
            }
            let mut stage = self.from(text.from, text.name.clone(), &global)?;
            self.run_triggers(&mut stage)?;
            for node in &text.body {
                self.instruction(&mut stage, node, &global)?;
            }
            self.stages.push(stage);
        }
        Ok(self.stages.swap_remove(target).image)
    }

    /// TARGETPLATFORM and friends, as BuildKit predefines them.
    fn platform_args(&self) -> Vec<(String, String)> {
        let p = &self.build.platform;
        let variant = p.variant.clone().unwrap_or_default();
        let mut args = Vec::new();
        for prefix in ["TARGET", "BUILD"] {
            args.push((format!("{prefix}PLATFORM"), p.to_string()));
            args.push((format!("{prefix}OS"), p.os.clone()));
            args.push((format!("{prefix}ARCH"), p.architecture.clone()));
            args.push((format!("{prefix}VARIANT"), variant.clone()));
        }
        args
    }

    fn error(&self, node: &Node, message: impl std::fmt::Display) -> BuildError {
        BuildError::input(format!(
            "{}:{}: {}: {message}",
            self.build.dockerfile_name,
            node.start_line,
            node.original.to_uppercase()
        ))
    }

    /// The instruction as written, on one line (for history and ONBUILD).
    fn text_of(&self, node: &Node) -> String {
        let end = node.end_line.min(self.lines.len());
        let start = node.start_line.saturating_sub(1).min(end);
        let lines = &self.lines[start..end];
        let mut text = String::new();
        for line in lines {
            let trimmed = line.trim();
            if trimmed.starts_with('#') {
                continue;
            }
            let piece = trimmed
                .strip_suffix(self.escape)
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

    /// Values of an ARG instruction's declarations, defaults expanded.
    fn arg_values(
        &self,
        node: &Node,
        scope: &[(String, String)],
    ) -> Result<Vec<(String, Option<String>)>, BuildError> {
        let mut out = Vec::new();
        for word in texts(node) {
            let (name, default) = match word.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(self.expand(node, value, scope)?)),
                None => (word.clone(), None),
            };
            let given = self
                .build
                .build_args
                .iter()
                .rev()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone());
            let inherited = scope
                .iter()
                .rev()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone());
            out.push((name, given.or(default).or(inherited)));
        }
        Ok(out)
    }

    fn expand(
        &self,
        node: &Node,
        word: &str,
        scope: &[(String, String)],
    ) -> Result<String, BuildError> {
        shell::process_word(word, &scope.to_vec(), self.escape).map_err(|e| self.error(node, e))
    }

    fn from(
        &mut self,
        node: &Node,
        name: Option<String>,
        global: &[(String, String)],
    ) -> Result<Stage, BuildError> {
        let words = texts(node);
        let image = words
            .first()
            .ok_or_else(|| self.error(node, "names no image"))?;
        let image = self.expand(node, image, global)?;
        let mut platform = self.build.platform.clone();
        for flag in &node.flags {
            match flag_value(flag) {
                ("platform", Some(value)) => {
                    platform = Platform::parse(&self.expand(node, value, global)?)
                        .map_err(|e| BuildError::input(e.to_string()))?;
                }
                _ => return Err(self.error(node, format!("unknown flag `{flag}`"))),
            }
        }
        let mut stage = if let Some(earlier) = self.stage_by_name(&image) {
            earlier.clone()
        } else if image.eq_ignore_ascii_case("scratch") {
            Stage::new(image::empty(&platform))
        } else {
            self.pull(node, &image, &platform)?
        };
        stage.name = name;
        stage.args.clear();
        stage.cmd_set = false;
        Ok(stage)
    }

    fn stage_by_name(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().rev().find(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }

    fn pull(&self, node: &Node, image: &str, platform: &Platform) -> Result<Stage, BuildError> {
        let reference = Reference::parse(image).map_err(|e| self.error(node, e))?;
        kiln_sdk::info!("resolving {reference} for {platform}");
        let image =
            registry::pull_image(&reference, platform, self.build.layout, self.build.insecure)
                .map_err(|e| self.error(node, e))?;
        let mut stage = Stage::new(image);
        stage.base_layers = stage.image.layers.len();
        if let Some(shell) = stage.image.strings("Shell") {
            stage.shell = shell;
        }
        Ok(stage)
    }

    /// Run the base image's ONBUILD triggers, then clear them.
    fn run_triggers(&mut self, stage: &mut Stage) -> Result<(), BuildError> {
        let Some(triggers) = stage.image.config().remove("OnBuild") else {
            return Ok(());
        };
        for trigger in triggers
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let parsed = parser::parse(trigger).map_err(|e| {
                BuildError::input(format!(
                    "ONBUILD trigger `{trigger}` of the base image: {e}"
                ))
            })?;
            let file = std::mem::replace(
                &mut self.lines,
                trigger.lines().map(str::to_owned).collect(),
            );
            kiln_sdk::info!("running the base image's trigger ONBUILD {trigger}");
            let result = parsed
                .instructions
                .iter()
                .try_for_each(|node| self.instruction(stage, node, &[]));
            self.lines = file;
            result?;
        }
        Ok(())
    }

    fn instruction(
        &mut self,
        stage: &mut Stage,
        node: &Node,
        global: &[(String, String)],
    ) -> Result<(), BuildError> {
        kiln_sdk::info!(
            "{}:{}: {}",
            self.build.dockerfile_name,
            node.start_line,
            self.text_of(node)
        );
        let vars = stage.vars();
        let history = self.text_of(node);
        let instruction = node.instruction.as_str();
        let flags_allowed: &[&str] = match instruction {
            "copy" => &["from", "chown", "chmod", "link"],
            "add" => &["chown", "chmod", "link", "checksum"],
            "healthcheck" => &[
                "interval",
                "timeout",
                "start-period",
                "start-interval",
                "retries",
            ],
            _ => &[],
        };
        for flag in &node.flags {
            let (name, _) = flag_value(flag);
            if !flags_allowed.contains(&name) {
                return Err(self.error(node, format!("unknown or unsupported flag `{flag}`")));
            }
        }
        match instruction {
            "arg" => {
                // Defaults may use earlier ARGs and ENVs of the stage.
                let mut scope = global.to_vec();
                scope.extend(stage.vars());
                for (name, value) in self.arg_values(node, &scope)? {
                    let value = value.or_else(|| {
                        self.platform_args()
                            .into_iter()
                            .find(|(k, _)| *k == name)
                            .map(|(_, v)| v)
                    });
                    if let Some(value) = value {
                        stage.args.retain(|(k, _)| *k != name);
                        stage.args.push((name, value));
                    }
                }
            }
            "env" => {
                for (key, value) in pairs(node) {
                    let value = self.expand(node, &value, &vars)?;
                    stage.image.set_env(&key, &value);
                }
            }
            "label" => {
                let mut labels = Vec::new();
                for (key, value) in pairs(node) {
                    labels.push((
                        self.expand(node, &key, &vars)?,
                        self.expand(node, &value, &vars)?,
                    ));
                }
                let map = stage.image.config_object("Labels");
                for (key, value) in labels {
                    map.insert(key, json!(value));
                }
            }
            "maintainer" => {
                let who = texts(node).join(" ");
                stage.image.document.insert("author".into(), json!(who));
            }
            "expose" => {
                let mut ports = Vec::new();
                for word in texts(node) {
                    for port in self.expand_words(node, &word, &vars)? {
                        ports.extend(expose(&port).map_err(|e| self.error(node, e))?);
                    }
                }
                let map = stage.image.config_object("ExposedPorts");
                for port in ports {
                    map.insert(port, json!({}));
                }
            }
            "volume" => {
                let mut volumes = Vec::new();
                for word in texts(node) {
                    volumes.extend(self.expand_words(node, &word, &vars)?);
                }
                if volumes.iter().any(String::is_empty) {
                    return Err(self.error(node, "a volume may not be empty"));
                }
                let map = stage.image.config_object("Volumes");
                for volume in volumes {
                    map.insert(volume, json!({}));
                }
            }
            "user" => {
                let user = self.expand(node, &first(node), &vars)?;
                stage.image.config().insert("User".into(), json!(user));
            }
            "stopsignal" => {
                let signal = self.expand(node, &first(node), &vars)?;
                stage
                    .image
                    .config()
                    .insert("StopSignal".into(), json!(signal));
            }
            "workdir" => {
                let dir = self.expand(node, &first(node), &vars)?;
                let path = within(&stage.workdir(), &dir);
                stage
                    .image
                    .config()
                    .insert("WorkingDir".into(), json!(format!("/{path}")));
                let (real, existing) = stage.resolve(&path, self.build)?;
                if !real.is_empty() && existing.is_none() {
                    // BuildKit creates the directory as the current USER.
                    let user = stage
                        .image
                        .field("User")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    let owner = if user.is_empty() {
                        None
                    } else {
                        Some(
                            stage
                                .owner(&user, self.build)
                                .map_err(|e| self.error(node, e))?,
                        )
                    };
                    let mut tree = Tree::default();
                    stage.add_parents(&mut tree, &format!("{real}/x"), self.build, owner)?;
                    return self.commit_layer(stage, tree, &history);
                }
            }
            "entrypoint" | "cmd" => {
                let command = self.command(node, stage);
                let field = if instruction == "cmd" {
                    "Cmd"
                } else {
                    "Entrypoint"
                };
                if instruction == "entrypoint" && !stage.cmd_set {
                    stage.image.config().remove("Cmd");
                }
                stage.cmd_set |= instruction == "cmd";
                stage.image.config().insert(field.into(), json!(command));
            }
            "shell" => {
                if !node.json {
                    return Err(
                        self.error(node, "takes a JSON array, e.g. SHELL [\"/bin/sh\", \"-c\"]")
                    );
                }
                stage.shell = texts(node);
                stage
                    .image
                    .config()
                    .insert("Shell".into(), json!(stage.shell));
            }
            "healthcheck" => {
                let check = self.healthcheck(node)?;
                stage.image.config().insert("Healthcheck".into(), check);
            }
            "onbuild" => {
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
            "copy" | "add" => {
                let tree = self.copy(stage, node, &vars)?;
                return self.commit_layer(stage, tree, &format!("{history} # buildkit"));
            }
            "run" => {
                return Err(self.error(
                    node,
                    "RUN needs an executor to run commands in the image, which kiln does not have yet; \
                     build the files outside (a `run:` step) and COPY them in",
                ));
            }
            other => {
                return Err(self.error(node, format!("`{other}` is not a Dockerfile instruction")));
            }
        }
        stage.image.history(&self.created, &history, true);
        Ok(())
    }

    fn expand_words(
        &self,
        node: &Node,
        word: &str,
        vars: &[(String, String)],
    ) -> Result<Vec<String>, BuildError> {
        shell::process_words(word, &vars.to_vec(), self.escape).map_err(|e| self.error(node, e))
    }

    /// ENTRYPOINT/CMD arguments: the JSON list, or the shell form run by
    /// the stage's SHELL.
    fn command(&self, node: &Node, stage: &Stage) -> Vec<String> {
        if node.json {
            texts(node)
        } else {
            let mut command = stage.shell.clone();
            command.push(texts(node).join(" "));
            command
        }
    }

    fn healthcheck(&self, node: &Node) -> Result<Value, BuildError> {
        let words = texts(node);
        let kind = words.first().map(|w| w.to_uppercase()).unwrap_or_default();
        if kind == "NONE" {
            if words.len() > 1 || !node.flags.is_empty() {
                return Err(self.error(node, "NONE takes no arguments or options"));
            }
            return Ok(json!({"Test": ["NONE"]}));
        }
        if kind != "CMD" {
            return Err(self.error(node, "expects CMD or NONE"));
        }
        let rest: Vec<String> = words[1..].to_vec();
        let test: Vec<String> = if node.json {
            std::iter::once("CMD".to_owned()).chain(rest).collect()
        } else {
            vec!["CMD-SHELL".to_owned(), rest.join(" ")]
        };
        let mut check = json!({"Test": test});
        for flag in &node.flags {
            let (name, value) = flag_value(flag);
            let value = value.unwrap_or_default();
            let field = match name {
                "interval" => "Interval",
                "timeout" => "Timeout",
                "start-period" => "StartPeriod",
                "start-interval" => "StartInterval",
                _ => {
                    let retries: i64 = value.parse().map_err(|_| {
                        self.error(node, format!("--retries `{value}` is not a number"))
                    })?;
                    check["Retries"] = json!(retries);
                    continue;
                }
            };
            let nanos =
                parse_duration(value).map_err(|e| self.error(node, format!("--{name}: {e}")))?;
            if nanos != 0 {
                check[field] = json!(nanos);
            }
        }
        Ok(check)
    }

    /// The stage or image `COPY --from=NAME` reads from.
    fn source_stage(&mut self, node: &Node, name: &str) -> Result<Stage, BuildError> {
        if let Some(stage) = self.stage_by_name(name) {
            return Ok(stage.clone());
        }
        if let Ok(index) = name.parse::<usize>() {
            return self.stages.get(index).cloned().ok_or_else(|| {
                self.error(
                    node,
                    format!("--from={index}: there is no earlier stage {index}"),
                )
            });
        }
        if let Some(stage) = self.images.get(name) {
            return Ok(stage.clone());
        }
        let stage = self.pull(node, name, &self.build.platform.clone())?;
        self.images.insert(name.to_owned(), stage.clone());
        Ok(stage)
    }

    /// Turn `tree` into a layer (or reuse the cached one) and add it.
    fn commit_layer(
        &mut self,
        stage: &mut Stage,
        tree: Tree,
        history: &str,
    ) -> Result<(), BuildError> {
        let key = LayerCache::key(&tree, self.build.compression);
        let layer = match self.cache.get(&key, self.build.layout) {
            Some(layer) => {
                self.reused += 1;
                kiln_sdk::info!("  reused layer {}", layer.descriptor.digest());
                layer
            }
            None => {
                let layer = layer::write(&tree, self.build.layout, self.build.compression)?;
                self.written += 1;
                kiln_sdk::info!(
                    "  wrote layer {} ({} bytes)",
                    layer.descriptor.digest(),
                    layer.descriptor.size()
                );
                self.cache.put(key, layer.clone());
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

/// Which stages the target needs: itself, its FROM chain and `--from`s,
/// names expanded with the global ARGs (`FROM app-${VARIANT}`), as
/// BuildKit does; a stage nothing needs is never built.
fn needed_stages(
    stages: &[StageText<'_>],
    target: usize,
    global: &[(String, String)],
    escape: char,
) -> Vec<bool> {
    let mut needed = vec![false; stages.len()];
    let mut todo = vec![target];
    let find = |name: &str, before: usize| -> Option<usize> {
        if let Ok(i) = name.parse::<usize>() {
            return (i < before).then_some(i);
        }
        stages[..before].iter().rposition(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    };
    while let Some(index) = todo.pop() {
        if needed[index] {
            continue;
        }
        needed[index] = true;
        let text = &stages[index];
        // FROM sees only the global ARGs, so its name is known here.
        if let Some(from) = texts(text.from).first() {
            match shell::process_word(from, &global.to_vec(), escape) {
                Ok(name) => todo.extend(find(&name, index)),
                Err(_) => todo.extend(0..index),
            }
        }
        // `--from` is expanded with the stage's own variables too: a name
        // with a variable could be any earlier stage.
        for node in &text.body {
            for flag in &node.flags {
                match flag_value(flag) {
                    ("from", Some(value)) if value.contains('$') => todo.extend(0..index),
                    ("from", Some(value)) => todo.extend(find(value, index)),
                    _ => {}
                }
            }
        }
    }
    needed
}

/// `FROM image AS name` → `name`.
fn stage_name(node: &Node) -> Option<String> {
    let words = texts(node);
    match words.as_slice() {
        [_, r#as, name] if r#as.eq_ignore_ascii_case("as") => Some(name.clone()),
        _ => None,
    }
}

/// The text arguments of an instruction.
fn texts(node: &Node) -> Vec<String> {
    node.args
        .iter()
        .filter_map(|a| match a {
            Arg::Text(t) => Some(t.clone()),
            Arg::Instruction(_) => None,
        })
        .collect()
}

fn first(node: &Node) -> String {
    texts(node).into_iter().next().unwrap_or_default()
}

/// An image path relative to the working directory `workdir` unless
/// absolute, cleaned.
fn within(workdir: &str, path: &str) -> String {
    if path.starts_with('/') {
        tree::clean(path)
    } else {
        tree::clean(&join(workdir, path))
    }
}

/// ENV and LABEL arguments as key/value pairs (the parser gives triples:
/// key, value, and the separator as written).
fn pairs(node: &Node) -> Vec<(String, String)> {
    texts(node)
        .chunks(3)
        .map(|pair| (pair[0].clone(), pair.get(1).cloned().unwrap_or_default()))
        .collect()
}

/// `--name=value` → (`name`, `value`).
fn flag_value(flag: &str) -> (&str, Option<&str>) {
    let flag = flag.trim_start_matches('-');
    match flag.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (flag, None),
    }
}
