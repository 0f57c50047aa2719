//! The one error type of a plugin: every failure, from an input, a
//! denial, a file or a registry, is a [`Error`], so `?` works everywhere
//! in a step, and it becomes the contract's `step-error` only where the
//! step returns ([`crate::export_step!`]).

use std::fmt;
use std::path::Path;

use crate::bindings::kiln::plugin::types::StepError as ContractError;

/// Why a step did not succeed: a kind the host reports differently, and a
/// message that names what went wrong and, where the user can act, how to
/// fix it. It displays as its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// The contract's name for [`Error`] (`step-error` in `wit/plugin.wit`),
/// kept so plugins written against the contract read naturally.
pub type StepError = Error;

/// The kinds of failure the host tells apart (exit status, wording).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// An input is missing, malformed or inconsistent: the caller's to fix.
    InvalidInput,
    /// A capability was refused: the grant is the caller's to widen.
    Denied,
    /// The work itself failed.
    Failed,
}

impl Error {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// An input is missing or malformed; say which and what is expected.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    /// A capability was refused; say what, so the user can grant it.
    pub fn denied(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Denied, message)
    }

    /// The work failed.
    pub fn failed(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Failed, message)
    }

    /// Reading or writing `path` failed: `PATH: error`.
    ///
    /// ```ignore
    /// let text = std::fs::read_to_string(&path).map_err(|e| kiln_sdk::Error::io(&path, e))?;
    /// ```
    pub fn io(path: impl AsRef<Path>, error: std::io::Error) -> Self {
        Error::failed(format!("{}: {error}", path.as_ref().display()))
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The contract's `step-error`, as the host receives it.
    #[doc(hidden)]
    pub fn into_contract(self) -> ContractError {
        match self.kind {
            ErrorKind::InvalidInput => ContractError::InvalidInput(without_errno(&self.message)),
            ErrorKind::Denied => ContractError::Denied(without_errno(&self.message)),
            ErrorKind::Failed => ContractError::Failed(without_errno(&self.message)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Say what was being done when an error happened, for errors of any
/// type that displays: `.context("writing the report")` turns `e` into a
/// failure reading `writing the report: e`.
///
/// The result is always [`ErrorKind::Failed`]; an error that is the
/// caller's input or a denial keeps its kind only through `?`.
pub trait Context<T> {
    /// The error, if any, as a failure while `what`.
    fn context(self, what: impl fmt::Display) -> Result<T, Error>;
}

impl<T, E: fmt::Display> Context<T> for Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T, Error> {
        self.map_err(|e| Error::failed(format!("{what}: {e}")))
    }
}

/// `message` without the ` (os error N)` that std appends to I/O errors:
/// inside a plugin N is a WASI errno (44 is "no such file", 2 on Linux),
/// which misleads more than it helps; the words before it say it all.
fn without_errno(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" (os error ") {
        let after = &rest[at + " (os error ".len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(')') {
            out.push_str(&rest[..at]);
            rest = &after[digits + 1..];
        } else {
            out.push_str(&rest[..at + 1]);
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_errnos_are_left_out() {
        assert_eq!(
            without_errno("/workspace/a: No such file or directory (os error 44)"),
            "/workspace/a: No such file or directory"
        );
        assert_eq!(
            without_errno("a (os error 44) and b (os error x)"),
            "a and b (os error x)"
        );
        assert_eq!(without_errno("plain"), "plain");
    }
}
