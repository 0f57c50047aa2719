//! Where the values of granted environment variables and secrets come
//! from. A grant names variables; a [`ValueSource`] answers for their
//! values, so the same grant works for `kiln step` (the process
//! environment), a pipeline (its variables) and `kiln login` (the
//! credentials being checked).

/// Answers for the values of names a grant lists.
pub trait ValueSource: Sync {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// Values from the process environment.
pub struct ProcessEnv;

impl ValueSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}
