//! Typed instructions over the [`parser`](crate::parser)'s nodes, as
//! BuildKit layers `instructions` over `parser`: each instruction's flags
//! checked and parsed, its form (exec or shell) decided, its arguments
//! named. Words are kept as written: variables are expanded only when a
//! stage is evaluated, with the scope in force there. Here-documents go
//! to COPY and ADD as files ([`Copy::documents`]) and to RUN as BuildKit
//! runs them ([`Run::program`]).

use std::fmt;

use crate::heredoc::{self, Heredoc};
use crate::parser::{self, Arg, Node};

/// An instruction and where it stands in the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    /// The keyword as written (`From`, `COPY`), for messages.
    pub keyword: String,
    /// Its first line (1-based).
    pub start_line: usize,
    /// Its last line, after continuations.
    pub end_line: usize,
    /// What it says.
    pub value: T,
}

/// One typed instruction of a Dockerfile.
pub type Instruction = Located<Kind>;

impl<T> Located<T> {
    /// An error about this instruction: its line and keyword, then
    /// `message`, as every Dockerfile message reads.
    pub fn error(&self, message: impl fmt::Display) -> InstructionError {
        InstructionError {
            line: self.start_line,
            keyword: self.keyword.to_uppercase(),
            message: message.to_string(),
        }
    }
}

/// What an instruction does, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `FROM`: starts a stage.
    From(From),
    /// `ARG NAME[=DEFAULT] ...`.
    Arg(Vec<ArgDecl>),
    /// `COPY`.
    Copy(Copy),
    /// `ADD`: a [`Copy`] that also extracts local archives.
    Add(Copy),
    /// `ENV NAME=VALUE ...`, pairs in order.
    Env(Vec<(String, String)>),
    /// `LABEL NAME=VALUE ...`, pairs in order.
    Label(Vec<(String, String)>),
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(Command),
    /// `ENTRYPOINT`.
    Entrypoint(Command),
    /// `WORKDIR DIR`.
    Workdir(String),
    /// `USER USER[:GROUP]`.
    User(String),
    /// `EXPOSE PORT[/PROTO] ...`, each word as written (see
    /// [`expose_ports`]).
    Expose(Vec<String>),
    /// `VOLUME PATH ...`.
    Volume(Vec<String>),
    /// `SHELL ["executable", "parameters"]`.
    Shell(Vec<String>),
    /// `STOPSIGNAL SIGNAL`.
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `ONBUILD INSTRUCTION`: the trigger, when one is given.
    Onbuild(Option<Box<Instruction>>),
    /// `MAINTAINER NAME`.
    Maintainer(String),
}

/// `FROM [--platform=PLATFORM] IMAGE [AS NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The image, a stage name or `scratch`, as written.
    pub image: String,
    /// The stage's name (`AS NAME`).
    pub name: Option<String>,
    /// `--platform`, as written.
    pub platform: Option<String>,
}

/// One declaration of an `ARG` instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The variable.
    pub name: String,
    /// Its default, as written.
    pub default: Option<String>,
}

/// `COPY`/`ADD` with their flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// `--from`: a stage name or index, or an image (COPY only).
    pub from: Option<String>,
    /// `--chown=USER[:GROUP]`.
    pub chown: Option<String>,
    /// `--chmod=MODE`, octal as written.
    pub chmod: Option<String>,
    /// `--link` (layers are always independent here; accepted for
    /// compatibility).
    pub link: bool,
    /// `--checksum` (ADD only; accepted, not checked: URLs are refused).
    pub checksum: Option<String>,
    /// The sources from the context, a stage or an image, as written.
    pub sources: Vec<String>,
    /// Files written from here-documents (`COPY <<EOF /dest`), copied
    /// after the sources as BuildKit does: each named by its delimiter,
    /// holding its [`body`](Heredoc::body).
    pub documents: Vec<Heredoc>,
    /// The destination, as written.
    pub dest: String,
}

/// `RUN [--mount=...] [--network=...] [--security=...] command`: valid
/// in any Dockerfile, whether or not its stage is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command.
    pub command: Command,
    /// The here-documents of a shell-form command, bodies as written
    /// (see [`Run::program`]).
    pub heredocs: Vec<Heredoc>,
    /// `--mount` specifications, as written.
    pub mounts: Vec<String>,
    /// `--network`.
    pub network: Option<String>,
    /// `--security`.
    pub security: Option<String>,
}

/// A command in exec or shell form (`RUN`, `CMD`, `ENTRYPOINT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The JSON form: the arguments, run as they are.
    Exec(Vec<String>),
    /// The shell form: one line for the stage's `SHELL` to run.
    Shell(String),
}

/// What a RUN executes, once its here-documents are accounted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// The exec form: the arguments, run as they are.
    Exec(Vec<String>),
    /// Text for the stage's `SHELL` to run, as its last argument.
    Shell(String),
    /// A document whose `#!` line names an interpreter: BuildKit writes
    /// `body` as the executable file `/dev/pipes/NAME`, mounted for the
    /// command only, and the stage's `SHELL` runs that path, so that the
    /// kernel hands the file to the interpreter.
    Script {
        /// The file's name: the document's delimiter.
        name: String,
        /// Its content, `<<-` tabs stripped.
        body: String,
        /// What the kernel runs: the interpreter and its optional
        /// argument (see [`heredoc::interpreter`]); the file's path
        /// follows them.
        interpreter: Vec<String>,
    },
}

impl Run {
    /// What runs, as BuildKit's `dispatchRun` decides: without heredocs
    /// the command as it is. When the whole command is one heredoc
    /// (`RUN <<EOF`), its body runs, through the shell (for shells
    /// without heredoc support), or as a script file when it starts with
    /// `#!` (a `#!` line naming no interpreter leaves the file to the
    /// shell, which runs it as the body). Otherwise (`RUN python3 <<EOF`,
    /// `RUN cat <<A <<B > f`) the line and the documents, each followed
    /// by its delimiter, go to the shell as one text, so the shell itself
    /// feeds them to the command.
    /// The delimiter's quoting does not expand anything here: expanding a
    /// body is the shell's business.
    ///
    /// ```
    /// use kiln_dockerfile::instructions::{self, Kind, Program};
    ///
    /// let source = "FROM scratch\nRUN python3 <<EOF\nprint(1)\nEOF\n";
    /// let file = kiln_dockerfile::parser::parse(source).unwrap();
    /// let Kind::Run(run) = &instructions::convert(&file).unwrap()[1].value else {
    ///     unreachable!()
    /// };
    /// assert_eq!(run.program(), Program::Shell("python3 <<EOF\nprint(1)\nEOF".into()));
    /// ```
    pub fn program(&self) -> Program {
        let line = match &self.command {
            Command::Exec(args) => return Program::Exec(args.clone()),
            Command::Shell(line) => line,
        };
        let Some(first) = self.heredocs.first() else {
            return Program::Shell(line.clone());
        };
        if let Ok(Some(_)) = heredoc::parse_word(line) {
            let body = first.body();
            return match heredoc::interpreter(&body) {
                Some(interpreter) => Program::Script {
                    name: first.name.clone(),
                    body,
                    interpreter,
                },
                None => Program::Shell(body),
            };
        }
        let mut text = line.clone();
        for document in &self.heredocs {
            text.push('\n');
            text.push_str(&document.content);
            text.push_str(&document.name);
        }
        Program::Shell(text)
    }
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    /// `HEALTHCHECK [OPTIONS] CMD command`. Durations are nanoseconds;
    /// absent or zero means the runtime's default.
    Check {
        /// The command.
        command: Command,
        /// `--interval`.
        interval: Option<i64>,
        /// `--timeout`.
        timeout: Option<i64>,
        /// `--start-period`.
        start_period: Option<i64>,
        /// `--start-interval`.
        start_interval: Option<i64>,
        /// `--retries`.
        retries: Option<i64>,
    },
}

/// Why an instruction is not valid: its line, keyword and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}: {keyword}: {message}")]
pub struct InstructionError {
    /// The instruction's first line.
    pub line: usize,
    /// Its keyword, upper case.
    pub keyword: String,
    /// What is wrong.
    pub message: String,
}

/// The typed instructions of a parsed Dockerfile.
pub fn convert(dockerfile: &parser::Dockerfile) -> Result<Vec<Instruction>, InstructionError> {
    dockerfile
        .instructions
        .iter()
        .map(Instruction::new)
        .collect()
}

impl Instruction {
    /// Type one parser node.
    pub fn new(node: &Node) -> Result<Instruction, InstructionError> {
        let at = Located {
            keyword: node.original.clone(),
            start_line: node.start_line,
            end_line: node.end_line,
            value: (),
        };
        let kind = Typing { node, at: &at }.kind()?;
        Ok(Located {
            keyword: at.keyword,
            start_line: at.start_line,
            end_line: at.end_line,
            value: kind,
        })
    }
}

/// One node being typed.
struct Typing<'a> {
    node: &'a Node,
    at: &'a Located<()>,
}

impl Typing<'_> {
    fn kind(&self) -> Result<Kind, InstructionError> {
        let words = self.texts();
        let flags = self.flags()?;
        let first = || words.first().cloned().unwrap_or_default();
        Ok(match self.node.instruction.as_str() {
            "from" => Kind::From(self.from(&words, flags)?),
            "arg" => Kind::Arg(
                words
                    .iter()
                    .map(|word| match word.split_once('=') {
                        Some((name, value)) => ArgDecl {
                            name: name.to_owned(),
                            default: Some(value.to_owned()),
                        },
                        None => ArgDecl {
                            name: word.clone(),
                            default: None,
                        },
                    })
                    .collect(),
            ),
            "copy" => Kind::Copy(self.copy(&words, flags)?),
            "add" => Kind::Add(self.copy(&words, flags)?),
            "env" => Kind::Env(pairs(&words)),
            "label" => Kind::Label(pairs(&words)),
            "run" => Kind::Run(self.run(&words, flags)),
            "cmd" => Kind::Cmd(self.command(&words)),
            "entrypoint" => Kind::Entrypoint(self.command(&words)),
            "workdir" => Kind::Workdir(first()),
            "user" => Kind::User(first()),
            "stopsignal" => Kind::StopSignal(first()),
            "maintainer" => Kind::Maintainer(words.join(" ")),
            "expose" => Kind::Expose(words),
            "volume" => Kind::Volume(words),
            "shell" if self.node.json => Kind::Shell(words),
            "shell" => {
                return Err(self
                    .at
                    .error("takes a JSON array, e.g. SHELL [\"/bin/sh\", \"-c\"]"));
            }
            "healthcheck" => Kind::Healthcheck(self.healthcheck(&words, flags)?),
            "onbuild" => Kind::Onbuild(self.trigger()?),
            other => {
                return Err(self
                    .at
                    .error(format!("`{other}` is not a Dockerfile instruction")));
            }
        })
    }

    /// The text arguments.
    fn texts(&self) -> Vec<String> {
        self.node
            .args
            .iter()
            .filter_map(|a| match a {
                Arg::Text(t) => Some(t.clone()),
                Arg::Instruction(_) => None,
            })
            .collect()
    }

    /// The flags as (name, value) pairs, refused unless the instruction
    /// takes them.
    fn flags(&self) -> Result<Vec<(&str, Option<&str>)>, InstructionError> {
        let allowed: &[&str] = match self.node.instruction.as_str() {
            "from" => &["platform"],
            "copy" => &["from", "chown", "chmod", "link"],
            "add" => &["chown", "chmod", "link", "checksum"],
            "run" => &["mount", "network", "security"],
            "healthcheck" => &[
                "interval",
                "timeout",
                "start-period",
                "start-interval",
                "retries",
            ],
            _ => &[],
        };
        let mut flags = Vec::new();
        for flag in &self.node.flags {
            let (name, value) = flag_value(flag);
            if !allowed.contains(&name) {
                let message = if self.node.instruction == "from" {
                    format!("unknown flag `{flag}`")
                } else {
                    format!("unknown or unsupported flag `{flag}`")
                };
                return Err(self.at.error(message));
            }
            flags.push((name, value));
        }
        Ok(flags)
    }

    fn from(
        &self,
        words: &[String],
        flags: Vec<(&str, Option<&str>)>,
    ) -> Result<From, InstructionError> {
        let image = words
            .first()
            .ok_or_else(|| self.at.error("names no image"))?
            .clone();
        let mut platform = None;
        for (name, value) in flags {
            match value {
                Some(value) => platform = Some(value.to_owned()),
                None => return Err(self.at.error(format!("unknown flag `--{name}`"))),
            }
        }
        let name = match words {
            [_, r#as, name] if r#as.eq_ignore_ascii_case("as") => Some(name.clone()),
            _ => None,
        };
        Ok(From {
            image,
            name,
            platform,
        })
    }

    fn copy(
        &self,
        words: &[String],
        flags: Vec<(&str, Option<&str>)>,
    ) -> Result<Copy, InstructionError> {
        let mut copy = Copy {
            from: None,
            chown: None,
            chmod: None,
            link: false,
            checksum: None,
            sources: Vec::new(),
            documents: Vec::new(),
            dest: String::new(),
        };
        for (name, value) in flags {
            let value = value.map(str::to_owned);
            match (name, value) {
                ("link", value) => copy.link = value.is_none_or(|v| v != "false"),
                ("checksum", value) => copy.checksum = value,
                (name, None) => return Err(self.at.error(format!("--{name} needs a value"))),
                ("from", value) => copy.from = value,
                ("chown", value) => copy.chown = value,
                (_, value) => copy.chmod = value,
            }
        }
        let (sources, dest) = match words {
            [sources @ .., dest] if !sources.is_empty() => (sources, dest),
            _ => return Err(self.at.error("needs at least one source and a destination")),
        };
        // As BuildKit: a word that does not read as a heredoc is a path.
        let document = |word: &str| heredoc::parse_word(word).ok().flatten();
        if document(dest).is_some() {
            return Err(self.at.error(format!(
                "cannot accept a heredoc as a destination (`{dest}`): name a path"
            )));
        }
        for source in sources {
            match document(source) {
                Some(mut document) => {
                    // The body the parser read under that delimiter (the
                    // last one, when a line repeats it, as in BuildKit).
                    let mut read = self.node.heredocs.iter().rev();
                    if let Some(body) = read.find(|h| h.name == document.name) {
                        document.content.clone_from(&body.content);
                    }
                    copy.documents.push(document);
                }
                None => copy.sources.push(source.clone()),
            }
        }
        copy.dest = dest.clone();
        Ok(copy)
    }

    fn run(&self, words: &[String], flags: Vec<(&str, Option<&str>)>) -> Run {
        let mut run = Run {
            command: self.command(words),
            heredocs: self.node.heredocs.clone(),
            mounts: Vec::new(),
            network: None,
            security: None,
        };
        for (name, value) in flags {
            let value = value.unwrap_or_default().to_owned();
            match name {
                "mount" => run.mounts.push(value),
                "network" => run.network = Some(value),
                _ => run.security = Some(value),
            }
        }
        run
    }

    /// The exec form for a JSON array, else the shell form.
    fn command(&self, words: &[String]) -> Command {
        if self.node.json {
            Command::Exec(words.to_vec())
        } else {
            Command::Shell(words.join(" "))
        }
    }

    fn healthcheck(
        &self,
        words: &[String],
        flags: Vec<(&str, Option<&str>)>,
    ) -> Result<Healthcheck, InstructionError> {
        let kind = words.first().map(|w| w.to_uppercase()).unwrap_or_default();
        if kind == "NONE" {
            if words.len() > 1 || !flags.is_empty() {
                return Err(self.at.error("NONE takes no arguments or options"));
            }
            return Ok(Healthcheck::None);
        }
        if kind != "CMD" {
            return Err(self.at.error("expects CMD or NONE"));
        }
        let mut durations = [None; 4];
        let mut retries = None;
        for (name, value) in flags {
            let value = value.unwrap_or_default();
            let slot = match name {
                "interval" => 0,
                "timeout" => 1,
                "start-period" => 2,
                "start-interval" => 3,
                _ => {
                    retries = Some(value.parse().map_err(|_| {
                        self.at
                            .error(format!("--retries `{value}` is not a number"))
                    })?);
                    continue;
                }
            };
            let nanos =
                parse_duration(value).map_err(|e| self.at.error(format!("--{name}: {e}")))?;
            durations[slot] = (nanos != 0).then_some(nanos);
        }
        let [interval, timeout, start_period, start_interval] = durations;
        Ok(Healthcheck::Check {
            command: self.command(&words[1..]),
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        })
    }

    /// ONBUILD's trigger, typed, at ONBUILD's lines.
    fn trigger(&self) -> Result<Option<Box<Instruction>>, InstructionError> {
        let Some(Arg::Instruction(nested)) = self.node.args.first() else {
            return Ok(None);
        };
        let mut nested = (**nested).clone();
        nested.start_line = self.node.start_line;
        nested.end_line = self.node.end_line;
        nested.heredocs = self.node.heredocs.clone();
        Instruction::new(&nested).map(|i| Some(Box::new(i)))
    }
}

/// ENV and LABEL arguments as key/value pairs (the parser gives triples:
/// key, value, and the separator as written).
fn pairs(words: &[String]) -> Vec<(String, String)> {
    words
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

/// EXPOSE `80`, `53/udp`, `8000-8002/tcp` (one expanded word) → `80/tcp`,
/// ... as the config's `ExposedPorts` keys.
pub fn expose_ports(spec: &str) -> Result<Vec<String>, String> {
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

/// A Go duration (`30s`, `1m30s`, `500ms`) in nanoseconds, as HEALTHCHECK
/// takes them.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<Kind, InstructionError> {
        let dockerfile = parser::parse(&format!("FROM scratch\n{line}\n")).unwrap();
        let instructions = convert(&dockerfile)?;
        Ok(instructions[1].value.clone())
    }

    #[test]
    fn flags_and_forms_are_typed() {
        assert_eq!(
            one("COPY --from=build --chown=app:app --link a b /dst/").unwrap(),
            Kind::Copy(Copy {
                from: Some("build".into()),
                chown: Some("app:app".into()),
                chmod: None,
                link: true,
                checksum: None,
                sources: vec!["a".into(), "b".into()],
                documents: Vec::new(),
                dest: "/dst/".into(),
            })
        );
        assert_eq!(
            one("CMD [\"a\", \"b\"]").unwrap(),
            Kind::Cmd(Command::Exec(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            one("ENTRYPOINT run it").unwrap(),
            Kind::Entrypoint(Command::Shell("run it".into()))
        );
        assert_eq!(
            one("HEALTHCHECK --interval=1m30s --retries=3 CMD [\"check\"]").unwrap(),
            Kind::Healthcheck(Healthcheck::Check {
                command: Command::Exec(vec!["check".into()]),
                interval: Some(90_000_000_000),
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: Some(3),
            })
        );
        let source = "FROM --platform=$BUILDPLATFORM base AS build\nONBUILD ARG X=1\n";
        let parsed = convert(&parser::parse(source).unwrap()).unwrap();
        assert_eq!(
            parsed[0].value,
            Kind::From(From {
                image: "base".into(),
                name: Some("build".into()),
                platform: Some("$BUILDPLATFORM".into()),
            })
        );
        let Kind::Onbuild(Some(trigger)) = &parsed[1].value else {
            panic!("{:?}", parsed[1]);
        };
        assert_eq!(
            trigger.value,
            Kind::Arg(vec![ArgDecl {
                name: "X".into(),
                default: Some("1".into())
            }])
        );
    }

    #[test]
    fn errors_name_line_keyword_and_fix() {
        let error = |line: &str| one(line).unwrap_err().to_string();
        assert_eq!(
            error("copy --mount=x a b"),
            "2: COPY: unknown or unsupported flag `--mount=x`"
        );
        assert_eq!(error("COPY --from a b"), "2: COPY: --from needs a value");
        assert_eq!(
            error("COPY a"),
            "2: COPY: needs at least one source and a destination"
        );
        assert_eq!(
            error("SHELL /bin/sh"),
            "2: SHELL: takes a JSON array, e.g. SHELL [\"/bin/sh\", \"-c\"]"
        );
        assert_eq!(
            error("HEALTHCHECK NONE x"),
            "2: HEALTHCHECK: NONE takes no arguments or options"
        );
        assert_eq!(
            error("FETCH x"),
            "2: FETCH: `fetch` is not a Dockerfile instruction"
        );
        assert_eq!(
            error("FROM --pull=always x"),
            "2: FROM: unknown flag `--pull=always`"
        );
        assert!(one("RUN --privileged x").is_err());
        let Ok(Kind::Run(run)) = one("RUN --mount=type=cache,target=/c --network=none make") else {
            panic!("RUN is an instruction whether or not it can run");
        };
        assert_eq!(run.command, Command::Shell("make".into()));
        assert_eq!(run.mounts, ["type=cache,target=/c"]);
    }

    #[test]
    fn small_grammars() {
        assert_eq!(parse_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(
            expose_ports("8000-8001/UDP").unwrap(),
            ["8000/udp", "8001/udp"]
        );
        assert_eq!(expose_ports("80").unwrap(), ["80/tcp"]);
        assert!(expose_ports("http").is_err());
        assert_eq!(flag_value("--from=build"), ("from", Some("build")));
    }

    fn program(source: &str) -> Program {
        let file = parser::parse(&format!("FROM scratch\n{source}")).unwrap();
        match &convert(&file).unwrap()[1].value {
            Kind::Run(run) => run.program(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn run_heredocs_become_what_buildkit_runs() {
        assert_eq!(program("RUN ls /\n"), Program::Shell("ls /".into()));
        assert_eq!(
            program("RUN [\"<<EOF\"]\n"),
            Program::Exec(vec!["<<EOF".into()])
        );
        // The whole command is one document: its body runs.
        assert_eq!(
            program("RUN <<EOF\nls /\nwhoami\nEOF\n"),
            Program::Shell("ls /\nwhoami\n".into())
        );
        assert_eq!(
            program("RUN <<-'EOF'\n\techo $HOME\n\tEOF\n"),
            Program::Shell("echo $HOME\n".into())
        );
        assert_eq!(
            program("RUN <<py\n#!/usr/bin/env python3\nprint(1)\npy\n"),
            Program::Script {
                name: "py".into(),
                body: "#!/usr/bin/env python3\nprint(1)\n".into(),
                interpreter: vec!["/usr/bin/env".into(), "python3".into()],
            }
        );
        assert_eq!(
            program("RUN <<EOF\n#!\necho hi\nEOF\n"),
            Program::Shell("#!\necho hi\n".into())
        );
        // Anything else: the line and the documents, for the shell.
        assert_eq!(
            program("RUN <<'EOF' | python\nprint(\"hello\")\nEOF\n"),
            Program::Shell("<<'EOF' | python\nprint(\"hello\")\nEOF".into())
        );
        assert_eq!(
            program("RUN --network=none cat <<-a <<b > /x\n\tone\n\ta\ntwo\nb\n"),
            Program::Shell("cat <<-a <<b > /x\n\tone\na\ntwo\nb".into())
        );
    }

    #[test]
    fn copy_heredocs_become_documents() {
        let Kind::Copy(copy) =
            one("COPY --chmod=755 <<-EOF foo.txt <<'raw' /bar/\n\tTESTING\nEOF\n$x\nraw").unwrap()
        else {
            panic!();
        };
        assert_eq!(copy.sources, ["foo.txt"]);
        assert_eq!(copy.dest, "/bar/");
        let documents: Vec<(&str, String, bool)> = copy
            .documents
            .iter()
            .map(|d| (d.name.as_str(), d.body(), d.expand))
            .collect();
        assert_eq!(
            documents,
            [
                ("EOF", "TESTING\n".to_owned(), true),
                ("raw", "$x\n".to_owned(), false)
            ]
        );
        let error = one("COPY /foo <<EOF\nEOF").unwrap_err().to_string();
        assert_eq!(
            error,
            "2: COPY: cannot accept a heredoc as a destination (`<<EOF`): name a path"
        );
    }
}
