//! Errors of image and registry operations.

use kiln_sdk::Error;
use kiln_sdk::http::HttpError;

use crate::platform::PlatformError;
use crate::reference::ReferenceError;

/// An image or registry operation that failed. Messages name the file,
/// registry or digest involved.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A file of an image layout could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Data that does not follow the OCI specifications: a layout, archive
    /// or reference the user gave.
    #[error("{0}")]
    Invalid(String),
    /// An image whose parts disagree (a config listing the wrong number of
    /// layers, a layer from nowhere): the image is at fault, not the
    /// user's input.
    #[error("{0}")]
    Inconsistent(String),
    /// Content whose digest or size is not what was announced.
    #[error("{what} should have digest {expected} but has {actual}")]
    DigestMismatch {
        /// What was being read.
        what: String,
        /// The announced digest.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// The registry refused the credentials (or has none for us).
    #[error("authentication failed for {registry}{}", colon_prefixed(detail))]
    AuthenticationFailed {
        /// The registry host.
        registry: String,
        /// The registry's explanation, if any.
        detail: String,
    },
    /// The registry answered with an error.
    #[error("{operation}: the registry answered {status} {detail}")]
    Registry {
        /// What was being done.
        operation: String,
        /// The HTTP status.
        status: u16,
        /// The `errors[].code` values, or the body's start.
        detail: String,
    },
    /// The request did not reach the registry.
    #[error("{0}")]
    Http(#[from] HttpError),
}

/// `: detail`, or nothing for an empty detail.
fn colon_prefixed(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// Bad layouts, archives and references are the caller's input; a
/// request the grant refused is a denial; the rest are failures.
impl From<OciError> for Error {
    fn from(error: OciError) -> Self {
        match error {
            OciError::Http(http) => http.into(),
            OciError::Invalid(_) => Error::invalid_input(error.to_string()),
            other => Error::failed(other.to_string()),
        }
    }
}

/// A reference is always something the caller wrote.
impl From<ReferenceError> for Error {
    fn from(error: ReferenceError) -> Self {
        Error::invalid_input(error.to_string())
    }
}

/// A platform is always something the caller wrote.
impl From<PlatformError> for Error {
    fn from(error: PlatformError) -> Self {
        Error::invalid_input(error.to_string())
    }
}

/// Attach a path to an I/O error.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> OciError + '_ {
    move |source| OciError::Io {
        path: path.display().to_string(),
        source,
    }
}
