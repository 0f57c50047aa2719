//! Registry credentials, resolved by the host so that no plugin ever reads
//! them from disk: GitLab's `CI_REGISTRY*` variables, docker's
//! `config.json` (`auths`, `credHelpers`, `credsStore`), in that order.
//! The policy offers them to a step as the secret `registry-auth:HOST`,
//! only for hosts the step is granted by name.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use kiln_grant::ValueSource;
pub use kiln_oci::credential::{Credential, secret_name};

/// The values to mask in output: the secret itself and the forms it
/// travels in (the Basic header's base64).
pub fn sensitive(credential: &Credential) -> Vec<String> {
    match credential {
        Credential::Basic { username, password } => vec![
            password.clone(),
            STANDARD.encode(format!("{username}:{password}")),
        ],
        Credential::IdentityToken { identitytoken } => vec![identitytoken.clone()],
    }
}

/// Names a registry host may be written as in `config.json`.
fn aliases(host: &str) -> Vec<String> {
    match host {
        "registry-1.docker.io" | "docker.io" | "index.docker.io" => vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
        ],
        _ => vec![host.to_owned()],
    }
}

/// `https://host/v1/` → `host`, as docker normalises `auths` keys.
fn normalise_key(key: &str) -> String {
    let key = key.split_once("://").map_or(key, |(_, rest)| rest);
    key.split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Credentials found for a registry, and where they came from: an
/// authentication failure is fixed at the source, so the user is told
/// which one it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The credentials.
    pub credential: Credential,
    /// Where they came from, for messages (never the values).
    pub source: String,
}

/// Credentials for `host`, or none (anonymous).
pub fn resolve(host: &str, values: &dyn ValueSource) -> Option<Found> {
    let name = secret_name(host);
    if let Some(json) = values.get(&name) {
        return Credential::from_secret(&json).ok().map(|credential| Found {
            credential,
            source: format!("those given to this step (the secret {name})"),
        });
    }
    gitlab(host, values).or_else(|| docker_config(host, values))
}

fn gitlab(host: &str, values: &dyn ValueSource) -> Option<Found> {
    let registry = values.get("CI_REGISTRY")?;
    if normalise_key(&registry) != host.to_ascii_lowercase() {
        return None;
    }
    match (
        values.get("CI_REGISTRY_USER"),
        values.get("CI_REGISTRY_PASSWORD"),
    ) {
        (Some(username), Some(password)) => Some(Found {
            credential: Credential::Basic { username, password },
            source: "GitLab's CI_REGISTRY_USER and CI_REGISTRY_PASSWORD".into(),
        }),
        _ => values.get("CI_JOB_TOKEN").map(|token| Found {
            credential: Credential::Basic {
                username: "gitlab-ci-token".into(),
                password: token,
            },
            source: "GitLab's CI_JOB_TOKEN".into(),
        }),
    }
}

/// The docker config file: `$REGISTRY_AUTH_FILE`, else
/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn config_path(values: &dyn ValueSource) -> Option<PathBuf> {
    if let Some(file) = values.get("REGISTRY_AUTH_FILE") {
        return Some(PathBuf::from(file));
    }
    if let Some(dir) = values.get("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    dirs::home_dir().map(|h| h.join(".docker").join("config.json"))
}

fn docker_config(host: &str, values: &dyn ValueSource) -> Option<Found> {
    let path = config_path(values)?;
    let text = std::fs::read_to_string(&path).ok()?;
    let config: Value = serde_json::from_str(&text).ok()?;
    let names = aliases(host);
    let normalised: Vec<String> = names.iter().map(|n| normalise_key(n)).collect();
    if let Some(helpers) = config["credHelpers"].as_object() {
        for (key, helper) in helpers {
            if normalised.contains(&normalise_key(key))
                && let Some(helper) = helper.as_str()
            {
                return run_helper(helper, key, values).map(|credential| Found {
                    credential,
                    source: format!(
                        "docker-credential-{helper} (credHelpers in {})",
                        path.display()
                    ),
                });
            }
        }
    }
    if let Some(auths) = config["auths"].as_object() {
        for (key, entry) in auths {
            if normalised.contains(&normalise_key(key))
                && let Some(credential) = auth_entry(entry)
            {
                return Some(Found {
                    credential,
                    source: format!("{} (auths)", path.display()),
                });
            }
        }
    }
    let store = config["credsStore"].as_str()?;
    names
        .iter()
        .find_map(|name| run_helper(store, name, values))
        .map(|credential| Found {
            credential,
            source: format!(
                "docker-credential-{store} (credsStore in {})",
                path.display()
            ),
        })
}

fn auth_entry(entry: &Value) -> Option<Credential> {
    if let Some(token) = entry["identitytoken"].as_str().filter(|t| !t.is_empty()) {
        return Some(Credential::IdentityToken {
            identitytoken: token.to_owned(),
        });
    }
    if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
        let decoded = String::from_utf8(STANDARD.decode(auth).ok()?).ok()?;
        let (username, password) = decoded.split_once(':')?;
        return Some(Credential::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        });
    }
    Some(Credential::Basic {
        username: entry["username"].as_str()?.to_owned(),
        password: entry["password"].as_str()?.to_owned(),
    })
}

/// `docker-credential-NAME get`, fed the server URL on stdin; the helper
/// is looked up on the `PATH` of `values`.
fn run_helper(helper: &str, server: &str, values: &dyn ValueSource) -> Option<Credential> {
    let name = format!("docker-credential-{helper}");
    let program = values
        .get("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| PathBuf::from(dir).join(&name))
        .find(|candidate| candidate.is_file())?;
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(server.as_bytes()).ok()?;
    let output = child.wait_with_output().ok()?;
    if !output.status.success() {
        return None;
    }
    let answer: Value = serde_json::from_slice(&output.stdout).ok()?;
    let username = answer["Username"].as_str()?.to_owned();
    let secret = answer["Secret"].as_str()?.to_owned();
    Some(if username == "<token>" {
        Credential::IdentityToken {
            identitytoken: secret,
        }
    } else {
        Credential::Basic {
            username,
            password: secret,
        }
    })
}

/// Store credentials for `host` in the docker config file, as `docker
/// login` does (`auths.HOST.auth`), replacing the file atomically and
/// keeping it private to the user.
pub fn store(
    host: &str,
    username: &str,
    password: &str,
    values: &dyn ValueSource,
) -> std::io::Result<PathBuf> {
    edit_config(values, |auths| {
        auths.insert(
            host.to_owned(),
            json!({ "auth": STANDARD.encode(format!("{username}:{password}")) }),
        );
        true
    })
}

/// Remove the stored credentials for `host` (under any of the names
/// docker writes it as), as `docker logout` does. Returns the file when
/// something was removed.
pub fn remove(host: &str, values: &dyn ValueSource) -> std::io::Result<Option<PathBuf>> {
    let names = aliases(host);
    let mut removed = false;
    let path = edit_config(values, |auths| {
        let before = auths.len();
        auths.retain(|key, _| !names.iter().any(|n| normalise_key(n) == normalise_key(key)));
        removed = auths.len() != before;
        removed
    })?;
    Ok(removed.then_some(path))
}

/// Change the `auths` of the docker config file with `edit`, and, when it
/// says it changed something, replace the file atomically, private to the
/// user.
fn edit_config(
    values: &dyn ValueSource,
    edit: impl FnOnce(&mut serde_json::Map<String, Value>) -> bool,
) -> std::io::Result<PathBuf> {
    let path = config_path(values)
        .ok_or_else(|| std::io::Error::other("no home directory for the docker config"))?;
    let mut config: Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({}));
    if !config.is_object() {
        config = json!({});
    }
    if !config["auths"].is_object() {
        config["auths"] = json!({});
    }
    let auths = config["auths"].as_object_mut().expect("made an object");
    if !edit(auths) {
        return Ok(path);
    }
    let dir = path.parent().map(PathBuf::from).unwrap_or_default();
    std::fs::create_dir_all(&dir)?;
    let mut file = tempfile::NamedTempFile::new_in(&dir)?;
    use std::os::unix::fs::PermissionsExt;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(
        serde_json::to_string_pretty(&config)
            .expect("JSON")
            .as_bytes(),
    )?;
    file.persist(&path).map_err(|e| e.error)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Values(HashMap<&'static str, String>);
    impl ValueSource for Values {
        fn get(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    #[test]
    fn gitlab_variables_then_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        std::fs::write(
            &file,
            r#"{"auths":{"https://registry.example.com/v1/":{"auth":"dTpw"},"token.example.com":{"identitytoken":"t0k"}}}"#,
        )
        .unwrap();
        let values = Values(HashMap::from([
            ("REGISTRY_AUTH_FILE", file.display().to_string()),
            ("CI_REGISTRY", "gitlab.example.com:5050".to_owned()),
            ("CI_REGISTRY_USER", "ci".to_owned()),
            ("CI_JOB_TOKEN", "job-token".to_owned()),
        ]));
        assert_eq!(
            resolve("gitlab.example.com:5050", &values).map(|f| f.credential),
            Some(Credential::Basic {
                username: "gitlab-ci-token".into(),
                password: "job-token".into()
            })
        );
        assert_eq!(
            resolve("registry.example.com", &values).map(|f| f.credential),
            Some(Credential::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        assert_eq!(
            resolve("token.example.com", &values).map(|f| f.credential),
            Some(Credential::IdentityToken {
                identitytoken: "t0k".into()
            })
        );
        assert_eq!(
            resolve("other.example.com", &values).map(|f| f.credential),
            None
        );

        store("new.example.com:5000", "me", "pw", &values).unwrap();
        assert_eq!(
            resolve("new.example.com:5000", &values).map(|f| f.credential),
            Some(Credential::Basic {
                username: "me".into(),
                password: "pw".into()
            })
        );
        assert!(
            resolve("registry.example.com", &values)
                .map(|f| f.credential)
                .is_some(),
            "other entries kept"
        );
    }

    #[test]
    fn credential_helpers_are_asked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-kilntest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = helped.example.com ] && echo '{\"ServerURL\":\"helped.example.com\",\"Username\":\"hu\",\"Secret\":\"hs\"}'\n",
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            r#"{"credHelpers":{"helped.example.com":"kilntest"},"credsStore":"kilntest"}"#,
        )
        .unwrap();
        let values = Values(HashMap::from([
            ("REGISTRY_AUTH_FILE", config.display().to_string()),
            ("PATH", dir.path().display().to_string()),
        ]));
        assert_eq!(
            resolve("helped.example.com", &values).map(|f| f.credential),
            Some(Credential::Basic {
                username: "hu".into(),
                password: "hs".into()
            })
        );
        // The store is asked for other hosts too; this one knows none.
        assert_eq!(
            resolve("other.example.com", &values).map(|f| f.credential),
            None
        );
    }
}
