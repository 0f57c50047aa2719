//! Errors of image and registry operations.

use std::fmt;

use kiln_sdk::StepError;
use kiln_sdk::http::HttpError;

/// An image or registry operation that failed. Messages name the file,
/// registry or digest involved.
#[derive(Debug)]
pub enum OciError {
    /// A file of an image layout could not be read or written.
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Data that does not follow the OCI specifications.
    Invalid(String),
    /// Content whose digest or size is not what was announced.
    DigestMismatch {
        /// What was being read.
        what: String,
        /// The announced digest.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// The registry refused the credentials (or has none for us).
    AuthenticationFailed {
        /// The registry host.
        registry: String,
        /// The registry's explanation, if any.
        detail: String,
    },
    /// The registry answered with an error.
    Registry {
        /// What was being done.
        operation: String,
        /// The HTTP status.
        status: u16,
        /// The `errors[].code` values, or the body's start.
        detail: String,
    },
    /// The request did not reach the registry.
    Http(HttpError),
}

impl fmt::Display for OciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OciError::Io { path, source } => write!(f, "{path}: {source}"),
            OciError::Invalid(message) => f.write_str(message),
            OciError::DigestMismatch {
                what,
                expected,
                actual,
            } => write!(f, "{what} should have digest {expected} but has {actual}"),
            OciError::AuthenticationFailed { registry, detail } => {
                write!(f, "authentication failed for {registry}")?;
                if !detail.is_empty() {
                    write!(f, ": {detail}")?;
                }
                Ok(())
            }
            OciError::Registry {
                operation,
                status,
                detail,
            } => write!(f, "{operation}: the registry answered {status} {detail}"),
            OciError::Http(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for OciError {}

impl From<HttpError> for OciError {
    fn from(error: HttpError) -> Self {
        OciError::Http(error)
    }
}

impl From<OciError> for StepError {
    fn from(error: OciError) -> Self {
        match error {
            OciError::Http(http) => http.into(),
            OciError::Invalid(_) => StepError::InvalidInput(error.to_string()),
            other => StepError::Failed(other.to_string()),
        }
    }
}

/// Attach a path to an I/O error.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> OciError + '_ {
    move |source| OciError::Io {
        path: path.display().to_string(),
        source,
    }
}
