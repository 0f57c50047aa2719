//! Shell-word processing as BuildKit does it for Dockerfile arguments:
//! quote removal, escapes, and `$VAR`, `${VAR}`, `${VAR:-word}`,
//! `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`, `${VAR?msg}`,
//! `${VAR:?msg}` expansion. Positional and special parameters (`$1`,
//! `$@`, `$$`, ...) expand to nothing, as no shell runs.
//!
//! BuildKit's lexer also has switches its heredoc handling depends on
//! ([`Lexing`]): the [`heredoc`](crate::heredoc) module finds and names
//! here-documents with them, and expands a COPY document's body.

use std::fmt;

/// A word that cannot be processed (unbalanced quote, bad substitution,
/// a required variable unset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellError(pub String);

impl fmt::Display for ShellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ShellError {}

/// Where variable values come from.
pub trait Env {
    /// The value of `name`, or `None` when unset (set-but-empty is `Some("")`).
    fn get(&self, name: &str) -> Option<String>;
}

impl Env for [(String, String)] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// A borrowed scope (`&[(name, value)]`), passed as `&dyn Env` without
/// copying it.
impl<E: Env + ?Sized> Env for &E {
    fn get(&self, name: &str) -> Option<String> {
        (**self).get(name)
    }
}

impl Env for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<String> {
        Env::get(self.as_slice(), name)
    }
}

/// Expand `word` into one string (quotes removed, variables expanded).
pub fn process_word(word: &str, env: &dyn Env, escape: char) -> Result<String, ShellError> {
    lex_word(word, env, escape, Lexing::default())
}

/// Expand `word` into words: unquoted expansions are split on whitespace.
pub fn process_words(word: &str, env: &dyn Env, escape: char) -> Result<Vec<String>, ShellError> {
    lex_words(word, env, escape, Lexing::default())
}

/// BuildKit's `Lex` switches beyond the escape token. Heredocs need them:
/// a delimiter is found in the raw words of its line and is quoted when
/// its words with and without quotes differ; a COPY body is expanded
/// with quotes left alone.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Lexing {
    /// Quotes stay in the result (`RawQuotes`).
    pub(crate) raw_quotes: bool,
    /// Escape tokens stay in the result (`RawEscapes`).
    pub(crate) raw_escapes: bool,
    /// Quotes are ordinary characters (`SkipProcessQuotes`).
    pub(crate) literal_quotes: bool,
    /// A reference to an unset variable stays as written (`SkipUnsetEnv`).
    pub(crate) keep_unset: bool,
}

/// [`process_word`] with BuildKit's switches.
pub(crate) fn lex_word(
    word: &str,
    env: &dyn Env,
    escape: char,
    lexing: Lexing,
) -> Result<String, ShellError> {
    Lexer::new(word, env, escape, lexing)
        .process(None)
        .map(|(word, _)| word)
}

/// [`process_words`] with BuildKit's switches.
pub(crate) fn lex_words(
    word: &str,
    env: &dyn Env,
    escape: char,
    lexing: Lexing,
) -> Result<Vec<String>, ShellError> {
    Lexer::new(word, env, escape, lexing)
        .process(None)
        .map(|(_, words)| words)
}

/// Words being built, split on unquoted whitespace.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, text: &str) {
        for c in text.chars() {
            self.add_char(c);
        }
    }

    fn add_raw_string(&mut self, text: &str) {
        self.word.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    position: usize,
    env: &'a dyn Env,
    escape: char,
    lexing: Lexing,
    /// How many `${name:-word}` operands enclose the current position.
    depth: usize,
}

/// The deepest `${a:-${b:-...}}` nesting expanded. Each level recurses, and
/// a hostile Dockerfile could otherwise nest deep enough to overflow the
/// stack; real ones nest two or three levels.
const MAX_NESTING: usize = 64;

fn error(message: &str) -> ShellError {
    ShellError(message.to_owned())
}

impl<'a> Lexer<'a> {
    fn new(word: &str, env: &'a dyn Env, escape: char, lexing: Lexing) -> Self {
        Lexer {
            chars: word.chars().collect(),
            position: 0,
            env,
            escape,
            lexing,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.position).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.position += 1;
        }
        c
    }

    /// Process until the end, or until `stop` (consumed).
    fn process(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), ShellError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            let quote = matches!(c, '\'' | '"') && !self.lexing.literal_quotes;
            match c {
                '\'' if quote => {
                    let text = self.single_quoted()?;
                    result.push_str(&text);
                    words.add_raw_string(&text);
                }
                '"' if quote => {
                    let text = self.double_quoted()?;
                    result.push_str(&text);
                    words.add_raw_string(&text);
                }
                '$' => {
                    let text = self.dollar()?;
                    result.push_str(&text);
                    words.add_string(&text);
                }
                '<' => {
                    let text = self.angle();
                    result.push_str(&text);
                    words.add_raw_string(&text);
                }
                _ => {
                    self.next();
                    if c == self.escape {
                        // An escape makes the next character literal; at
                        // the end of the word it is dropped (kept, with
                        // the escape, when escapes are raw).
                        if self.lexing.raw_escapes {
                            words.add_raw_char(c);
                            result.push(c);
                        }
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(c);
                        result.push(c);
                    }
                }
            }
        }
        match stop {
            Some(stop) => Err(ShellError(format!(
                "unexpected end of statement while looking for matching {stop}"
            ))),
            None => Ok((result, words.finish())),
        }
    }

    /// `<`, or `<<` with the blanks after it kept in the same word, as
    /// BuildKit reads a heredoc operator (`<< EOF` is one word).
    fn angle(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_owned();
        }
        self.next();
        let mut text = "<<".to_owned();
        while let Some(blank @ (' ' | '\t' | '\r')) = self.peek() {
            self.next();
            text.push(blank);
        }
        text
    }

    /// The quote `c`, when quotes are raw.
    fn raw_quote(&self, text: &mut String, c: char) {
        if self.lexing.raw_quotes {
            text.push(c);
        }
    }

    /// `'...'`: everything literal; no escapes.
    fn single_quoted(&mut self) -> Result<String, ShellError> {
        self.next();
        let mut text = String::new();
        self.raw_quote(&mut text, '\'');
        loop {
            match self.next() {
                None => {
                    return Err(error(
                        "unexpected end of statement while looking for matching single-quote",
                    ));
                }
                Some('\'') => {
                    self.raw_quote(&mut text, '\'');
                    return Ok(text);
                }
                Some(c) => text.push(c),
            }
        }
    }

    /// `"..."`: literal except `$` expansions; the escape token escapes
    /// only `"`, `$` and itself.
    fn double_quoted(&mut self) -> Result<String, ShellError> {
        self.next();
        let mut text = String::new();
        self.raw_quote(&mut text, '"');
        loop {
            match self.peek() {
                None => {
                    return Err(error(
                        "unexpected end of statement while looking for matching double-quote",
                    ));
                }
                Some('"') => {
                    self.next();
                    self.raw_quote(&mut text, '"');
                    return Ok(text);
                }
                Some('$') => text.push_str(&self.dollar()?),
                Some(_) => {
                    let mut c = self.next().expect("peeked");
                    if c == self.escape {
                        if self.lexing.raw_escapes {
                            text.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                c = self.next().expect("peeked");
                            }
                            Some(_) => {}
                        }
                    }
                    text.push(c);
                }
            }
        }
    }

    /// A name: letters, digits and `_`; or a run of digits (positional);
    /// or one special parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return c.to_string();
            }
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            self.next();
            name.push(c);
        }
        name
    }

    fn value(&self, name: &str) -> Option<String> {
        self.env.get(name)
    }

    /// `$...`: an expansion, or a literal `$` when no name follows.
    fn dollar(&mut self) -> Result<String, ShellError> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.value(&name) {
                Some(value) => value,
                None if self.lexing.keep_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err(error("syntax error: missing '}'")),
            Some('{' | '}' | ':') => return Err(error("syntax error: bad substitution")),
            Some(_) => {}
        }
        let name = self.name();
        let value = self.value(&name);
        let keep = value.is_none() && self.lexing.keep_unset;
        let (colon, modifier) = match self.next() {
            Some('}') if keep => return Ok(format!("${{{name}}}")),
            Some('}') => return Ok(value.unwrap_or_default()),
            Some('/') => return self.substitution(&name, keep),
            Some(':') => (true, self.next()),
            Some(modifier @ ('-' | '+' | '?' | '#' | '%')) => (false, Some(modifier)),
            Some(other) => return Err(unsupported(&other.to_string())),
            None => return Err(error("syntax error: missing '}'")),
        };
        let written = format!(
            "{}{}",
            if colon { ":" } else { "" },
            modifier.map(String::from).unwrap_or_default()
        );
        // BuildKit reads a pattern's escapes raw, other operands' not.
        let pattern = matches!(modifier, Some('#' | '%'));
        if colon && pattern {
            return Err(unsupported(&written));
        }
        let word = self.operand('}', pattern)?;
        if keep {
            return Ok(format!("${{{name}{written}{word}}}"));
        }
        let set = value.is_some();
        let value = value.unwrap_or_default();
        let empty = !set || (colon && value.is_empty());
        match modifier {
            Some('-') => Ok(if empty { word } else { value }),
            Some('+') => Ok(if empty { String::new() } else { word }),
            Some('?') if empty => Err(required(&name, &word)),
            Some('?') => Ok(value),
            // `#` and `%` trim patterns, which kiln does not implement.
            _ => Err(unsupported(&written)),
        }
    }

    /// `${name/pattern/replacement}` (or `//`), after the first `/`: read
    /// so that a heredoc line keeps it as written; kiln does not
    /// implement the replacement itself.
    fn substitution(&mut self, name: &str, keep: bool) -> Result<String, ShellError> {
        // `//` (every match) is written back with one `/`, as BuildKit does.
        if self.peek() == Some('/') {
            self.next();
        }
        let pattern = self.operand('/', true)?;
        let replacement = self.operand('}', true)?;
        if keep {
            Ok(format!("${{{name}/{pattern}/{replacement}}}"))
        } else {
            Err(unsupported("/"))
        }
    }

    /// The word after a modifier, up to `stop` (consumed), with escapes
    /// kept raw or not for its length.
    fn operand(&mut self, stop: char, raw_escapes: bool) -> Result<String, ShellError> {
        if self.depth >= MAX_NESTING {
            return Err(ShellError(format!(
                "substitutions nested more than {MAX_NESTING} levels deep"
            )));
        }
        self.depth += 1;
        let outer = std::mem::replace(&mut self.lexing.raw_escapes, raw_escapes);
        let word = self.process(Some(stop));
        self.lexing.raw_escapes = outer;
        self.depth -= 1;
        match word {
            Ok((word, _)) => Ok(word),
            Err(e) if e.0.starts_with("substitutions nested") => Err(e),
            Err(_) if self.peek().is_none() && stop == '/' => {
                Err(error("syntax error: missing '/' in ${}"))
            }
            Err(_) if self.peek().is_none() => Err(error("syntax error: missing '}'")),
            Err(e) => Err(e),
        }
    }
}

fn unsupported(modifier: &str) -> ShellError {
    ShellError(format!("unsupported modifier ({modifier}) in substitution"))
}

fn required(name: &str, message: &str) -> ShellError {
    let message = if message.is_empty() {
        "is not allowed to be unset"
    } else {
        message
    };
    ShellError(format!("{name}: {message}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // On a stack about the size of a plugin's.
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(|| {
                let env: Vec<(String, String)> = Vec::new();
                let word = format!("{}x{}", "${a:-".repeat(20_000), "}".repeat(20_000));
                let err = super::process_word(&word, &env, '\\').unwrap_err();
                assert!(err.0.contains("nested more than 64"), "{}", err.0);
                let word = format!("{}x{}", "${a:-".repeat(10), "}".repeat(10));
                assert_eq!(super::process_word(&word, &env, '\\').unwrap(), "x");
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
