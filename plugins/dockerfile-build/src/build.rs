//! Evaluating a Dockerfile: stages, variables, and one function per
//! instruction. Metadata instructions change the image config; COPY, ADD
//! and WORKDIR build a tree that becomes one layer.

use std::collections::HashMap;
use std::path::Path;

use kiln_dockerfile::parser::{self, Arg, Dockerfile, Node};
use kiln_dockerfile::{pattern, shell};
use kiln_oci::{ImageLayout, Reference};
use serde_json::{Value, json};

use crate::BuildError;
use crate::archive::{self, Landing, Scratch};
use crate::cache::LayerCache;
use crate::context::{Context, join};
use crate::image::{Image, Platform};
use crate::layer::{self, Compression};
use crate::tree::{self, Entry, Kind, Tree};

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
}

/// A stage being built.
#[derive(Clone)]
struct Stage {
    name: Option<String>,
    image: Image,
    /// The files this stage (and stages it derives from) added.
    own: Tree,
    /// Base layers whose content is read only when an instruction needs it.
    base_layers: usize,
    /// The whole file system, once some instruction needed it.
    view: Option<Tree>,
    /// ARG values in scope.
    args: Vec<(String, String)>,
    shell: Vec<String>,
    /// Whether CMD was set in this Dockerfile (ENTRYPOINT resets an
    /// inherited one, as Docker does).
    cmd_set: bool,
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
        lines: build.source.lines().collect(),
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
    lines: Vec<&'a str>,
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
        let lines =
            &self.lines[node.start_line.saturating_sub(1)..node.end_line.min(self.lines.len())];
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
                    platform = Platform::parse(&self.expand(node, value, global)?)?;
                }
                _ => return Err(self.error(node, format!("unknown flag `{flag}`"))),
            }
        }
        let mut stage = if let Some(earlier) = self.stage_by_name(&image) {
            earlier.clone()
        } else if image.eq_ignore_ascii_case("scratch") {
            Stage::new(Image::scratch(&platform))
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
        let image = Image::pull(&reference, platform, self.build.layout)
            .map_err(|e| self.error(node, e))?;
        let mut stage = Stage::new(image);
        stage.base_layers = stage.image.layers.len();
        if let Some(shell) = stage.image.field("Shell").and_then(Value::as_array) {
            stage.shell = shell
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
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
            for node in &parsed.instructions {
                kiln_sdk::info!("ONBUILD {trigger}");
                self.instruction(stage, node, &[])?;
            }
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
                for (name, value) in self.arg_values(node, global)? {
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
                let map = object_field(&mut stage.image, "Labels");
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
                let map = object_field(&mut stage.image, "ExposedPorts");
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
                let map = object_field(&mut stage.image, "Volumes");
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
                if !path.is_empty() && stage.lookup(&path, self.build)?.is_none() {
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
                    stage.add_parents(&mut tree, &format!("{path}/x"), self.build, owner)?;
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

    /// COPY and ADD: the tree of one layer.
    fn copy(
        &mut self,
        stage: &mut Stage,
        node: &Node,
        vars: &[(String, String)],
    ) -> Result<Tree, BuildError> {
        let mut from = None;
        let mut chown = None;
        let mut chmod = None;
        for flag in &node.flags {
            let (name, value) = flag_value(flag);
            let value = value.map(|v| self.expand(node, v, vars)).transpose()?;
            match (name, value) {
                ("from", Some(v)) => from = Some(v),
                ("chown", Some(v)) => chown = Some(v),
                ("chmod", Some(v)) => {
                    chmod = Some(
                        u32::from_str_radix(&v, 8)
                            .ok()
                            .filter(|m| *m <= 0o7777)
                            .ok_or_else(|| {
                                self.error(node, format!("--chmod={v} is not an octal mode"))
                            })?,
                    )
                }
                ("link", _) | ("checksum", _) => {}
                (name, None) => return Err(self.error(node, format!("--{name} needs a value"))),
                _ => {}
            }
        }
        let mut words = Vec::new();
        for word in texts(node) {
            words.push(self.expand(node, &word, vars)?);
        }
        let Some((dest, sources)) = words.split_last() else {
            return Err(self.error(node, "needs at least one source and a destination"));
        };
        if sources.is_empty() {
            return Err(self.error(node, "needs at least one source and a destination"));
        }
        let owner = match &chown {
            Some(spec) => Some(
                stage
                    .owner(spec, self.build)
                    .map_err(|e| self.error(node, e))?,
            ),
            None => None,
        };
        let is_add = node.instruction == "add";
        // The file system `--from` names, read once for all sources.
        let view: Option<Tree> = match &from {
            Some(name) => Some(self.source_stage(node, name)?.view(self.build)?.clone()),
            None => None,
        };
        // Resolve every source (name as written, target once symlinks are
        // followed, entry) before deciding what the destination is.
        let mut found: Vec<(String, String, Entry)> = Vec::new();
        for source in sources {
            if is_add
                && ["http://", "https://", "git@"]
                    .iter()
                    .any(|p| source.starts_with(p))
            {
                return Err(self.error(node, format!(
                    "ADD from a URL ({source}) is not supported; download it in an earlier step and COPY it"
                )));
            }
            match &view {
                Some(view) => {
                    let lookup = |p: &str| -> Result<Option<Entry>, BuildError> {
                        Ok(if p.is_empty() {
                            Some(Entry::dir(0))
                        } else {
                            view.get(p).cloned()
                        })
                    };
                    let wanted = tree::clean(source);
                    let names: Vec<String> = if pattern::has_wildcards(&wanted) {
                        view.iter()
                            .filter(|(p, _)| pattern::matches(&wanted, p).unwrap_or(false))
                            .map(|(p, _)| p.clone())
                            .collect()
                    } else {
                        vec![wanted]
                    };
                    for name in names {
                        if let Some((target, entry)) = tree::resolve(&name, lookup)? {
                            found.push((name, target, entry));
                        }
                    }
                    if found.is_empty() {
                        return Err(self.error(
                            node,
                            format!(
                                "`{source}` does not exist in {}",
                                from.as_deref().unwrap_or_default()
                            ),
                        ));
                    }
                }
                None => {
                    for item in self
                        .build
                        .context
                        .sources(source)
                        .map_err(|e| self.error(node, e))?
                    {
                        found.push((item.path, item.target, item.entry));
                    }
                }
            }
        }
        let dest_is_dir = dest.ends_with('/') || found.len() > 1;
        let dest_path = within(&stage.workdir(), dest);
        let mut layer = Tree::default();
        for (path, source, entry) in found {
            let name = path.rsplit('/').next().unwrap_or_default().to_owned();
            if entry.is_dir() {
                // A directory's contents are copied, not the directory.
                let below: Vec<(String, Entry)> = match &view {
                    Some(view) => view
                        .below(&source)
                        .map(|(p, e)| (p.clone(), e.clone()))
                        .collect(),
                    None => self
                        .build
                        .context
                        .walk(&source)
                        .map_err(|e| self.error(node, e))?
                        .into_iter()
                        .map(|f| (f.path, f.entry))
                        .collect(),
                };
                if !dest_path.is_empty() {
                    stage.add_parents(&mut layer, &format!("{dest_path}/x"), self.build, owner)?;
                }
                let prefix_len = if source.is_empty() {
                    0
                } else {
                    source.len() + 1
                };
                for (inner, entry) in below {
                    let target = join(&dest_path, &inner[prefix_len..]);
                    layer.insert(target, adjust(entry, owner, chmod));
                }
                continue;
            }
            let target = if dest_is_dir
                || dest_path.is_empty()
                || stage
                    .lookup(&dest_path, self.build)?
                    .is_some_and(|e| e.is_dir())
            {
                join(&dest_path, &name)
            } else {
                dest_path.clone()
            };
            if is_add
                && view.is_none()
                && let Kind::File(data) = &entry.kind
                && archive::is_archive(Path::new(&data.source))?
            {
                let file = std::fs::File::open(&data.source)
                    .map_err(|e| BuildError::io(Path::new(&data.source), e))?;
                let dir = if dest_is_dir || dest.ends_with('/') {
                    dest_path.clone()
                } else {
                    target.clone()
                };
                let mut extracted = Tree::default();
                archive::extract(
                    file,
                    &path,
                    &Landing {
                        dest: &dir,
                        whiteouts: false,
                        strict: true,
                        epoch: self.build.epoch,
                        identity: &data.identity,
                    },
                    &mut extracted,
                    self.build.scratch,
                )
                .map_err(|e| self.error(node, e))?;
                stage.add_parents(&mut layer, &format!("{dir}/x"), self.build, owner)?;
                for (p, e) in extracted.iter() {
                    if layer
                        .get(p)
                        .is_none_or(|existing| !existing.is_dir() || !e.is_dir())
                    {
                        layer.insert(p.clone(), adjust(e.clone(), owner, None));
                    }
                }
                continue;
            }
            stage.add_parents(&mut layer, &target, self.build, owner)?;
            layer.insert(target, adjust(entry, owner, chmod));
        }
        Ok(layer)
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

impl Stage {
    fn new(image: Image) -> Stage {
        Stage {
            name: None,
            image,
            own: Tree::default(),
            base_layers: 0,
            view: None,
            args: Vec::new(),
            shell: vec!["/bin/sh".into(), "-c".into()],
            cmd_set: false,
        }
    }

    /// A stage the target does not depend on: never built.
    fn placeholder() -> Stage {
        Stage::new(Image::scratch(&Platform {
            os: String::new(),
            architecture: String::new(),
            variant: None,
        }))
    }

    /// Variables for expansion: ARGs, then ENV (which wins).
    fn vars(&self) -> Vec<(String, String)> {
        let mut vars = self.args.clone();
        vars.extend(self.image.env());
        vars
    }

    /// The working directory, relative to the root.
    fn workdir(&self) -> String {
        tree::clean(
            self.image
                .field("WorkingDir")
                .and_then(Value::as_str)
                .unwrap_or("/"),
        )
    }

    /// The whole file system: base layers read (once) and own files on top.
    fn view(&mut self, build: &Build<'_>) -> Result<&Tree, BuildError> {
        if self.view.is_none() {
            crate::image::fetch_layers(&self.image.layers[..self.base_layers], build.layout)?;
            let mut view = Tree::default();
            for layer in &self.image.layers[..self.base_layers] {
                let what = format!("base layer {}", layer.descriptor.digest());
                let blob = build.layout.open_blob(&layer.descriptor)?;
                archive::extract(
                    blob,
                    &what,
                    &Landing {
                        dest: "",
                        whiteouts: true,
                        strict: false,
                        epoch: u64::MAX,
                        identity: &layer.diff_id,
                    },
                    &mut view,
                    build.scratch,
                )?;
            }
            view.overlay(&self.own);
            self.view = Some(view);
        }
        Ok(self.view.as_ref().expect("just set"))
    }

    /// The entry at `path`, reading base layers only when the stage's own
    /// files do not answer.
    fn lookup(&mut self, path: &str, build: &Build<'_>) -> Result<Option<Entry>, BuildError> {
        if let Some(entry) = self.own.get(path) {
            return Ok(Some(entry.clone()));
        }
        if self.base_layers == 0 {
            return Ok(None);
        }
        Ok(self.view(build)?.get(path).cloned())
    }

    /// Put the parent directories of `path` into `layer`: existing ones
    /// with their metadata, missing ones root-owned 0755 (or `owner`'s).
    fn add_parents(
        &mut self,
        layer: &mut Tree,
        path: &str,
        build: &Build<'_>,
        owner: Option<(u64, u64)>,
    ) -> Result<(), BuildError> {
        for parent in tree::parents(path) {
            if layer.get(parent).is_some() {
                continue;
            }
            let entry = match self.lookup(parent, build)? {
                Some(existing) if existing.is_dir() => existing,
                _ => adjust(Entry::dir(build.epoch), owner, None),
            };
            layer.insert(parent.to_owned(), entry);
        }
        Ok(())
    }

    /// `--chown=USER[:GROUP]` as numbers, names looked up in the stage's
    /// `/etc/passwd` and `/etc/group`.
    fn owner(&mut self, spec: &str, build: &Build<'_>) -> Result<(u64, u64), String> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let (uid, primary) = match user.parse::<u64>() {
            Ok(uid) => (uid, uid),
            Err(_) => {
                let line = self.database("etc/passwd", user, build)?.ok_or_else(|| {
                    format!("--chown: no user `{user}` in the image's /etc/passwd")
                })?;
                let field = |i: usize| line.get(i).and_then(|v| v.parse::<u64>().ok());
                (
                    field(2)
                        .ok_or_else(|| format!("--chown: bad /etc/passwd line for `{user}`"))?,
                    field(3)
                        .ok_or_else(|| format!("--chown: bad /etc/passwd line for `{user}`"))?,
                )
            }
        };
        let gid = match group {
            None => primary,
            Some(group) => match group.parse::<u64>() {
                Ok(gid) => gid,
                Err(_) => self
                    .database("etc/group", group, build)?
                    .and_then(|line| line.get(2).and_then(|v| v.parse().ok()))
                    .ok_or_else(|| {
                        format!("--chown: no group `{group}` in the image's /etc/group")
                    })?,
            },
        };
        Ok((uid, gid))
    }

    /// The `:`-separated fields of `name`'s line in a passwd-style file.
    fn database(
        &mut self,
        file: &str,
        name: &str,
        build: &Build<'_>,
    ) -> Result<Option<Vec<String>>, String> {
        let Some(entry) = self.lookup(file, build).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let Kind::File(data) = entry.kind else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&data.source).map_err(|e| format!("/{file}: {e}"))?;
        Ok(text
            .lines()
            .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
            .find(|fields| fields.first().is_some_and(|f| f == name)))
    }
}

/// An entry with `--chown` and `--chmod` applied.
fn adjust(mut entry: Entry, owner: Option<(u64, u64)>, chmod: Option<u32>) -> Entry {
    if let Some((uid, gid)) = owner {
        entry.uid = uid;
        entry.gid = gid;
    }
    if let Some(mode) = chmod
        && !matches!(entry.kind, Kind::Symlink(_))
    {
        entry.mode = mode;
    }
    entry
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
        let mut names: Vec<String> = texts(text.from).into_iter().take(1).collect();
        for node in &text.body {
            for flag in &node.flags {
                if let ("from", Some(value)) = flag_value(flag) {
                    names.push(value.to_owned());
                }
            }
        }
        for name in names {
            match shell::process_word(&name, &global.to_vec(), escape) {
                Ok(name) => todo.extend(find(&name, index)),
                // An unexpandable name could be any earlier stage.
                Err(_) => todo.extend(0..index),
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

/// A config object field (`Labels`, `ExposedPorts`, `Volumes`).
fn object_field<'i>(image: &'i mut Image, name: &str) -> &'i mut serde_json::Map<String, Value> {
    let value = image.config().entry(name).or_insert_with(|| json!({}));
    if !value.is_object() {
        *value = json!({});
    }
    value.as_object_mut().expect("just made an object")
}

/// EXPOSE `80`, `53/udp`, `8000-8002/tcp` → `80/tcp`, ...
fn expose(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_lowercase();
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(format!("`{spec}`: protocol must be tcp, udp or sctp"));
    }
    let bad = || format!("`{spec}` is not a port or port range");
    let (low, high) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = ports.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if low > high {
        return Err(bad());
    }
    Ok((low..=high).map(|p| format!("{p}/{proto}")).collect())
}

/// A Go duration (`30s`, `1m30s`, `500ms`) in nanoseconds.
fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("`{text}` is not a duration like 30s or 1m30s");
    if text == "0" {
        return Ok(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_end].parse().map_err(|_| bad())?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Ok(total as i64)
}

/// Seconds since the epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub fn rfc3339(seconds: u64) -> String {
    let days = seconds / 86_400;
    let rem = seconds % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_grammars() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(expose("8000-8001/UDP").unwrap(), ["8000/udp", "8001/udp"]);
        assert_eq!(expose("80").unwrap(), ["80/tcp"]);
        assert!(expose("http").is_err());
        assert_eq!(flag_value("--from=build"), ("from", Some("build")));
    }
}
