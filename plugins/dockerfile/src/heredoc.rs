//! Here-documents (`RUN <<EOF`, `COPY <<EOF /dest`) as BuildKit's
//! Dockerfile frontend (1.4+) reads them: which words of an instruction
//! open one, what its delimiter is, whether its body is expanded, and
//! `<<-` tab stripping. The [`parser`](crate::parser) reads the bodies;
//! [`instructions`](crate::instructions) hands them to COPY, ADD and RUN.
//!
//! The rules are BuildKit's, lexer quirks included, so that a Dockerfile
//! finds the same documents (and so the same following instructions)
//! under kiln as under `docker build`.

use crate::shell::{self, Env, Lexing, ShellError};

/// One here-document: its delimiter and the lines up to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter with quotes removed (`EOF` for `<<'EOF'`): the line
    /// that ends the document, and the name of COPY's file.
    pub name: String,
    /// Whether the delimiter was unquoted, so that COPY expands
    /// variables in the body (RUN leaves that to the shell).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body's lines and from
    /// the delimiter line.
    pub chomp: bool,
    /// The body as written, each line with its line ending; empty until
    /// the parser has read it.
    pub content: String,
}

impl Heredoc {
    /// The body with `<<-`'s leading tabs removed: what COPY writes and
    /// what a RUN of just the document runs.
    pub fn body(&self) -> String {
        if self.chomp {
            chomp(&self.content)
        } else {
            self.content.clone()
        }
    }
}

/// `name`, a delimiter, as the name of the file a document becomes
/// (COPY's file, RUN's `#!` script): one path component, so that a
/// delimiter cannot place the file elsewhere.
pub fn file_name(name: &str) -> Result<&str, String> {
    if name.contains('/') || name == "." || name == ".." {
        return Err(format!(
            "the here-document `{name}` names the file it becomes: use a delimiter that is a file name"
        ));
    }
    Ok(name)
}

/// BuildKit's lexer settings for finding heredocs in a line: quotes and
/// escapes kept (a quoted `"<<EOF"` is not one), variables left alone.
const RAW_LINE: Lexing = Lexing {
    raw_quotes: true,
    raw_escapes: true,
    literal_quotes: false,
    keep_unset: true,
};

/// The heredoc `word` opens (`<<EOF`, `<<-"EOF"`, `3<<EOF`, `<< EOF`),
/// body empty; `None` for any other word. An unbalanced quote in the
/// delimiter is an error. The leading file descriptor is accepted and,
/// as in BuildKit, has no effect.
///
/// ```
/// use kiln_dockerfile::heredoc::parse_word;
///
/// let quoted = parse_word("<<-'EOF'").unwrap().unwrap();
/// assert_eq!((quoted.name.as_str(), quoted.expand, quoted.chomp), ("EOF", false, true));
/// assert_eq!(parse_word("<<EOF sh").unwrap(), None);
/// ```
pub fn parse_word(word: &str) -> Result<Option<Heredoc>, String> {
    let Some(operator) = word
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .strip_prefix("<<")
    else {
        return Ok(None);
    };
    let (chomp, rest) = match operator.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, operator),
    };
    // Go's `\s`: the blanks a `<<` may be followed by.
    let rest = rest.trim_start_matches([' ', '\t', '\n', '\u{c}', '\r']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let lex = |raw_quotes| {
        let lexing = Lexing {
            raw_quotes,
            keep_unset: true,
            ..Lexing::default()
        };
        shell::lex_words(rest, &NO_VARIABLES, '\\', lexing).map_err(|ShellError(e)| e)
    };
    let words = lex(false)?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    let raw = lex(true)?;
    let [raw] = raw.as_slice() else {
        return Err(format!(
            "the heredoc delimiter `{rest}` lexes differently with and without quotes"
        ));
    };
    // Quotes anywhere in the delimiter make it quoted.
    let quotes = |text: &str| text.chars().filter(|c| matches!(c, '\'' | '"')).count();
    Ok(Some(Heredoc {
        name: name.clone(),
        expand: quotes(name) == quotes(raw),
        chomp,
        content: String::new(),
    }))
}

/// The heredocs `line` (an instruction, continuations joined) opens, in
/// order. A line the lexer cannot read (an unbalanced quote) opens none.
pub(crate) fn in_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let Ok(words) = shell::lex_words(line, &NO_VARIABLES, '\\', RAW_LINE) else {
        return Ok(Vec::new());
    };
    let mut heredocs = Vec::new();
    for word in words {
        heredocs.extend(parse_word(&word)?);
    }
    Ok(heredocs)
}

/// `text` with the tabs that start each of its lines removed (`<<-`).
///
/// ```
/// assert_eq!(kiln_dockerfile::heredoc::chomp("\tone\n\t\ttwo\n  three\n"), "one\ntwo\n  three\n");
/// ```
pub fn chomp(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

/// How Linux runs a file starting with `#!INTERPRETER [ARGUMENT]`: the
/// interpreter, then the rest of the line as one argument when there is
/// one (blanks around it dropped, a `\r` kept, as the kernel does); the
/// file's path goes after them. `None` when the file does not start with
/// `#!` or the line names no interpreter. A RUN document with a `#!`
/// line runs this way under BuildKit (as an executable file), and a WASI
/// plugin cannot make a file executable, so kiln runs the interpreter as
/// the kernel would.
///
/// ```
/// use kiln_dockerfile::heredoc::interpreter;
///
/// let python = interpreter("#!/usr/bin/env python3\nprint(1)\n").unwrap();
/// assert_eq!(python, ["/usr/bin/env", "python3"]);
/// assert_eq!(interpreter("#!\necho hi\n"), None);
/// ```
pub fn interpreter(body: &str) -> Option<Vec<String>> {
    let line = body.strip_prefix("#!")?;
    let line = line.split('\n').next().unwrap_or_default();
    let line = line.trim_start_matches([' ', '\t']);
    let end = line.find([' ', '\t']).unwrap_or(line.len());
    let (program, argument) = line.split_at(end);
    if program.is_empty() {
        return None;
    }
    let argument = argument.trim_matches([' ', '\t']);
    let mut command = vec![program.to_owned()];
    if !argument.is_empty() {
        command.push(argument.to_owned());
    }
    Some(command)
}

/// Whether `line` (its line ending removed) ends `heredoc`.
pub(crate) fn ends(heredoc: &Heredoc, line: &str) -> bool {
    let line = if heredoc.chomp {
        line.trim_start_matches('\t')
    } else {
        line
    };
    line == heredoc.name
}

/// A COPY or ADD document's body with `$VAR` and `${VAR...}` expanded
/// from `env` as BuildKit does for an unquoted delimiter: quotes are
/// ordinary characters, `\` escapes the next character whatever the
/// Dockerfile's escape token, unset variables are empty.
///
/// ```
/// use kiln_dockerfile::heredoc::expand_body;
///
/// let env = vec![("WHO".to_owned(), "kiln".to_owned())];
/// assert_eq!(expand_body("'hi' $WHO \\$WHO\n", &env).unwrap(), "'hi' kiln $WHO\n");
/// ```
pub fn expand_body(body: &str, env: &dyn Env) -> Result<String, ShellError> {
    let lexing = Lexing {
        literal_quotes: true,
        ..Lexing::default()
    };
    shell::lex_word(body, env, '\\', lexing)
}

/// The empty scope heredoc words are lexed in: no variable is set.
const NO_VARIABLES: &[(String, String)] = &[];

#[cfg(test)]
mod tests {
    use super::*;

    fn named(word: &str) -> Option<(String, bool, bool)> {
        parse_word(word)
            .unwrap()
            .map(|h| (h.name, h.expand, h.chomp))
    }

    #[test]
    fn words_that_open_heredocs() {
        for word in [
            "<<EOF",
            "<<'EOF'",
            "<<\"EOF\"",
            "<<-EOF",
            "<<-'EOF'",
            "<<EO\"F\"",
            "<< EOF",
            "<<- EOF",
            "3<<EOF",
        ] {
            assert_eq!(named(word).map(|n| n.0).as_deref(), Some("EOF"), "{word}");
        }
        for word in [
            "", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh", "a<<EOF",
        ] {
            assert_eq!(named(word), None, "{word}");
        }
        for word in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(parse_word(word).is_err(), "{word}");
        }
    }

    #[test]
    fn quoting_any_part_disables_expansion() {
        assert_eq!(named("<<EOF"), Some(("EOF".into(), true, false)));
        assert_eq!(named("<<-'EOF'"), Some(("EOF".into(), false, true)));
        assert_eq!(named("<<eo'f'"), Some(("eof".into(), false, false)));
        assert_eq!(named("<<eo\\'f"), Some(("eo'f".into(), true, false)));
        assert_eq!(named("<<'e'o\\'f"), Some(("eo'f".into(), false, false)));
        assert_eq!(named("<<'one two'"), Some(("one two".into(), false, false)));
        assert_eq!(named("<<$EOF"), Some(("$EOF".into(), true, false)));
        assert_eq!(named("<< -EOF"), Some(("-EOF".into(), true, false)));
    }

    #[test]
    fn lines_open_heredocs_in_their_words() {
        let names = |line: &str| -> Vec<String> {
            in_line(line).unwrap().into_iter().map(|h| h.name).collect()
        };
        assert_eq!(names("RUN <<EOF <<EOF2"), ["EOF", "EOF2"]);
        assert_eq!(names("RUN <<  EOF  > foo"), ["EOF"]);
        assert_eq!(names("RUN 4<<EOF"), ["EOF"]);
        assert_eq!(names("COPY --chmod=755 <<a <<b /dest/"), ["a", "b"]);
        assert_eq!(names("RUN cat <<EOF > ${FILE%.txt}.md"), ["EOF"]);
        assert!(names("RUN '<<EOF'").is_empty());
        assert!(names("RUN \"<<EOF\"").is_empty());
        assert!(names("RUN echo \"unbalanced <<EOF").is_empty());
    }

    #[test]
    fn delimiters_name_files() {
        assert_eq!(file_name("file.txt"), Ok("file.txt"));
        for name in ["a/b", "..", ".", "/x"] {
            assert!(file_name(name).is_err(), "{name}");
        }
    }

    #[test]
    fn chomping_strips_leading_tabs_only() {
        assert_eq!(
            chomp("\thello\n\t\tworld\n  kept\n"),
            "hello\nworld\n  kept\n"
        );
        let heredoc = parse_word("<<-EOF").unwrap().unwrap();
        assert!(ends(&heredoc, "\t\tEOF"));
        assert!(!ends(&heredoc, " EOF"));
        assert!(!ends(&parse_word("<<EOF").unwrap().unwrap(), "\tEOF"));
    }

    #[test]
    fn interpreters_are_read_as_the_kernel_reads_them() {
        assert_eq!(interpreter("#!/bin/sh\necho"), Some(vec!["/bin/sh".into()]));
        assert_eq!(
            interpreter("#! /usr/bin/env  -S python3 -u \t\nprint()"),
            Some(vec!["/usr/bin/env".into(), "-S python3 -u".into()])
        );
        assert_eq!(interpreter("#!/bin/sh\r\n"), Some(vec!["/bin/sh\r".into()]));
        assert_eq!(interpreter("#!\necho"), None);
        assert_eq!(interpreter("#! \t\n"), None);
        assert_eq!(interpreter("echo #!/bin/sh"), None);
    }

    #[test]
    fn bodies_expand_with_quotes_left_alone() {
        let env = vec![("NAME".to_owned(), "kiln".to_owned())];
        assert_eq!(
            expand_body("hi $NAME '${NAME}' \"$UNSET\" \\$NAME C:\\x\n", &env).unwrap(),
            "hi kiln 'kiln' \"\" $NAME C:x\n"
        );
        assert!(expand_body("${NAME:?}${UNSET?required}", &env).is_err());
    }
}
