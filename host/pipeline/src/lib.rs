//! The pipeline file: parse `kiln.yml`, validate it into [`Pipeline`], and
//! expand variables. Every error names `file:line:column`, what was found
//! and what is expected.

#![deny(missing_docs)]

pub mod export;
pub mod file;
pub mod project;
pub mod rules;
pub mod variables;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

pub use file::{ArtifactsDecl, VariableDecl};
use file::{PipelineFile, StepDecl};
pub use rules::{Exclusion, Rule};
pub use variables::Variables;

use kiln_grant::{GrantError, HostPattern, PluginSource, StepGrant};
use kiln_store::check_relative;

/// Where something is in the pipeline file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Line.
    pub line: u64,
    /// Column.
    pub column: u64,
}

impl From<Location> for Position {
    fn from(location: Location) -> Self {
        Position {
            line: location.line(),
            column: location.column(),
        }
    }
}

fn at<T>(spanned: &Spanned<T>) -> Position {
    spanned.referenced.into()
}

/// A problem with the pipeline file, located.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct PipelineError {
    /// The file, as the user named it.
    pub file: String,
    /// Where in it.
    pub position: Position,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.position.line, self.position.column, self.message
        )
    }
}

/// A string from the file together with where it was written, so that a
/// failure to expand it can say where.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    /// The text as written.
    pub text: String,
    /// Where.
    pub position: Position,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Run a plugin in the sandbox.
    Plugin {
        /// The plugin; a relative file path is already resolved against
        /// the project directory.
        plugin: PluginSource,
        /// Where `uses:` names it.
        uses_at: Position,
        /// Inputs, unexpanded.
        inputs: Vec<(String, Located)>,
        /// The grant, unexpanded.
        grant: Box<GrantTemplate>,
    },
    /// Run host shell commands, unsandboxed.
    Shell {
        /// The commands, run by `sh -e` in the project directory.
        commands: Vec<String>,
        /// Wall-clock limit from `allow.timeout`.
        timeout: Option<Duration>,
    },
}

/// A step's grant whose directories and hosts may name variables; they
/// are expanded when the pipeline runs.
#[derive(Debug, Clone, Default)]
pub struct GrantTemplate {
    /// Everything that needs no expansion (env, secrets, limits).
    pub fixed: StepGrant,
    /// Readable directories, relative to the project or absolute.
    pub read: Vec<Located>,
    /// Writable directories.
    pub write: Vec<Located>,
    /// Hosts.
    pub net: Vec<Located>,
}

impl GrantTemplate {
    /// The grant with variables expanded; an error names where. An entry
    /// that expands to nothing is dropped, so a grant may name an optional
    /// variable (`net: [$CI_REGISTRY]` outside GitLab grants no host).
    pub fn expand(
        &self,
        variables: &Variables,
        project_dir: &Path,
    ) -> Result<StepGrant, (Position, String)> {
        let mut grant = self.fixed.clone();
        let expand = |values: &[Located]| -> Result<Vec<(String, Position)>, (Position, String)> {
            let mut expanded = Vec::new();
            for value in values {
                let text = variables
                    .expand(&value.text)
                    .map_err(|m| (value.position, m))?;
                if !text.is_empty() {
                    expanded.push((text, value.position));
                }
            }
            Ok(expanded)
        };
        for (dirs, into) in [
            (&self.read, &mut grant.read),
            (&self.write, &mut grant.write),
        ] {
            for (dir, _) in expand(dirs)? {
                into.push(project_dir.join(dir));
            }
        }
        for (host, position) in expand(&self.net)? {
            let pattern = host
                .parse()
                .map_err(|e: GrantError| (position, e.to_string()))?;
            grant.net.push(pattern);
        }
        Ok(grant)
    }
}

/// `cache:` of a step, validated.
#[derive(Debug, Clone)]
pub struct Cache {
    /// The key, unexpanded.
    pub key: Located,
    /// Project-relative directories.
    pub paths: Vec<String>,
}

/// One validated step.
#[derive(Debug, Clone)]
pub struct Step {
    /// Its name (also its GitLab job name).
    pub name: String,
    /// Its stage.
    pub stage: String,
    /// What it does.
    pub action: Action,
    /// The steps it needs, resolved (explicit or by stage).
    pub needs: Vec<String>,
    /// Whether `needs:` is written: GitLab refuses a written need of a job
    /// that rules exclude, but stage order just goes without it.
    pub needs_declared: bool,
    /// `rules:` in order; empty when the step always runs.
    pub rules: Vec<Rule>,
    /// What it hands on.
    pub artifacts: Option<ArtifactsDecl>,
    /// What it keeps between runs.
    pub cache: Option<Cache>,
    /// Where it is declared.
    pub position: Position,
}

impl Step {
    /// Whether the step runs in the sandbox.
    pub fn is_sandboxed(&self) -> bool {
        matches!(self.action, Action::Plugin { .. })
    }
}

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file, as the user named it (for messages).
    pub file: String,
    /// The project directory: where the file is.
    pub project_dir: PathBuf,
    /// Stage names in order.
    pub stages: Vec<String>,
    /// Declared variables, with where each is declared.
    pub variables: Vec<(String, VariableDecl, Position)>,
    /// Steps in file order.
    pub steps: Vec<Step>,
}

/// Largest pipeline file read: real ones are a few kilobytes, and the file
/// is untrusted input.
pub const MAX_PIPELINE_FILE: u64 = 4 << 20;

impl Pipeline {
    /// Check that every built-in a step `uses:` is one of `known` (the
    /// runtime's), so an unknown name is reported at its line before
    /// anything runs. The file alone cannot tell: the built-ins are what
    /// the binary embeds.
    pub fn check_builtins(&self, known: &[&str]) -> Result<(), PipelineError> {
        for step in &self.steps {
            if let Action::Plugin {
                plugin, uses_at, ..
            } = &step.action
            {
                plugin.check_builtin(known).map_err(|e| PipelineError {
                    file: self.file.clone(),
                    position: *uses_at,
                    message: format!("step `{}`: {e}", step.name),
                })?;
            }
        }
        Ok(())
    }

    /// Read and validate the pipeline at `path`.
    pub fn load(path: &Path) -> Result<Pipeline, PipelineError> {
        use std::io::Read;
        let name = path.display().to_string();
        let unreadable = |message: String| PipelineError {
            file: name.clone(),
            position: Position { line: 0, column: 0 },
            message,
        };
        // The file comes with the repository: it is read up to a bound.
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_PIPELINE_FILE + 1).read_to_string(&mut text))
            .map_err(|e| unreadable(format!("cannot read the pipeline file: {e}")))?;
        if text.len() as u64 > MAX_PIPELINE_FILE {
            return Err(unreadable(format!(
                "the pipeline file is larger than {MAX_PIPELINE_FILE} bytes; split it or remove what it does not need"
            )));
        }
        let project_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .canonicalize()
            .map_err(|e| PipelineError {
                file: name.clone(),
                position: Position::default(),
                message: format!("cannot resolve the project directory: {e}"),
            })?;
        Pipeline::parse(&name, &text, project_dir)
    }

    /// Validate `text`, the contents of `file`, for a project in
    /// `project_dir`.
    pub fn parse(file: &str, text: &str, project_dir: PathBuf) -> Result<Pipeline, PipelineError> {
        let raw: PipelineFile = serde_saphyr::from_str(text).map_err(|e| PipelineError {
            file: file.to_owned(),
            position: e.location().map(Position::from).unwrap_or_default(),
            message: first_line(&e.to_string()),
        })?;
        Validator {
            file,
            project_dir: &project_dir,
        }
        .pipeline(raw)
        .map(|(stages, variables, steps)| Pipeline {
            file: file.to_owned(),
            project_dir: project_dir.clone(),
            stages,
            variables,
            steps,
        })
    }

    /// The step called `name`.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// An error about this file at `position`.
    pub fn error(&self, position: Position, message: impl Into<String>) -> PipelineError {
        PipelineError {
            file: self.file.clone(),
            position,
            message: message.into(),
        }
    }
}

/// serde-saphyr renders `error: line L column C: message` and a snippet;
/// kiln prints its own `file:line:column:` prefix, so keep the message.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    let located = line.starts_with("line ") && line.contains(" column ");
    let line = match line.split_once(": ") {
        Some((_, message)) if located => message,
        _ => line,
    };
    match line.find(" at line ") {
        Some(i) => line[..i].to_owned(),
        None => line.to_owned(),
    }
}

struct Validator<'a> {
    file: &'a str,
    project_dir: &'a Path,
}

type Validated = (
    Vec<String>,
    Vec<(String, VariableDecl, Position)>,
    Vec<Step>,
);

impl Validator<'_> {
    fn error(&self, position: Position, message: impl Into<String>) -> PipelineError {
        PipelineError {
            file: self.file.to_owned(),
            position,
            message: message.into(),
        }
    }

    fn pipeline(&self, raw: PipelineFile) -> Result<Validated, PipelineError> {
        let mut stages: Vec<String> = Vec::new();
        for stage in &raw.stages {
            if stages.contains(&stage.value) {
                return Err(self.error(
                    at(stage),
                    format!("stage `{}` is declared twice", stage.value),
                ));
            }
            stages.push(stage.value.clone());
        }
        if raw.steps.is_empty() {
            return Err(self.error(
                Position { line: 1, column: 1 },
                "the pipeline has no steps; add at least one under `steps:`",
            ));
        }
        let mut variables = Vec::new();
        for (name, decl) in &raw.variables {
            check_name(name)
                .map_err(|m| self.error(at(decl), format!("variable `{name}`: {m}")))?;
            variables.push((name.clone(), decl.value.clone(), at(decl)));
        }

        let mut steps = Vec::new();
        for (name, decl) in &raw.steps {
            steps.push(self.step(name, decl, &stages, &raw)?);
        }
        self.check_cycles(&steps, &raw)?;
        Ok((stages, variables, steps))
    }

    fn step(
        &self,
        name: &str,
        decl: &Spanned<StepDecl>,
        stages: &[String],
        raw: &PipelineFile,
    ) -> Result<Step, PipelineError> {
        let position = at(decl);
        let step_error =
            |pos: Position, message: String| self.error(pos, format!("step `{name}`: {message}"));
        check_name(name).map_err(|m| step_error(position, m))?;
        if RESERVED.contains(&name) {
            return Err(step_error(
                position,
                format!(
                    "`{name}` is a reserved GitLab keyword, so the step could not be a GitLab job; rename the step"
                ),
            ));
        }
        let decl_value = &decl.value;
        let stage = &decl_value.stage;
        let stage_index = stages
            .iter()
            .position(|s| *s == stage.value)
            .ok_or_else(|| {
                step_error(
                    at(stage),
                    format!(
                        "stage `{}` is not declared in `stages:` (declared: {})",
                        stage.value,
                        if stages.is_empty() {
                            "none".to_owned()
                        } else {
                            stages.join(", ")
                        }
                    ),
                )
            })?;

        let action = match (&decl_value.uses, &decl_value.run) {
            (Some(_), Some(run)) => {
                return Err(step_error(
                    at(run),
                    "has both `uses:` and `run:`; a step either runs a plugin or runs commands"
                        .into(),
                ));
            }
            (None, None) => {
                return Err(step_error(position, "needs `uses: PLUGIN` (a sandboxed plugin) or `run: [COMMANDS]` (host commands)".into()));
            }
            (Some(uses), None) => self.plugin_action(name, uses, decl_value)?,
            (None, Some(run)) => self.shell_action(name, run, decl_value)?,
        };

        let needs = match &decl_value.needs {
            Some(needs) => {
                let mut resolved = Vec::new();
                for need in needs {
                    let Some((other, other_decl)) = raw.steps.get_key_value(&need.value) else {
                        return Err(step_error(
                            at(need),
                            format!(
                                "needs `{}`, which is not a step (steps: {})",
                                need.value,
                                raw.steps.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    };
                    let other_stage = stages
                        .iter()
                        .position(|s| *s == other_decl.value.stage.value);
                    if other_stage.is_some_and(|o| o > stage_index) {
                        return Err(step_error(
                            at(need),
                            format!(
                                "needs `{other}`, which is in the later stage `{}`",
                                other_decl.value.stage.value
                            ),
                        ));
                    }
                    if other == name {
                        return Err(step_error(at(need), "needs itself".into()));
                    }
                    if !resolved.contains(other) {
                        resolved.push(other.clone());
                    }
                }
                resolved
            }
            None => raw
                .steps
                .iter()
                .filter(|(_, d)| {
                    stages
                        .iter()
                        .position(|s| *s == d.value.stage.value)
                        .is_some_and(|i| i < stage_index)
                })
                .map(|(n, _)| n.clone())
                .collect(),
        };

        let cache = decl_value.cache.as_ref().map(|c| Cache {
            key: Located {
                text: c.key.value.clone(),
                position: at(&c.key),
            },
            paths: c.paths.clone(),
        });
        if let Some(cache) = &cache {
            for path in &cache.paths {
                check_relative(path).map_err(|m| {
                    step_error(cache.key.position, format!("cache path `{path}`: {m}"))
                })?;
            }
        }
        if let Some(artifacts) = &decl_value.artifacts
            && artifacts.paths.is_empty()
        {
            return Err(step_error(
                position,
                "`artifacts.paths` is empty; list the files to hand on".into(),
            ));
        }
        Ok(Step {
            name: name.to_owned(),
            stage: stage.value.clone(),
            action,
            needs,
            needs_declared: decl_value.needs.is_some(),
            rules: self.rules(name, decl_value)?,
            artifacts: decl_value.artifacts.clone(),
            cache,
            position,
        })
    }

    /// Parse every `if:` now, so a typo stops `kiln run` before anything
    /// runs, whichever way the rules would decide.
    fn rules(&self, name: &str, decl: &StepDecl) -> Result<Vec<Rule>, PipelineError> {
        let Some(rules) = &decl.rules else {
            return Ok(Vec::new());
        };
        if rules.value.is_empty() {
            return Err(self.error(
                at(rules),
                format!("step `{name}`: `rules:` is empty; add a rule, or remove `rules:` to always run the step"),
            ));
        }
        rules
            .value
            .iter()
            .map(|rule| {
                let condition = match &rule.value.condition {
                    Some(text) => Some(rules::Condition::parse(&text.value).map_err(|m| {
                        self.error(at(text), format!("step `{name}`: rules: if: {m}"))
                    })?),
                    None => None,
                };
                Ok(Rule {
                    condition,
                    when: rule.value.when,
                    position: at(rule),
                })
            })
            .collect()
    }

    fn plugin_action(
        &self,
        name: &str,
        uses: &Spanned<String>,
        decl: &StepDecl,
    ) -> Result<Action, PipelineError> {
        let plugin = match PluginSource::parse(&uses.value) {
            Ok(PluginSource::File(path)) if path.is_relative() => {
                // `./x.wasm` names the project's `x.wasm`; messages show it so.
                PluginSource::File(self.project_dir.join(path).components().collect())
            }
            Ok(plugin) => plugin,
            Err(e) => return Err(self.error(at(uses), format!("step `{name}`: {e}"))),
        };
        let grant = match &decl.allow {
            None => GrantTemplate::default(),
            Some(allow) => {
                let allow = &allow.value;
                let located = |list: &[Spanned<String>]| -> Vec<Located> {
                    list.iter()
                        .map(|v| Located {
                            text: v.value.clone(),
                            position: at(v),
                        })
                        .collect()
                };
                let template = GrantTemplate {
                    fixed: StepGrant {
                        env: allow.env.clone(),
                        secrets: allow.secrets.clone(),
                        timeout: allow.timeout,
                        memory: allow.memory,
                        run: allow.run,
                        run_host_network: allow.run_host_network,
                        ..StepGrant::default()
                    },
                    read: located(&allow.read),
                    write: located(&allow.write),
                    net: located(&allow.net),
                };
                // Hosts without variables are checked now, not at run time.
                for host in template.net.iter().filter(|h| !h.text.contains('$')) {
                    if let Err(e) = host.text.parse::<HostPattern>() {
                        return Err(
                            self.error(host.position, format!("step `{name}`: allow.net: {e}"))
                        );
                    }
                }
                template
            }
        };
        let inputs = decl
            .with
            .iter()
            .map(|(key, value)| {
                (
                    key.clone(),
                    Located {
                        text: value.value.0.clone(),
                        position: at(value),
                    },
                )
            })
            .collect();
        Ok(Action::Plugin {
            plugin,
            uses_at: at(uses),
            inputs,
            grant: Box::new(grant),
        })
    }

    fn shell_action(
        &self,
        name: &str,
        run: &Spanned<file::Commands>,
        decl: &StepDecl,
    ) -> Result<Action, PipelineError> {
        if run.value.0.is_empty() {
            return Err(self.error(at(run), format!("step `{name}`: `run:` has no commands")));
        }
        if let Some((key, _)) = decl.with.first() {
            return Err(self.error(
                at(&decl.with[key]),
                format!("step `{name}`: `with:` gives plugin inputs, but this step has `run:` and no plugin"),
            ));
        }
        let timeout = match &decl.allow {
            None => None,
            Some(allow) => {
                let grant = &allow.value;
                let ignored = [
                    ("read", !grant.read.is_empty()),
                    ("write", !grant.write.is_empty()),
                    ("net", !grant.net.is_empty()),
                    ("env", !grant.env.is_empty()),
                    ("secrets", !grant.secrets.is_empty()),
                    ("memory", grant.memory.is_some()),
                    ("run", grant.run),
                    ("run_host_network", grant.run_host_network),
                ];
                if let Some((field, _)) = ignored.iter().find(|(_, set)| *set) {
                    return Err(self.error(
                        at(allow),
                        format!(
                            "step `{name}`: `allow.{field}` has no effect on a `run:` step, which is not sandboxed; only `allow.timeout` applies"
                        ),
                    ));
                }
                grant.timeout.map(|t| t.0)
            }
        };
        Ok(Action::Shell {
            commands: run.value.0.clone(),
            timeout,
        })
    }

    fn check_cycles(&self, steps: &[Step], raw: &PipelineFile) -> Result<(), PipelineError> {
        let index: HashMap<&str, &Step> = steps.iter().map(|s| (s.name.as_str(), s)).collect();
        let mut done: BTreeSet<&str> = BTreeSet::new();
        for step in steps {
            let mut path = Vec::new();
            if let Some(cycle) = find_cycle(step.name.as_str(), &index, &mut done, &mut path) {
                let start = raw.steps[cycle[0].as_str()].value.needs.as_ref();
                let position = start
                    .and_then(|n| n.first())
                    .map(at)
                    .unwrap_or(index[cycle[0].as_str()].position);
                return Err(self.error(
                    position,
                    format!("`needs` form a cycle: {}", cycle.join(" → ")),
                ));
            }
        }
        Ok(())
    }
}

/// Depth-first search; returns the cycle's names if one is reachable.
fn find_cycle<'a>(
    name: &'a str,
    index: &HashMap<&'a str, &'a Step>,
    done: &mut BTreeSet<&'a str>,
    path: &mut Vec<&'a str>,
) -> Option<Vec<String>> {
    if let Some(start) = path.iter().position(|p| *p == name) {
        let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
        cycle.push(name.to_owned());
        return Some(cycle);
    }
    if done.contains(name) {
        return None;
    }
    path.push(name);
    for need in &index[name].needs {
        if let Some(cycle) = find_cycle(need, index, done, path) {
            return Some(cycle);
        }
    }
    path.pop();
    done.insert(name);
    None
}

/// Top-level keys GitLab reserves: a step is a GitLab job (`kiln export
/// gitlab`), so it cannot be called like them, even when it only runs
/// locally today.
pub const RESERVED: &[&str] = &[
    "image",
    "services",
    "stages",
    "types",
    "before_script",
    "after_script",
    "variables",
    "cache",
    "include",
    "default",
    "workflow",
    "pages",
    "spec",
];

/// Step and variable names end up in paths, GitLab job names and shell
/// variables, so they are kept to a safe alphabet.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name; use letters, digits, `_`, `-` and `.`, not starting with `.`"
        ))
    }
}
