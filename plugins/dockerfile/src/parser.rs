//! Dockerfile parsing with BuildKit's rules: parser directives at the top
//! (`# escape=`, `# syntax=`, `# check=`), line continuations with the
//! escape token, comments (also inside continuations), leading `--flags`,
//! and per-instruction argument forms (JSON or shell, word lists,
//! `key=value` pairs, `ONBUILD` nesting), and the bodies of the
//! here-documents RUN, COPY and ADD open (see [`heredoc`](crate::heredoc)).

use std::fmt;

use crate::heredoc::{self, Heredoc};

/// One instruction (or, under `ONBUILD`, a nested one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The instruction keyword, lowercase (`from`, `run`, ...).
    pub instruction: String,
    /// The original keyword as written (`From`, `RUN`).
    pub original: String,
    /// Leading `--name` / `--name=value` flags, as written.
    pub flags: Vec<String>,
    /// The arguments, split as the instruction's form says.
    pub args: Vec<Arg>,
    /// Whether the arguments came from a JSON array (exec form).
    pub json: bool,
    /// The here-documents the instruction opens, bodies read, in order
    /// (of an `ONBUILD` trigger too, as BuildKit keeps them).
    pub heredocs: Vec<Heredoc>,
    /// First line of the instruction (1-based).
    pub start_line: usize,
    /// Last line, after continuations and here-document bodies.
    pub end_line: usize,
}

/// An argument of an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// A string argument.
    Text(String),
    /// A nested instruction (`ONBUILD RUN ...`).
    Instruction(Box<Node>),
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The instructions in order.
    pub instructions: Vec<Node>,
    /// The escape token in force (`\` or `` ` ``).
    pub escape: char,
    /// The `# syntax=` directive, if any.
    pub syntax: Option<String>,
}

/// Why a Dockerfile does not parse; names the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The line (1-based; 0 for the whole file).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

/// Parser directives, read only before the first non-directive line.
struct Directives {
    escape: char,
    syntax: Option<String>,
    seen: Vec<String>,
    done: bool,
}

impl Directives {
    /// Consider `line` as a directive; any other line ends the directives.
    fn consider(&mut self, line: &str, number: usize) -> Result<(), ParseError> {
        if self.done {
            return Ok(());
        }
        let Some((name, value)) = directive(line) else {
            self.done = true;
            return Ok(());
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "escape" | "syntax" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&name) {
            return Err(ParseError {
                line: number,
                message: format!("only one {name} parser directive can be used"),
            });
        }
        self.seen.push(name.clone());
        match name.as_str() {
            "escape" => {
                self.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(ParseError {
                            line: number,
                            message: format!(
                                "invalid escape token '{other}' does not match ` or \\"
                            ),
                        });
                    }
                };
            }
            "syntax" => self.syntax = Some(value),
            _ => {}
        }
        Ok(())
    }
}

/// `# name = value` → (name, value), by BuildKit's directive grammar.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let name_end = rest
        .char_indices()
        .find(|(_, c)| !c.is_ascii_alphanumeric())
        .map_or(rest.len(), |(i, _)| i);
    let name = &rest[..name_end];
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[name_end..].trim_start().strip_prefix('=')?.trim();
    (!value.is_empty()).then(|| (name.to_owned(), value.to_owned()))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Strip a trailing escape token (and the blanks after it): a
/// continuation, unless the escape token is itself escaped (`\\` at the
/// end). A line of just the escape token continues with nothing. Returns
/// the line and whether it is complete.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        Some(joined) if !joined.ends_with(escape) => (joined.to_owned(), false),
        _ => (line.to_owned(), true),
    }
}

/// Parse a Dockerfile.
pub fn parse(source: &str) -> Result<Dockerfile, ParseError> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let lines: Vec<&str> = split_lines(source);
    let mut directives = Directives {
        escape: '\\',
        syntax: None,
        seen: Vec::new(),
        done: false,
    };
    let mut instructions = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let raw = trim_newline(lines[index]);
        index += 1;
        let start_line = index;
        let first = raw.trim_start();
        directives.consider(first, start_line)?;
        if is_comment(first) {
            continue;
        }
        let (mut line, mut complete) = trim_continuation(first, directives.escape);
        if complete && line.trim().is_empty() {
            continue;
        }
        while !complete && index < lines.len() {
            let next = trim_newline(lines[index]);
            index += 1;
            directives.consider(next.trim_start(), index)?;
            if is_comment(next) || next.trim().is_empty() {
                continue;
            }
            let (part, done) = trim_continuation(next, directives.escape);
            line.push_str(&part);
            complete = done;
        }
        let mut node = node_from_line(&line, directives.escape).map_err(|message| ParseError {
            line: start_line,
            message,
        })?;
        if node.can_contain_heredoc() && line.contains("<<") {
            node.heredocs =
                read_heredocs(&line, &lines, &mut index).map_err(|message| ParseError {
                    line: start_line,
                    message,
                })?;
        }
        node.start_line = start_line;
        node.end_line = index;
        instructions.push(node);
    }
    if instructions.is_empty() {
        return Err(ParseError {
            line: 0,
            message: "file with no instructions".into(),
        });
    }
    Ok(Dockerfile {
        instructions,
        escape: directives.escape,
        syntax: directives.syntax,
    })
}

/// Lines as BuildKit's scanner yields them: split after each `\n`, line
/// endings kept (a here-document's body keeps them), no empty last line
/// after a final newline.
fn split_lines(source: &str) -> Vec<&str> {
    source.split_inclusive('\n').collect()
}

/// A line without its line ending (every trailing `\r` and `\n`).
fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// The here-documents `line` opens, each body read from `lines` at
/// `*index` up to its delimiter line, which `*index` ends past.
fn read_heredocs(line: &str, lines: &[&str], index: &mut usize) -> Result<Vec<Heredoc>, String> {
    let mut heredocs = heredoc::in_line(line)?;
    for heredoc in &mut heredocs {
        loop {
            let Some(next) = lines.get(*index) else {
                return Err(format!(
                    "unterminated heredoc: no line `{}` ends the here-document this instruction opens",
                    heredoc.name
                ));
            };
            *index += 1;
            if heredoc::ends(heredoc, trim_newline(next)) {
                break;
            }
            heredoc.content.push_str(next);
        }
    }
    Ok(heredocs)
}

/// The whitespace BuildKit splits instructions on.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

fn node_from_line(line: &str, escape: char) -> Result<Node, String> {
    let line = line.trim();
    let (keyword, rest) = match line.find(is_blank) {
        Some(i) => (&line[..i], line[i..].trim_start_matches(is_blank)),
        None => (line, ""),
    };
    let (rest, flags) = extract_flags(rest);
    let rest = rest.trim();
    let instruction = keyword.to_ascii_lowercase();
    let (args, json) = match instruction.as_str() {
        "run" | "cmd" | "entrypoint" | "shell" => maybe_json(rest)?,
        "add" | "copy" | "volume" => maybe_json_to_list(rest)?,
        "from" | "expose" => (whitespace_words(rest), false),
        "maintainer" | "user" | "workdir" | "stopsignal" => (single(rest), false),
        "env" => (name_values(rest, "ENV", escape)?, false),
        "label" => (name_values(rest, "LABEL", escape)?, false),
        "arg" => (
            words(rest, escape).into_iter().map(Arg::Text).collect(),
            false,
        ),
        "healthcheck" => health_check(rest)?,
        "onbuild" => {
            if rest.is_empty() {
                (Vec::new(), false)
            } else {
                // As BuildKit: a trigger cannot itself be ONBUILD. Refusing
                // it before recursing also bounds the recursion, which a
                // hostile Dockerfile could otherwise drive deep enough to
                // overflow the stack.
                let trigger = rest.split(is_blank).next().unwrap_or_default();
                if trigger.eq_ignore_ascii_case("onbuild") {
                    return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_owned());
                }
                let nested = node_from_line(rest, escape)?;
                (vec![Arg::Instruction(Box::new(nested))], false)
            }
        }
        _ => (Vec::new(), false),
    };
    Ok(Node {
        instruction,
        original: keyword.to_owned(),
        flags,
        args,
        json,
        heredocs: Vec::new(),
        start_line: 0,
        end_line: 0,
    })
}

/// Leading `--flag` words; a bare `--` ends them and is dropped.
fn extract_flags(line: &str) -> (&str, Vec<String>) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut flags = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && chars[i].1.is_whitespace() {
            i += 1;
        }
        let starts_flag = i + 1 < chars.len() && chars[i].1 == '-' && chars[i + 1].1 == '-';
        if !starts_flag {
            let at = chars.get(i).map_or(line.len(), |(p, _)| *p);
            return (&line[at..], flags);
        }
        let mut word = String::new();
        let mut blank_ok = false;
        let mut quote: Option<char> = None;
        while i < chars.len() {
            let c = chars[i].1;
            match quote {
                None if c.is_whitespace() => break,
                None if c == '\'' || c == '"' => {
                    quote = Some(c);
                    blank_ok = true;
                }
                None if c == '\\' => {
                    if i + 1 < chars.len() {
                        i += 1;
                        word.push(chars[i].1);
                    }
                }
                None => word.push(c),
                Some(q) if c == q => quote = None,
                Some(_) if c == '\\' => {
                    if i + 1 < chars.len() {
                        i += 1;
                        word.push(chars[i].1);
                    } else {
                        quote = None;
                    }
                }
                Some(_) => word.push(c),
            }
            i += 1;
        }
        if word == "--" {
            let at = chars.get(i).map_or(line.len(), |(p, _)| *p);
            return (&line[at..], flags);
        }
        if blank_ok || !word.is_empty() {
            flags.push(word);
        }
        if i >= chars.len() {
            return ("", flags);
        }
    }
}

fn single(rest: &str) -> Vec<Arg> {
    if rest.is_empty() {
        Vec::new()
    } else {
        vec![Arg::Text(rest.to_owned())]
    }
}

fn whitespace_words(rest: &str) -> Vec<Arg> {
    rest.split(is_blank)
        .filter(|w| !w.is_empty())
        .map(|w| Arg::Text(w.to_owned()))
        .collect()
}

/// A JSON array of strings, BuildKit's way: only the first JSON value is
/// read (trailing text is ignored); a non-array or invalid JSON is `None`;
/// an array with a non-string is an error.
fn json_strings(rest: &str) -> Result<Option<Vec<Arg>>, String> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
    let Some(Ok(serde_json::Value::Array(items))) = stream.next() else {
        return Ok(None);
    };
    items
        .into_iter()
        .map(|item| match item {
            serde_json::Value::String(s) => Ok(Arg::Text(s)),
            _ => Err("the JSON array must contain only strings".to_owned()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `RUN`/`CMD`/`ENTRYPOINT`/`SHELL`: a JSON array (exec form), else the
/// whole rest as one string (shell form).
fn maybe_json(rest: &str) -> Result<(Vec<Arg>, bool), String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    match json_strings(rest)? {
        Some(args) => Ok((args, true)),
        None => Ok((vec![Arg::Text(rest.to_owned())], false)),
    }
}

/// `ADD`/`COPY`/`VOLUME`: a JSON array, else whitespace-separated words.
fn maybe_json_to_list(rest: &str) -> Result<(Vec<Arg>, bool), String> {
    match json_strings(rest)? {
        Some(args) => Ok((args, true)),
        None => Ok((whitespace_words(rest), false)),
    }
}

/// `HEALTHCHECK`: the first word as written, then a maybe-JSON command.
fn health_check(rest: &str) -> Result<(Vec<Arg>, bool), String> {
    let Some(first_end) = rest
        .find(char::is_whitespace)
        .or((!rest.is_empty()).then_some(rest.len()))
    else {
        return Ok((Vec::new(), false));
    };
    let kind = &rest[..first_end];
    let (mut command, json) = maybe_json(rest[first_end..].trim_start())?;
    let mut args = vec![Arg::Text(kind.to_owned())];
    args.append(&mut command);
    Ok((args, json))
}

/// `ENV`/`LABEL`: `key=value...` pairs (quotes kept), or the legacy
/// `key value` form. Each pair is three arguments: key, value, separator.
fn name_values(rest: &str, keyword: &str, escape: char) -> Result<Vec<Arg>, String> {
    let words = words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let mut parts = rest.splitn(2, |c: char| is_blank(c));
        let key = parts.next().unwrap_or_default();
        let value = parts
            .next()
            .map(|v| v.trim_start_matches(is_blank))
            .unwrap_or_default();
        if value.is_empty() {
            return Err(format!("{keyword} must have two arguments"));
        }
        return Ok(vec![
            Arg::Text(key.to_owned()),
            Arg::Text(value.to_owned()),
            Arg::Text(String::new()),
        ]);
    }
    let mut args = Vec::new();
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in \"{word}\". Must be of the form: name=value"
            ));
        };
        args.extend([key, value, "="].map(|s| Arg::Text(s.to_owned())));
    }
    Ok(args)
}

/// Split on whitespace outside quotes, keeping quotes and escapes as
/// written (BuildKit's `parseWords`).
pub fn words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            None if c.is_whitespace() => {
                if in_word && (blank_ok || !word.is_empty()) {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                in_word = false;
                blank_ok = false;
            }
            None => {
                in_word = true;
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    blank_ok = true;
                    word.push(c);
                } else if c == escape {
                    if i + 1 < chars.len() {
                        word.push(c);
                        i += 1;
                        word.push(chars[i]);
                    }
                } else {
                    word.push(c);
                }
            }
            Some(q) => {
                if c == escape && q != '\'' {
                    if i + 1 < chars.len() {
                        word.push(c);
                        i += 1;
                        word.push(chars[i]);
                    } else {
                        quote = None;
                    }
                } else {
                    if c == q {
                        quote = None;
                    }
                    word.push(c);
                }
            }
        }
        i += 1;
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// Go's `strconv.Quote`, which BuildKit's dumps use.
fn go_quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Node {
    /// Whether BuildKit reads here-documents after this instruction: RUN,
    /// COPY and ADD in shell form, also as an ONBUILD trigger.
    fn can_contain_heredoc(&self) -> bool {
        let node = match self.args.first() {
            Some(Arg::Instruction(trigger)) => trigger,
            _ => self,
        };
        matches!(node.instruction.as_str(), "run" | "copy" | "add") && !node.json
    }

    /// BuildKit's `Node.Dump()` of this instruction, the form of its test
    /// vectors: `run "echo" "hi"`, with flags as a Go `%q` list.
    pub fn dump(&self) -> String {
        let mut out = self.instruction.clone();
        if !self.flags.is_empty() {
            let flags: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            out.push_str(&format!(" [{}]", flags.join(" ")));
        }
        for arg in &self.args {
            match arg {
                Arg::Text(text) => out.push_str(&format!(" {}", go_quote(text))),
                Arg::Instruction(node) => out.push_str(&format!(" ({})", node.dump())),
            }
        }
        out.trim().to_owned()
    }
}

impl Dockerfile {
    /// BuildKit's dump of the whole file: one `(instruction ...)` per line.
    pub fn dump(&self) -> String {
        self.instructions
            .iter()
            .map(|n| format!("({})\n", n.dump()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    /// Runs `f` on a stack about the size of a plugin's, so a recursion a
    /// hostile input drives would overflow here as it would there.
    fn on_small_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn chained_onbuild_is_refused_not_a_stack_overflow() {
        on_small_stack(|| {
            let source = format!("FROM scratch\n{}LABEL a=b\n", "ONBUILD ".repeat(20_000));
            let err = super::parse(&source).unwrap_err();
            assert!(err.to_string().contains("ONBUILD ONBUILD"), "{err}");
        });
    }

    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c\n\u{0}♥"), r#""a\"b\\c\n\x00♥""#);
    }

    #[test]
    fn flags_and_words() {
        assert_eq!(
            extract_flags("--user=me --doit=true foo /tmp/"),
            ("foo /tmp/", vec!["--user=me".into(), "--doit=true".into()])
        );
        assert_eq!(extract_flags("-- --not-a-flag"), (" --not-a-flag", vec![]));
        assert_eq!(
            words(r#"abc="123 456" def"#, '\\'),
            vec![r#"abc="123 456""#.to_owned(), "def".into()]
        );
    }

    /// (name, content, expand, chomp) of each heredoc of each instruction.
    fn heredocs(source: &str) -> Vec<Vec<(String, String, bool, bool)>> {
        parse(source)
            .unwrap()
            .instructions
            .iter()
            .map(|node| {
                node.heredocs
                    .iter()
                    .map(|h| (h.name.clone(), h.content.clone(), h.expand, h.chomp))
                    .collect()
            })
            .collect()
    }

    fn doc(
        name: &str,
        content: &str,
        expand: bool,
        chomp: bool,
    ) -> Vec<(String, String, bool, bool)> {
        vec![(name.into(), content.into(), expand, chomp)]
    }

    #[test]
    fn heredoc_bodies_are_read_as_buildkit_reads_them() {
        let source = "FROM alpine\n\
                      RUN <<EMPTY\nEMPTY\n\
                      RUN 3<<EMPTY2\nEMPTY2\n\
                      RUN \"<<NOHEREDOC\"\n\
                      RUN <<INDENT\n\tfoo\n\tbar\nINDENT\n\
                      RUN <<-UNINDENT\n\tbaz\n\tquux\n\tUNINDENT\n\
                      RUN <<-'NOEXPAND'\n\tdon't expand $NAME\nNOEXPAND\n\
                      RUN <<COMMENT\n# internal comment\necho hi # trailing\nCOMMENT\n\
                      RUN --mount=type=cache,target=/foo <<MOUNT\necho hello\nMOUNT\n\
                      COPY <<X <<Y /dest\nY\nX\nX\nY\n\
                      RUN <<COMPLEX python3\nprint('hello world')\nCOMPLEX\n\
                      ADD <<'one two' /dest\nbar\none two\n\
                      RUN <<  EOF  > foo\nEOF\n\
                      USER <<INVALID\n";
        let found = heredocs(source);
        let none = Vec::new();
        assert_eq!(
            found,
            [
                none.clone(),
                doc("EMPTY", "", true, false),
                doc("EMPTY2", "", true, false),
                none.clone(),
                doc("INDENT", "\tfoo\n\tbar\n", true, false),
                doc("UNINDENT", "\tbaz\n\tquux\n", true, true),
                doc("NOEXPAND", "\tdon't expand $NAME\n", false, true),
                doc(
                    "COMMENT",
                    "# internal comment\necho hi # trailing\n",
                    true,
                    false
                ),
                doc("MOUNT", "echo hello\n", true, false),
                [doc("X", "Y\n", true, false), doc("Y", "X\n", true, false)].concat(),
                doc("COMPLEX", "print('hello world')\n", true, false),
                doc("one two", "bar\n", false, false),
                doc("EOF", "", true, false),
                none,
            ]
        );
    }

    #[test]
    fn only_shell_form_run_copy_add_and_their_triggers_open_heredocs() {
        let source = "FROM scratch\nRUN [\"<<EOF\"]\nCOPY [\"<<EOF\", \"/x\"]\n\
                      CMD cat <<EOF\nONBUILD RUN <<EOF\necho $HOME\nEOF\n";
        let found = heredocs(source);
        assert!(found[1].is_empty() && found[2].is_empty() && found[3].is_empty());
        assert_eq!(found[4], doc("EOF", "echo $HOME\n", true, false));
    }

    #[test]
    fn lines_stay_right_after_heredoc_bodies() {
        let source = "FROM scratch\nCOPY <<a <<b \\\n  /dest/\none\na\ntwo\nb\n\nLABEL x=y\nRUN <<EOF\r\nline\r\nEOF\r\nUSER me";
        let file = parse(source).unwrap();
        let spans: Vec<(usize, usize)> = file
            .instructions
            .iter()
            .map(|n| (n.start_line, n.end_line))
            .collect();
        assert_eq!(spans, [(1, 1), (2, 7), (9, 9), (10, 12), (13, 13)]);
        // The body keeps its line endings, as BuildKit's does.
        assert_eq!(file.instructions[3].heredocs[0].content, "line\r\n");
    }

    #[test]
    fn an_unterminated_heredoc_names_its_instruction() {
        let err = parse("FROM scratch\n\nRUN <<EOF cat\necho\n EOF\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(
            err.to_string()
                .starts_with("line 3: unterminated heredoc: no line `EOF`"),
            "{err}"
        );
        let err = parse("FROM scratch\nCOPY <<a <<b /\na\n").unwrap_err();
        assert!(err.to_string().contains("`b`"), "{err}");
    }
}
