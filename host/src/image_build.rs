//! `kiln build`: docker-buildx-like command line over the
//! `dockerfile-build` plugin, and the push of its result through the
//! `registry` plugin.
//!
//! The host decides the grant: the build context read-only as workspace,
//! the output layout writable, a directory of the Dockerfile when it lies
//! outside the context, and the registries named by `FROM` and
//! `COPY --from` (found by parsing the Dockerfile here, with its ARGs) —
//! nothing else.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kiln_dockerfile::{parser, shell};

use crate::commands::{self, PushArgs, RegistryOptions};
use crate::plugins::PluginRef;
use crate::policy::{HostPattern, Mount, ProcessEnv, StepDirs, StepGrant};
use crate::runtime::RuntimeConfig;
use crate::step::StepRequest;

/// Where an image goes, as `--output` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `oci:DIR`: an OCI image layout.
    Oci(PathBuf),
    /// `docker-archive:FILE`: a `docker save` tar.
    DockerArchive(PathBuf),
}

impl std::str::FromStr for Output {
    type Err = String;

    fn from_str(text: &str) -> Result<Output, String> {
        match text.split_once(':') {
            Some(("oci", dir)) if !dir.is_empty() => Ok(Output::Oci(dir.into())),
            Some(("docker-archive", file)) if !file.is_empty() => {
                Ok(Output::DockerArchive(file.into()))
            }
            _ => Err(format!(
                "`{text}` is not an output; use oci:DIR or docker-archive:FILE"
            )),
        }
    }
}

/// `kiln build` arguments.
#[derive(Debug, Clone, Default)]
pub struct BuildArgs {
    /// The build context directory.
    pub context: PathBuf,
    /// `-f`: the Dockerfile (default: CONTEXT/Dockerfile).
    pub file: Option<PathBuf>,
    /// `-t`: references naming the image.
    pub tags: Vec<String>,
    /// `--build-arg NAME=VALUE`.
    pub build_args: Vec<String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--platform`.
    pub platform: String,
    /// `--output`.
    pub outputs: Vec<Output>,
    /// `--push`: push every `-t` reference.
    pub push: bool,
    /// `--compression`.
    pub compression: String,
    /// `--allow-net`: hosts the user trusts by name, even on loopback or
    /// private addresses.
    pub allow_net: Vec<HostPattern>,
    /// Registry options (plain HTTP, JSON events).
    pub registry: RegistryOptions,
}

fn usage(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("kiln build: {message}");
    ExitCode::from(commands::EXIT_USAGE)
}

/// Run `kiln build`.
pub async fn build(args: BuildArgs) -> ExitCode {
    let context = match args.context.canonicalize() {
        Ok(dir) if dir.is_dir() => dir,
        _ => {
            return usage(format!(
                "the build context {} is not a directory",
                args.context.display()
            ));
        }
    };
    let dockerfile = args
        .file
        .clone()
        .unwrap_or_else(|| context.join("Dockerfile"));
    let Ok(dockerfile) = dockerfile.canonicalize() else {
        return usage(format!("{}: no such Dockerfile", dockerfile.display()));
    };
    let source = match std::fs::read_to_string(&dockerfile) {
        Ok(source) => source,
        Err(e) => return usage(format!("{}: {e}", dockerfile.display())),
    };
    if args.outputs.is_empty() && !args.push {
        return usage(
            "nothing to do: give --output oci:DIR, --output docker-archive:FILE or --push",
        );
    }
    if args.push && args.tags.is_empty() {
        return usage("--push needs at least one -t REGISTRY/REPOSITORY:TAG");
    }

    let mut mounts = Vec::new();
    let dockerfile_input = match dockerfile.strip_prefix(&context) {
        Ok(relative) => relative.display().to_string(),
        Err(_) => {
            let (Some(dir), Some(name)) = (dockerfile.parent(), dockerfile.file_name()) else {
                return usage("the Dockerfile path has no file name");
            };
            mounts.push(Mount {
                host: dir.to_owned(),
                guest: "/dockerfile".into(),
                writable: false,
            });
            format!("/dockerfile/{}", name.to_string_lossy())
        }
    };
    let layout = match args.outputs.iter().find_map(|o| match o {
        Output::Oci(dir) => Some(dir.clone()),
        Output::DockerArchive(_) => None,
    }) {
        Some(dir) => dir,
        None => match build_cache_layout(&context) {
            Some(Ok(dir)) => dir,
            Some(Err(e)) => return usage(e),
            None => {
                return usage("no cache directory for the intermediate layout; set KILN_CACHE_DIR");
            }
        },
    };
    if let Err(e) = std::fs::create_dir_all(&layout) {
        return usage(format!("{}: {e}", layout.display()));
    }
    let Ok(layout) = layout.canonicalize() else {
        return usage(format!("{}: cannot resolve", layout.display()));
    };
    // Builds into one layout (the same context's cache layout, or one
    // `--output oci:DIR`) take turns: each reads the layer cache and
    // writes index.json, and interleaving them could lose a build.
    let _lock = match crate::store::lock_layout(&layout) {
        Ok(lock) => lock,
        Err(e) => return usage(e),
    };

    let mut inputs = vec![
        ("context".to_owned(), "/workspace".to_owned()),
        ("dockerfile".to_owned(), dockerfile_input),
        ("output".to_owned(), "/output".to_owned()),
        ("tags".to_owned(), args.tags.join("\n")),
        ("build-args".to_owned(), args.build_args.join("\n")),
        ("platform".to_owned(), args.platform.clone()),
        ("compression".to_owned(), args.compression.clone()),
        ("insecure".to_owned(), args.registry.insecure.to_string()),
    ];
    if let Some(target) = &args.target {
        inputs.push(("target".into(), target.clone()));
    }
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        inputs.push(("source-date-epoch".into(), epoch));
    }
    for output in &args.outputs {
        if let Output::DockerArchive(file) = output {
            let (dir, name) = match (file.parent(), file.file_name()) {
                (Some(dir), Some(name)) => (
                    if dir.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        dir
                    },
                    name,
                ),
                _ => return usage(format!("{}: not a file name", file.display())),
            };
            let Ok(dir) = dir.canonicalize() else {
                return usage(format!("{}: its directory does not exist", file.display()));
            };
            mounts.push(Mount {
                host: dir,
                guest: "/archive".into(),
                writable: true,
            });
            inputs.push((
                "docker-archive".into(),
                format!("/archive/{}", name.to_string_lossy()),
            ));
        }
    }

    let build_args: Vec<(String, String)> = args
        .build_args
        .iter()
        .filter_map(|a| a.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let bases = match base_images(&source, &build_args) {
        Ok(bases) => bases,
        Err(e) => return usage(format!("{}:{e}", dockerfile.display())),
    };
    // Base layers need not be downloaded when the layout is only pushed,
    // to the registry the bases come from: the push mounts them.
    let push_only = args.outputs.is_empty()
        && args.tags.iter().all(|tag| {
            bases
                .iter()
                .all(|b| commands::registry_host(b) == commands::registry_host(tag))
        });
    inputs.push(("complete-layout".into(), (!push_only).to_string()));
    // The registries the Dockerfile names are untrusted input: reachable
    // on public addresses only. Those the user named (`--allow-net`, or a
    // `-t` reference, whose registry the build pushes to) are trusted by
    // name, so a local registry works when the user points at it.
    let mut untrusted_net = Vec::new();
    for host in bases.iter().map(|b| commands::registry_host(b)) {
        match host.parse::<HostPattern>() {
            Ok(pattern) if !untrusted_net.contains(&pattern) => untrusted_net.push(pattern),
            Ok(_) => {}
            Err(e) => return usage(e),
        }
    }
    let mut net = args.allow_net.clone();
    for host in args.tags.iter().map(|t| commands::registry_host(t)) {
        match host.parse::<HostPattern>() {
            Ok(pattern) if untrusted_net.contains(&pattern) && !net.contains(&pattern) => {
                net.push(pattern)
            }
            Ok(_) => {}
            Err(e) => return usage(e),
        }
    }
    let plugin = match PluginRef::parse("dockerfile-build") {
        Ok(plugin) => plugin,
        Err(e) => return usage(e),
    };
    let request = StepRequest {
        name: "build".into(),
        plugin,
        inputs,
        grant: StepGrant {
            net,
            untrusted_net,
            ..StepGrant::default()
        },
        dirs: StepDirs {
            workspace: context,
            output: layout.clone(),
            mounts,
            hidden: Vec::new(),
        },
        needs: Vec::new(),
        masked: Default::default(),
    };
    let code = commands::run_one(request, &ProcessEnv, args.registry.json).await;
    if code != ExitCode::SUCCESS {
        return code;
    }
    if !args.registry.json && args.outputs.iter().any(|o| matches!(o, Output::Oci(_))) {
        println!("layout={}", layout.display());
    }
    if !args.push {
        return code;
    }
    for tag in &args.tags {
        let host = commands::registry_host(tag);
        let mount_from = bases
            .iter()
            .filter(|b| commands::registry_host(b) == host)
            .filter_map(|b| repository(b))
            .collect();
        let push = PushArgs {
            layout: layout.clone(),
            reference: tag.clone(),
            digest_file: None,
            chunk_size: None,
            mount_from,
        };
        let code = commands::push(push, args.registry.clone()).await;
        if code != ExitCode::SUCCESS {
            return code;
        }
    }
    ExitCode::SUCCESS
}

/// A persistent layout for builds that only push or write an archive, so
/// rebuilds reuse their layers: one per context directory, created below
/// kiln's cache directory without following a symlink.
fn build_cache_layout(context: &Path) -> Option<Result<PathBuf, crate::store::StoreError>> {
    use sha2::Digest;
    let key = hex::encode(sha2::Sha256::digest(context.as_os_str().as_encoded_bytes()));
    let root = RuntimeConfig::from_env().cache_dir?;
    Some(
        std::fs::create_dir_all(&root)
            .map_err(|source| crate::store::StoreError::Io {
                path: root.clone(),
                source,
            })
            .and_then(|()| crate::store::ensure_dir(&root, &Path::new("builds").join(&key[..16]))),
    )
}

/// `registry/repo/path:tag` → `repo/path` (for cross-repository mounts).
fn repository(reference: &str) -> Option<String> {
    let name = reference.split('@').next()?;
    let (_, path) = name.split_once('/')?;
    let path = match path.rsplit_once(':') {
        Some((p, tag)) if !tag.contains('/') => p,
        _ => path,
    };
    Some(path.to_owned())
}

/// The registry images a Dockerfile names in `FROM` and `COPY --from`,
/// with ARGs expanded (stage names and `scratch` left out). An image named
/// through a variable the host cannot expand is skipped: its pull is then
/// refused by the sandbox with a message naming the host.
pub fn base_images(source: &str, build_args: &[(String, String)]) -> Result<Vec<String>, String> {
    let dockerfile = parser::parse(source).map_err(|e| e.to_string())?;
    let mut scope: Vec<(String, String)> = Vec::new();
    let mut stages: Vec<String> = Vec::new();
    let mut images = Vec::new();
    let mut seen_from = false;
    for node in &dockerfile.instructions {
        let words: Vec<String> = node
            .args
            .iter()
            .filter_map(|a| match a {
                parser::Arg::Text(t) => Some(t.clone()),
                parser::Arg::Instruction(_) => None,
            })
            .collect();
        let expand = |scope: &Vec<(String, String)>, word: &str| {
            shell::process_word(word, scope, dockerfile.escape).ok()
        };
        let mut named = Vec::new();
        match node.instruction.as_str() {
            "arg" if !seen_from => {
                for word in &words {
                    let (name, default) = match word.split_once('=') {
                        Some((n, v)) => (n.to_owned(), expand(&scope, v)),
                        None => (word.clone(), None),
                    };
                    let given = build_args
                        .iter()
                        .rev()
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| v.clone());
                    if let Some(value) = given.or(default) {
                        scope.push((name, value));
                    }
                }
            }
            "from" => {
                seen_from = true;
                named.extend(words.first().and_then(|w| expand(&scope, w)));
                if let [_, r#as, name] = words.as_slice()
                    && r#as.eq_ignore_ascii_case("as")
                {
                    stages.push(name.to_lowercase());
                }
            }
            "copy" => {
                for flag in &node.flags {
                    if let Some(value) = flag.strip_prefix("--from=") {
                        named.extend(expand(&scope, value));
                    }
                }
            }
            _ => {}
        }
        for image in named {
            let lower = image.to_lowercase();
            if lower != "scratch" && !stages.contains(&lower) && image.parse::<usize>().is_err() {
                images.push(image);
            }
        }
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_images_skip_stages_and_expand_args() {
        let source = "ARG BASE=busybox\nARG TAG\nFROM ${BASE}:${TAG:-1} AS build\nFROM scratch\nCOPY --from=build /a /a\nCOPY --from=127.0.0.1:5000/tools:2 /b /b\n";
        let images = base_images(source, &[("TAG".into(), "3".into())]).unwrap();
        assert_eq!(images, ["busybox:3", "127.0.0.1:5000/tools:2"]);
        assert_eq!(
            repository("127.0.0.1:5000/group/base:1").as_deref(),
            Some("group/base")
        );
        assert_eq!("oci:out".parse::<Output>(), Ok(Output::Oci("out".into())));
        assert!("tar:x".parse::<Output>().is_err());
    }
}
