//! The operator's policy: what any pipeline or command on this machine
//! may grant a step, whatever its own file says.
//!
//! A pipeline file comes with the repository, so on a shared runner it is
//! the tenant's word; the operator's policy caps it. Policies are read from
//! `/etc/kiln/policy.yml` when it exists, from the file `KILN_POLICY` names,
//! and from `--policy FILE`; every policy read must allow a grant (an
//! environment variable or flag can only tighten the machine's policy).
//!
//! ```yaml
//! read: [/builds, /cache]        # roots grants may read below
//! write: [/builds]               # roots grants may write below
//! net: [registry.example.com, "*.example.com:443"]
//! env: [CI_COMMIT_SHA, "CI_*"]   # variables grants may pass ("PREFIX*")
//! secrets: [CI_REGISTRY_PASSWORD]
//! max_memory: 1GiB               # also caps the default
//! max_timeout: 20m               # also caps the default
//! run_steps: false               # refuse `run:` steps (host commands)
//! run: false                     # refuse `allow.run` (native Dockerfile RUN)
//! run_host_network: false        # refuse RUN --network=host
//! ```
//!
//! A key that is absent does not cap that kind of grant; `[]` allows none.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

use kiln_grant::{HostPattern, MemorySize, StepGrant, Timeout};

/// The machine-wide policy file, used when it exists.
pub const MACHINE_POLICY: &str = "/etc/kiln/policy.yml";

/// One policy file's caps.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorPolicy {
    /// Roots a grant may read below (writable roots may be read too).
    pub read: Option<Vec<PathBuf>>,
    /// Roots a grant may write below.
    pub write: Option<Vec<PathBuf>>,
    /// Hosts a grant may name: each granted pattern must fall within one.
    pub net: Option<Vec<HostPattern>>,
    /// Environment variables a grant may pass; `PREFIX*` covers a prefix.
    pub env: Option<Vec<String>>,
    /// Secrets a grant may read; `PREFIX*` covers a prefix.
    pub secrets: Option<Vec<String>>,
    /// The largest memory cap a step may have.
    pub max_memory: Option<MemorySize>,
    /// The longest timeout a step may have.
    pub max_timeout: Option<Timeout>,
    /// Whether `run:` steps (unsandboxed host commands) may run.
    pub run_steps: Option<bool>,
    /// Whether a step may be granted `run` (native Dockerfile RUN
    /// commands, isolated by the executor).
    pub run: Option<bool>,
    /// Whether a step may be granted `run_host_network`.
    pub run_host_network: Option<bool>,
}

/// The policies in force, each with the file it came from.
#[derive(Debug, Clone, Default)]
pub struct OperatorPolicies {
    policies: Vec<(PathBuf, OperatorPolicy)>,
}

/// A policy file that cannot be used: kiln refuses to run rather than run
/// without the operator's caps.
#[derive(Debug, Clone, thiserror::Error)]
#[error("operator policy {file}: {reason}")]
pub struct PolicyFileError {
    /// The file.
    pub file: PathBuf,
    /// What is wrong, with the line where the parser knows it.
    pub reason: String,
}

/// A grant the operator's policy does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} is not allowed by the operator policy {file} (`{rule}`); ask the runner's operator, or grant less"
)]
pub struct Violation {
    /// The policy file.
    pub file: PathBuf,
    /// The rule, as `key: value`.
    pub rule: String,
    /// What was asked for.
    pub what: String,
}

/// Policy files named by `--policy`, set once at start-up.
static EXTRA_FILES: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// Add policy files from the command line; called once, before anything
/// runs.
pub fn set_extra_files(files: Vec<PathBuf>) {
    let _ = EXTRA_FILES.set(files);
}

impl OperatorPolicies {
    /// The policies in force on this machine: [`MACHINE_POLICY`] when it
    /// exists, `$KILN_POLICY` and `--policy` files (which must exist).
    /// Read once per process: every step of a run is held to the same
    /// policy, and the files are not read again for each.
    pub fn load() -> Result<OperatorPolicies, PolicyFileError> {
        static LOADED: OnceLock<Result<OperatorPolicies, PolicyFileError>> = OnceLock::new();
        LOADED.get_or_init(Self::read).clone()
    }

    fn read() -> Result<OperatorPolicies, PolicyFileError> {
        let mut files = Vec::new();
        if Path::new(MACHINE_POLICY).exists() {
            files.push(PathBuf::from(MACHINE_POLICY));
        }
        if let Some(named) = std::env::var_os("KILN_POLICY").filter(|v| !v.is_empty()) {
            files.push(PathBuf::from(named));
        }
        files.extend(EXTRA_FILES.get().into_iter().flatten().cloned());
        let mut policies = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| PolicyFileError {
                file: file.clone(),
                reason: e.to_string(),
            })?;
            let policy = Self::parse(&text).map_err(|reason| PolicyFileError {
                file: file.clone(),
                reason,
            })?;
            policies.push((file, policy));
        }
        Ok(OperatorPolicies { policies })
    }

    /// Parse one policy file's text; roots are made canonical where they
    /// exist, so symlinks cannot be used to step around them.
    pub fn parse(text: &str) -> Result<OperatorPolicy, String> {
        let mut policy: OperatorPolicy = if text.trim().is_empty() {
            OperatorPolicy::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| e.to_string())?
        };
        for roots in [&mut policy.read, &mut policy.write].into_iter().flatten() {
            for root in roots.iter_mut() {
                if !root.is_absolute() {
                    return Err(format!(
                        "root {} is not absolute; write it from /",
                        root.display()
                    ));
                }
                if let Ok(canonical) = root.canonicalize() {
                    *root = canonical;
                }
            }
        }
        Ok(policy)
    }

    /// Policies given directly (for tests and embedding).
    pub fn from_policies(policies: Vec<(PathBuf, OperatorPolicy)>) -> OperatorPolicies {
        OperatorPolicies { policies }
    }

    /// Whether `run:` steps may run.
    pub fn check_run_steps(&self) -> Result<(), Violation> {
        for (file, policy) in &self.policies {
            if policy.run_steps == Some(false) {
                return Err(Violation {
                    file: file.clone(),
                    rule: "run_steps: false".into(),
                    what: "a `run:` step (host commands)".into(),
                });
            }
        }
        Ok(())
    }

    /// Check `grant` against every policy, and lower its memory cap and
    /// timeout defaults to the policies' maxima. A grant asking for more
    /// than a policy allows is refused, naming the rule.
    pub fn check(&self, grant: &mut StepGrant) -> Result<(), Violation> {
        for (file, policy) in &self.policies {
            let refuse = |rule: String, what: String| Violation {
                file: file.clone(),
                rule,
                what,
            };
            let list = |paths: &[PathBuf]| {
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let writable = policy.write.as_deref();
            let readable: Option<Vec<PathBuf>> = match (&policy.read, writable) {
                (None, _) => None,
                (Some(read), write) => Some(
                    read.iter()
                        .chain(write.into_iter().flatten())
                        .cloned()
                        .collect(),
                ),
            };
            for (dirs, roots, key) in [
                (&grant.read, readable.as_deref(), "read"),
                (&grant.write, writable, "write"),
            ] {
                let Some(roots) = roots else { continue };
                for dir in dirs {
                    let real = dir.canonicalize().unwrap_or_else(|_| dir.clone());
                    if !roots.iter().any(|root| real.starts_with(root)) {
                        return Err(refuse(
                            format!("{key}: [{}]", list(roots)),
                            format!("{key} access to {}", dir.display()),
                        ));
                    }
                }
            }
            for (asked, allowed, key, what) in [
                (
                    grant.run,
                    policy.run,
                    "run",
                    "running native commands (Dockerfile RUN)",
                ),
                (
                    grant.run_host_network,
                    policy.run_host_network,
                    "run_host_network",
                    "the host's network for RUN",
                ),
            ] {
                if asked && allowed == Some(false) {
                    return Err(refuse(format!("{key}: false"), what.into()));
                }
            }
            if let Some(allowed) = &policy.net {
                for host in grant.net.iter().chain(&grant.untrusted_net) {
                    if !allowed.iter().any(|a| a.covers(host)) {
                        let names: Vec<String> = allowed.iter().map(|p| p.to_string()).collect();
                        return Err(refuse(
                            format!("net: [{}]", names.join(", ")),
                            format!("network access to {host}"),
                        ));
                    }
                }
            }
            for (names, allowed, key) in [
                (&grant.env, &policy.env, "env"),
                (&grant.secrets, &policy.secrets, "secrets"),
            ] {
                let Some(allowed) = allowed else { continue };
                for name in names {
                    if !allowed.iter().any(|a| name_matches(a, name)) {
                        return Err(refuse(
                            format!("{key}: [{}]", allowed.join(", ")),
                            format!("{key} `{name}`"),
                        ));
                    }
                }
            }
            if let Some(max) = policy.max_memory {
                match grant.memory {
                    Some(asked) if asked.0 > max.0 => {
                        return Err(refuse(
                            format!("max_memory: {max}"),
                            format!("a memory limit of {asked}"),
                        ));
                    }
                    None if grant.memory() > max.0 => grant.memory = Some(max),
                    _ => {}
                }
            }
            if let Some(max) = policy.max_timeout {
                match grant.timeout {
                    Some(asked) if asked.0 > max.0 => {
                        return Err(refuse(
                            format!("max_timeout: {}", String::from(max)),
                            format!("a timeout of {}", String::from(asked)),
                        ));
                    }
                    None if grant.timeout() > max.0 => grant.timeout = Some(max),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// Whether the policy entry `allowed` (a name, or `PREFIX*`) covers `name`.
fn name_matches(allowed: &str, name: &str) -> bool {
    match allowed.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => allowed == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies(text: &str) -> OperatorPolicies {
        OperatorPolicies::from_policies(vec![(
            PathBuf::from("policy.yml"),
            OperatorPolicies::parse(text).unwrap(),
        )])
    }

    #[test]
    fn caps_roots_hosts_names_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let builds = dir.path().join("builds");
        std::fs::create_dir_all(builds.join("p")).unwrap();
        let text = format!(
            "read: [{0}]\nwrite: [{0}/p]\nnet: [registry.example.com, '*.example.net:443']\nenv: ['CI_*']\nsecrets: []\nmax_memory: 512MiB\nmax_timeout: 10m\nrun_steps: false\n",
            builds.display()
        );
        let policy = policies(&text);
        let mut ok = StepGrant {
            read: vec![builds.clone()],
            write: vec![builds.join("p")],
            net: vec![
                "registry.example.com:5000".parse().unwrap(),
                "cdn.example.net:443".parse().unwrap(),
            ],
            env: vec!["CI_COMMIT_SHA".into()],
            ..StepGrant::default()
        };
        policy.check(&mut ok).unwrap();
        // Defaults are lowered to the caps.
        assert_eq!(ok.memory(), 512 << 20);
        assert_eq!(ok.timeout(), std::time::Duration::from_secs(600));

        let refused = |grant: StepGrant| {
            let mut grant = grant;
            policy.check(&mut grant).unwrap_err().to_string()
        };
        let err = refused(StepGrant {
            write: vec!["/".into()],
            ..StepGrant::default()
        });
        assert!(
            err.contains("write access to /") && err.contains("`write: ["),
            "{err}"
        );
        let err = refused(StepGrant {
            read: vec!["/etc".into()],
            ..StepGrant::default()
        });
        assert!(err.contains("read access to /etc"), "{err}");
        let err = refused(StepGrant {
            net: vec!["evil.example.org".parse().unwrap()],
            ..StepGrant::default()
        });
        assert!(err.contains("network access to evil.example.org"), "{err}");
        // A port outside the pattern's, or a wider wildcard, is not covered.
        assert!(
            !refused(StepGrant {
                net: vec!["*.example.net".parse().unwrap()],
                ..StepGrant::default()
            })
            .is_empty()
        );
        let err = refused(StepGrant {
            secrets: vec!["CI_REGISTRY_PASSWORD".into()],
            ..StepGrant::default()
        });
        assert!(err.contains("secrets `CI_REGISTRY_PASSWORD`"), "{err}");
        let err = refused(StepGrant {
            memory: Some("1GiB".parse().unwrap()),
            ..StepGrant::default()
        });
        assert!(err.contains("max_memory: 512MiB"), "{err}");
        let err = refused(StepGrant {
            timeout: Some("1h".parse().unwrap()),
            ..StepGrant::default()
        });
        assert!(err.contains("max_timeout"), "{err}");
        assert!(policy.check_run_steps().is_err());
        assert!(policies("net: []").check_run_steps().is_ok());
    }

    #[test]
    fn rejects_unknown_keys_and_relative_roots() {
        assert!(OperatorPolicies::parse("network: []").is_err());
        assert!(OperatorPolicies::parse("read: [builds]").is_err());
        assert!(OperatorPolicies::parse("").is_ok());
    }
}
