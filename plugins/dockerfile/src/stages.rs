//! Stages and what they build on, decided once for everyone who must
//! agree: the `dockerfile-build` plugin builds from a [`Plan`], and the
//! host grants the registries [`check`] returns before the build runs.
//!
//! A plan knows the global scope (the predefined platform ARGs, then the
//! ARGs before the first FROM with `--build-arg` values), which stages a
//! target needs, and what each stage's FROM and a `COPY --from` name: an
//! earlier stage, `scratch`, or an image to pull.

use crate::instructions::{self, ArgDecl, From, Instruction, InstructionError, Kind, Located};
use crate::parser::Dockerfile;
use crate::shell::{self, ShellError};
use kiln_oci::Platform;

/// Variables in scope, later entries shadowing earlier ones.
pub type Scope = Vec<(String, String)>;

/// A stage: its FROM and the instructions after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The FROM instruction.
    pub from: Located<From>,
    /// The instructions up to the next FROM.
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// The stage's name (`FROM ... AS NAME`).
    pub fn name(&self) -> Option<&str> {
        self.from.value.name.as_deref()
    }
}

/// What a FROM or `COPY --from` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// An earlier stage, by index.
    Stage(usize),
    /// `FROM scratch`: the empty image.
    Scratch,
    /// An image reference, to pull.
    Image(String),
}

/// A Dockerfile evaluated as far as it can be before anything is built.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The escape token, for expanding words.
    pub escape: char,
    /// The stages, in order.
    pub stages: Vec<Stage>,
    /// The global scope FROM lines are expanded with.
    pub global: Scope,
    /// TARGETPLATFORM and friends.
    predefined: Scope,
    /// `--build-arg` values.
    build_args: Vec<(String, String)>,
    /// The names the ARGs before the first FROM declare.
    global_args: Vec<String>,
}

/// Why a Dockerfile cannot be planned or built; [`Error::in_file`] says
/// where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// It does not parse.
    #[error(transparent)]
    Parse(#[from] crate::parser::ParseError),
    /// An instruction is not valid.
    #[error(transparent)]
    Instruction(#[from] InstructionError),
    /// `--target` names no stage.
    #[error("there is no stage named `{target}` (stages: {})", stages.join(", "))]
    UnknownTarget {
        /// The target asked for.
        target: String,
        /// The stages there are.
        stages: Vec<String>,
    },
    /// Only ARGs, no stage.
    #[error("no FROM instruction")]
    NoStage,
    /// The platform to build for is not `os/arch[/variant]`.
    #[error(transparent)]
    Platform(#[from] kiln_oci::platform::PlatformError),
}

/// Why a build whose step may not run commands refuses a `RUN`, said by
/// [`check`] before anything is built.
pub const RUN_NOT_GRANTED: &str = "RUN runs a command in the image, which this build is not granted: \
     pass --allow-run to kiln build, or grant the step `allow: { run: true }`";

/// Refuse, before anything is built, what the build of `target` for
/// `platform` (`os/arch[/variant]`) would refuse: a Dockerfile that does
/// not parse or plan, an unknown target, and a `RUN` in a stage the target
/// needs unless `run` says commands may run. (What a base image's ONBUILD triggers hold is known only once it
/// is pulled.) Returns the registry images the Dockerfile's FROM and
/// `COPY --from` name ([`Plan::base_images`], from the same plan the
/// plugin builds with): what the host must let the build reach.
///
/// The platform is text so that a caller without kiln-oci's types (the
/// host) passes what the user typed.
///
/// ```
/// let source = "ARG BASE=busybox\nARG TAG\nFROM ${BASE}:${TAG:-1} AS build\nFROM scratch\nCOPY --from=build /a /a\n";
/// let images = kiln_dockerfile::check(source, &[("TAG".into(), "3".into())], "linux/amd64", None, false);
/// assert_eq!(images.unwrap(), ["busybox:3"]);
/// ```
pub fn check(
    source: &str,
    build_args: &[(String, String)],
    platform: &str,
    target: Option<&str>,
    run: bool,
) -> Result<Vec<String>, Error> {
    let dockerfile = crate::parser::parse(source)?;
    let plan = Plan::new(&dockerfile, build_args, &Platform::parse(platform)?)?;
    let target = plan.target(target)?;
    for (stage, needed) in plan.stages.iter().zip(plan.needed(target)) {
        if let Some(run) = stage
            .instructions
            .iter()
            .filter(|_| needed && !run)
            .find(|i| matches!(i.value, Kind::Run(_)))
        {
            return Err(run.error(RUN_NOT_GRANTED).into());
        }
    }
    Ok(plan.base_images())
}

/// The `from=` of a `RUN --mount` specification, if it has one.
fn mount_from(spec: &str) -> Option<&str> {
    spec.split(',')
        .find_map(|field| field.trim().strip_prefix("from="))
        .filter(|from| !from.is_empty())
}

/// `NAME=VALUE` lines, blank lines skipped: the form build arguments (and
/// labels) travel in from `kiln build` and a pipeline's `with:` to the
/// build. A line without a name and `=` is the error, as written.
pub fn name_values(text: &str) -> Result<Vec<(String, String)>, &str> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.split_once('=')
                .map(|(name, value)| (name.trim().to_owned(), value.to_owned()))
                .filter(|(name, _)| !name.is_empty())
                .ok_or(line)
        })
        .collect()
}

/// Levenshtein distance between two short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Parse `source` into typed instructions, without stages (an ONBUILD
/// trigger).
pub fn parse_instructions(source: &str) -> Result<Vec<Instruction>, Error> {
    let dockerfile = crate::parser::parse(source)?;
    Ok(instructions::convert(&dockerfile)?)
}

impl Error {
    /// The message with the Dockerfile's name in front, as every
    /// Dockerfile error is shown: `Dockerfile:3: COPY: …`.
    pub fn in_file(&self, file: &str) -> String {
        match self {
            Error::Parse(e) if e.line == 0 => format!("{file}: {e}"),
            Error::Parse(_) | Error::Instruction(_) => format!("{file}:{self}"),
            _ => format!("{file}: {self}"),
        }
    }
}

/// The ARGs BuildKit predefines for `platform` (as the build's target and
/// as the platform it builds on: kiln builds for the platform it is
/// asked for, whatever it runs on). Unlike BuildKit, which makes them
/// visible to FROM only once a global `ARG` declares them, kiln puts them
/// in the global scope: `FROM --platform=$BUILDPLATFORM` works either way.
pub fn predefined_args(platform: &Platform) -> Scope {
    let variant = platform.variant.clone().unwrap_or_default();
    let mut args = Vec::new();
    for prefix in ["TARGET", "BUILD"] {
        args.push((format!("{prefix}PLATFORM"), platform.to_string()));
        args.push((format!("{prefix}OS"), platform.os.clone()));
        args.push((format!("{prefix}ARCH"), platform.architecture.clone()));
        args.push((format!("{prefix}VARIANT"), variant.clone()));
    }
    args
}

impl Plan {
    /// Type `dockerfile`'s instructions, group them into stages and
    /// evaluate the global ARGs for `platform` and `build_args`.
    pub fn new(
        dockerfile: &Dockerfile,
        build_args: &[(String, String)],
        platform: &Platform,
    ) -> Result<Plan, Error> {
        let predefined = predefined_args(platform);
        let mut plan = Plan {
            escape: dockerfile.escape,
            stages: Vec::new(),
            global: predefined.clone(),
            predefined,
            build_args: build_args.to_vec(),
            global_args: Vec::new(),
        };
        for instruction in instructions::convert(dockerfile)? {
            let Located {
                keyword,
                start_line,
                end_line,
                value,
            } = instruction;
            match (value, plan.stages.last_mut()) {
                (Kind::From(from), _) => plan.stages.push(Stage {
                    from: Located {
                        keyword,
                        start_line,
                        end_line,
                        value: from,
                    },
                    instructions: Vec::new(),
                }),
                (Kind::Arg(decls), None) => {
                    let at = Located {
                        keyword,
                        start_line,
                        end_line,
                        value: (),
                    };
                    let values = plan
                        .arg_values(&decls, &plan.global)
                        .map_err(|e| at.error(e))?;
                    plan.global_args
                        .extend(decls.iter().map(|decl| decl.name.clone()));
                    plan.global
                        .extend(values.into_iter().filter_map(|(k, v)| Some((k, v?))));
                }
                (value, Some(stage)) => stage.instructions.push(Located {
                    keyword,
                    start_line,
                    end_line,
                    value,
                }),
                (_, None) => {
                    return Err(Located {
                        keyword,
                        start_line,
                        end_line,
                        value: (),
                    }
                    .error("the first instruction must be FROM (or ARG before it)")
                    .into());
                }
            }
        }
        Ok(plan)
    }

    /// The `--build-arg` names no ARG of the Dockerfile declares, which
    /// BuildKit warns about (a typo, or an argument meant for another
    /// Dockerfile). The proxy variables BuildKit predefines are exempt.
    pub fn unused_build_args(&self) -> Vec<&str> {
        const PROXIES: &[&str] = &[
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "FTP_PROXY",
            "NO_PROXY",
            "ALL_PROXY",
        ];
        let declared = |name: &str| {
            self.global_args.iter().any(|arg| arg == name)
                || self.stages.iter().any(|stage| {
                    stage.instructions.iter().any(|i| match &i.value {
                        Kind::Arg(decls) => decls.iter().any(|decl| decl.name == name),
                        _ => false,
                    })
                })
        };
        let mut unused: Vec<&str> = self
            .build_args
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| !PROXIES.contains(&name.to_ascii_uppercase().as_str()))
            .filter(|name| !declared(name))
            .collect();
        unused.dedup();
        unused
    }

    /// The values of an ARG instruction's declarations: the build
    /// argument if given, else the default (expanded in `scope`), else
    /// what `scope` or the predefined ARGs hold; `None` when unset.
    pub fn arg_values(
        &self,
        decls: &[ArgDecl],
        scope: &[(String, String)],
    ) -> Result<Vec<(String, Option<String>)>, ShellError> {
        let lookup = |vars: &[(String, String)], name: &str| {
            vars.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        decls
            .iter()
            .map(|decl| {
                let default = decl
                    .default
                    .as_deref()
                    .map(|value| self.expand(value, scope))
                    .transpose()?;
                let value = lookup(&self.build_args, &decl.name)
                    .or(default)
                    .or_else(|| lookup(scope, &decl.name))
                    .or_else(|| lookup(&self.predefined, &decl.name));
                Ok((decl.name.clone(), value))
            })
            .collect()
    }

    /// `word` with variables of `scope` expanded.
    pub fn expand(&self, word: &str, scope: &[(String, String)]) -> Result<String, ShellError> {
        shell::process_word(word, &scope, self.escape)
    }

    /// The stage `--target` names (case-insensitive), or the last.
    pub fn target(&self, target: Option<&str>) -> Result<usize, Error> {
        match target {
            Some(target) => self
                .stages
                .iter()
                .position(|s| s.name().is_some_and(|n| n.eq_ignore_ascii_case(target)))
                .ok_or_else(|| Error::UnknownTarget {
                    target: target.to_owned(),
                    stages: self
                        .stages
                        .iter()
                        .filter_map(|s| s.name().map(str::to_owned))
                        .collect(),
                }),
            None => self.stages.len().checked_sub(1).ok_or(Error::NoStage),
        }
    }

    /// The stage named `name` (case-insensitive) among the first `before`
    /// stages, the latest if several, or the one at index `name` there.
    fn earlier(&self, name: &str, before: usize) -> Option<usize> {
        if let Ok(index) = name.parse::<usize>() {
            return (index < before).then_some(index);
        }
        self.stages[..before]
            .iter()
            .rposition(|s| s.name().is_some_and(|n| n.eq_ignore_ascii_case(name)))
    }

    /// What stage `index`'s FROM builds on, its image expanded with the
    /// global scope. A name that expands to nothing is an error saying
    /// how to give it a value.
    pub fn base(&self, index: usize) -> Result<Base, InstructionError> {
        let from = &self.stages[index].from;
        let image = self
            .expand(&from.value.image, &self.global)
            .map_err(|e| from.error(e))?;
        if image.trim().is_empty() {
            return Err(from.error(format!(
                "`{}` expands to an empty image name; give its ARG a default before the first FROM, or pass --build-arg NAME=IMAGE",
                from.value.image
            )));
        }
        Ok(self.named(&image, index))
    }

    /// Why an image name that could not be pulled may have been meant as
    /// a stage: a stage of that name defined later (only earlier stages
    /// can be named), or one spelled almost the same.
    pub fn stage_hint(&self, name: &str) -> Option<String> {
        let names = self.stages.iter().filter_map(Stage::name);
        if let Some(later) = names.clone().find(|n| n.eq_ignore_ascii_case(name)) {
            return Some(format!(
                "the stage `{later}` is defined after this instruction; only an earlier stage can be named here"
            ));
        }
        if name.contains(['/', ':', '@', '.']) {
            return None;
        }
        names
            .filter(|n| n.len() >= 3 && edit_distance(&n.to_lowercase(), &name.to_lowercase()) <= 2)
            .min_by_key(|n| edit_distance(&n.to_lowercase(), &name.to_lowercase()))
            .map(|n| format!("did you mean the stage `{n}`?"))
    }

    /// What `name` (already expanded) means as the base of stage `index`:
    /// an earlier stage by name, `scratch`, or an image.
    fn named(&self, name: &str, index: usize) -> Base {
        match self
            .earlier(name, index)
            .filter(|_| name.parse::<usize>().is_err())
        {
            Some(stage) => Base::Stage(stage),
            None if name.eq_ignore_ascii_case("scratch") => Base::Scratch,
            None => Base::Image(name.to_owned()),
        }
    }

    /// The platform stage `index` is built for: its `--platform`
    /// expanded with the global scope, else `default`.
    pub fn platform(&self, index: usize, default: &Platform) -> Result<Platform, Error> {
        let from = &self.stages[index].from;
        match &from.value.platform {
            Some(flag) => {
                let text = self.expand(flag, &self.global).map_err(|e| from.error(e))?;
                Ok(Platform::parse(&text)?)
            }
            None => Ok(default.clone()),
        }
    }

    /// What `COPY --from=NAME` (already expanded) reads in stage `index`:
    /// an earlier stage by name or index, or an image. An index that is
    /// not an earlier stage is an error of `copy`.
    pub fn copy_source<T>(
        &self,
        index: usize,
        name: &str,
        copy: &Located<T>,
    ) -> Result<Base, InstructionError> {
        if let Some(stage) = self.earlier(name, index) {
            return Ok(Base::Stage(stage));
        }
        if let Ok(number) = name.parse::<usize>() {
            return Err(copy.error(format!(
                "--from={number}: there is no earlier stage {number}"
            )));
        }
        Ok(Base::Image(name.to_owned()))
    }

    /// Which stages `target` needs: itself, its FROM chain and `--from`s,
    /// as BuildKit decides; a stage nothing needs is never built. A name
    /// that cannot be known before the build (a `--from` with a variable,
    /// which the stage's own scope expands) could be any earlier stage.
    pub fn needed(&self, target: usize) -> Vec<bool> {
        let mut needed = vec![false; self.stages.len()];
        let mut todo = vec![target];
        while let Some(index) = todo.pop() {
            if needed[index] {
                continue;
            }
            needed[index] = true;
            match self.base(index) {
                Ok(Base::Stage(stage)) => todo.push(stage),
                Ok(_) => {}
                Err(_) => todo.extend(0..index),
            }
            for from in self.files_from(index) {
                match from {
                    name if name.contains('$') => todo.extend(0..index),
                    name => todo.extend(self.earlier(name, index)),
                }
            }
        }
        needed
    }

    /// The stages and images stage `index` reads files from, as written:
    /// its COPYs' `--from` and its RUNs' `--mount=...,from=`.
    fn files_from(&self, index: usize) -> impl Iterator<Item = &str> {
        self.stages[index]
            .instructions
            .iter()
            .flat_map(|i| match &i.value {
                Kind::Copy(copy) => copy.from.as_deref().into_iter().collect::<Vec<_>>(),
                Kind::Run(run) => run.mounts.iter().filter_map(|m| mount_from(m)).collect(),
                _ => Vec::new(),
            })
    }

    /// The registry images the stages name in FROM and `COPY --from`, in
    /// order and once each, with the global scope expanded; stages,
    /// indexes and `scratch` left out. A `--from` is expanded with the
    /// global scope only (the stage's own ARGs and ENV are known once it
    /// is built), and a name that expands to nothing or fails is left
    /// out, as is a bare number (a stage index, or no image): its pull is
    /// refused by the sandbox, naming the host.
    pub fn base_images(&self) -> Vec<String> {
        let mut images: Vec<String> = Vec::new();
        for index in 0..self.stages.len() {
            let mut bases: Vec<Base> = self.base(index).into_iter().collect();
            for from in self.files_from(index) {
                if let Ok(name) = self.expand(from, &self.global) {
                    bases.push(self.named(&name, index));
                }
            }
            for base in bases {
                if let Base::Image(image) = base
                    && !image.is_empty()
                    && image.parse::<usize>().is_err()
                    && !images.contains(&image)
                {
                    images.push(image);
                }
            }
        }
        images
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(source: &str) -> Plan {
        let dockerfile = crate::parser::parse(source).unwrap();
        Plan::new(
            &dockerfile,
            &[],
            &Platform::parse("linux/arm64/v8").unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn base_images_skip_stages_and_expand_args() {
        let source = "ARG BASE=busybox\nARG TAG\nFROM ${BASE}:${TAG:-1} AS build\nFROM scratch\nCOPY --from=build /a /a\nCOPY --from=127.0.0.1:5000/tools:2 /b /b\n";
        let images = check(
            source,
            &[("TAG".into(), "3".into())],
            "linux/amd64",
            None,
            false,
        )
        .unwrap();
        assert_eq!(images, ["busybox:3", "127.0.0.1:5000/tools:2"]);
    }

    #[test]
    fn base_images_see_the_platform_args_as_the_plugin_does() {
        let source = "FROM --platform=$BUILDPLATFORM tools-${TARGETARCH}${TARGETVARIANT} AS tools\nFROM registry.example.com/run:${TARGETOS}\nCOPY --from=tools /t /t\nCOPY --from=0 /t /u\nCOPY --from=${TARGETARCH}/helper /h /h\nFROM Tools\nFROM scratch\n";
        let images = check(source, &[], "linux/arm64/v8", None, false).unwrap();
        assert_eq!(
            images,
            [
                "tools-arm64v8",
                "registry.example.com/run:linux",
                "arm64/helper"
            ]
        );
        let p = plan(source);
        assert_eq!(p.base(2), Ok(Base::Stage(0)));
        assert_eq!(p.base(3), Ok(Base::Scratch));
        assert_eq!(
            p.platform(0, &Platform::parse("linux/amd64").unwrap())
                .unwrap()
                .to_string(),
            "linux/arm64/v8"
        );
        assert!(check(source, &[], "arm64", None, false).is_err());
    }

    #[test]
    fn global_args_take_build_args_then_defaults() {
        let source = "ARG A=one\nARG B=${A}-two\nARG C\nFROM x\n";
        let dockerfile = crate::parser::parse(source).unwrap();
        let platform = Platform::parse("linux/amd64").unwrap();
        let p = Plan::new(&dockerfile, &[("A".into(), "uno".into())], &platform).unwrap();
        let scope = &p.global;
        assert!(scope.contains(&("A".into(), "uno".into())));
        assert!(scope.contains(&("B".into(), "uno-two".into())));
        assert!(!scope.iter().any(|(k, _)| k == "C"));
        assert!(scope.contains(&("TARGETARCH".into(), "amd64".into())));
    }

    #[test]
    fn targets_and_needed_stages() {
        let p = plan(
            "FROM a AS one\nFROM b AS two\nFROM one AS three\nCOPY --from=two /x /x\nFROM c AS unused\n",
        );
        assert_eq!(p.target(Some("THREE")), Ok(2));
        assert_eq!(p.target(None), Ok(3));
        assert_eq!(p.needed(2), [true, true, true, false]);
        assert_eq!(
            p.target(Some("four")).unwrap_err().in_file("Dockerfile"),
            "Dockerfile: there is no stage named `four` (stages: one, two, three, unused)"
        );
        let p = plan("FROM a\nCOPY --from=${X} /x /x\nFROM b\nCOPY --from=$X /y /y\n");
        assert_eq!(p.needed(1), [true, true]);
        let copy = &p.stages[1].instructions[0];
        assert_eq!(p.copy_source(1, "0", copy), Ok(Base::Stage(0)));
        assert_eq!(
            p.copy_source(1, "5", copy).unwrap_err().to_string(),
            "4: COPY: --from=5: there is no earlier stage 5"
        );
    }

    #[test]
    fn names_close_to_stages_get_a_hint() {
        let plan = plan(
            "FROM scratch AS build\nFROM scratch\nCOPY --from=buildr a b\nFROM scratch AS later\n",
        );
        assert_eq!(
            plan.stage_hint("buildr").as_deref(),
            Some("did you mean the stage `build`?")
        );
        assert!(plan.stage_hint("later").unwrap().contains("defined after"));
        assert_eq!(plan.stage_hint("busybox"), None);
        assert_eq!(plan.stage_hint("registry.io/build"), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn name_value_lines() {
        assert_eq!(
            name_values("A=1\n\n B =x=y\n"),
            Ok(vec![("A".into(), "1".into()), ("B".into(), "x=y".into())])
        );
        assert_eq!(name_values("A=1\n=2\n"), Err("=2"));
        assert_eq!(name_values("nope"), Err("nope"));
    }

    #[test]
    fn a_run_mount_from_a_stage_makes_it_needed() {
        let source = "FROM scratch AS tools\nCOPY a /a\nFROM scratch AS unused\n\
                      FROM scratch\nRUN --mount=type=bind,from=tools,target=/t true\n\
                      RUN --mount=type=bind,target=/x,from=registry.example/img:1 true\n";
        let dockerfile = crate::parser::parse(source).unwrap();
        let plan = Plan::new(&dockerfile, &[], &Platform::parse("linux/amd64").unwrap()).unwrap();
        assert_eq!(plan.needed(2), [true, false, true]);
        assert_eq!(plan.base_images(), ["registry.example/img:1"]);
        assert_eq!(mount_from("type=cache,target=/c"), None);
    }

    #[test]
    fn check_refuses_a_run_only_where_the_target_needs_it() {
        let source = "FROM scratch AS tools\nRUN make\nFROM scratch\nCOPY a b\n";
        assert!(check(source, &[], "linux/amd64", None, false).is_ok());
        let error = check(source, &[], "linux/amd64", Some("tools"), false).unwrap_err();
        assert!(
            error
                .in_file("Dockerfile")
                .starts_with("Dockerfile:2: RUN: RUN runs a command in the image, which this build is not granted"),
            "{}",
            error.in_file("Dockerfile")
        );
        assert!(check(source, &[], "linux/amd64", Some("nope"), false).is_err());
        // Granted, RUN is the build's to run.
        assert!(check(source, &[], "linux/amd64", Some("tools"), true).is_ok());
    }

    #[test]
    fn an_empty_from_says_how_to_fill_it() {
        let plan = plan("ARG BASE\nFROM ${BASE}\n");
        let error = plan.base(0).unwrap_err().to_string();
        assert!(error.contains("expands to an empty image name"), "{error}");
    }

    #[test]
    fn build_args_no_arg_declares_are_named() {
        let dockerfile =
            crate::parser::parse("ARG VERSION\nFROM scratch\nARG USED\nCOPY a b\n").unwrap();
        let args: Vec<(String, String)> = ["VERSION", "USED", "TYPO", "http_proxy"]
            .iter()
            .map(|name| ((*name).to_owned(), "1".to_owned()))
            .collect();
        let plan = Plan::new(&dockerfile, &args, &Platform::parse("linux/amd64").unwrap()).unwrap();
        assert_eq!(plan.unused_build_args(), ["TYPO"]);
    }

    #[test]
    fn errors_say_where() {
        let dockerfile = crate::parser::parse("ENV A=1\nFROM x\n").unwrap();
        let error =
            Plan::new(&dockerfile, &[], &Platform::parse("linux/amd64").unwrap()).unwrap_err();
        assert_eq!(
            error.in_file("Dockerfile"),
            "Dockerfile:1: ENV: the first instruction must be FROM (or ARG before it)"
        );
        let error = check(
            "FROM x\nCOPY --mount=type=secret a b\n",
            &[],
            "linux/amd64",
            None,
            false,
        )
        .unwrap_err();
        assert_eq!(
            error.in_file("ctx/Dockerfile"),
            "ctx/Dockerfile:2: COPY: unknown or unsupported flag `--mount=type=secret`"
        );
        let error = check("", &[], "linux/amd64", None, false).unwrap_err();
        assert_eq!(
            error.in_file("Dockerfile"),
            "Dockerfile: file with no instructions"
        );
    }
}
