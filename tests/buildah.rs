//! `kiln build` against buildah, case by case. Each directory of
//! `tests/buildah/` is a Dockerfile and its context; both tools build it
//! from the same busybox base, served by a registry of the test's own, and
//! the two images must agree in their config and in their unpacked file
//! trees (kind, permission bits, owner, contents or link target; not
//! mtimes).
//!
//! A case may also hold:
//! - `args`: flags for both tools, one per line (`--target middle`,
//!   `--build-arg K=V`), split at whitespace;
//! - `tarballs`: archives the test makes in its copy of the context before
//!   building, one per line, `NAME TAR-ARGS...`, run there as
//!   `tar --create --auto-compress --file NAME TAR-ARGS...`, so that no
//!   binary is committed.
//!
//! `KILN_BUILDAH_CASE=NAME` runs only the cases whose name contains NAME.
//! Runs as root (buildah, and umoci unpacking with owners). Skips when
//! buildah is not installed, unless `KILN_REQUIRE_CONFORMANCE` is set.

mod common;

use std::collections::BTreeMap;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value};

use common::images::{Entry, busybox_layout, image_config, push_layout, unpack};
use common::registry::{Auth, Registry};
use common::{Run, buildah, kiln, run_ok};

/// What both tools name the image they build.
const TAG: &str = "kiln-case:latest";

/// The members of the image config's `config` that are compared.
/// `Shell`, `Healthcheck` and `OnBuild` are Docker's extensions, which
/// BuildKit writes into OCI configs too.
const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Entrypoint",
    "Cmd",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// Comparisons skipped because buildah 1.28 departs there from Docker
/// (BuildKit), which kiln follows: (case, path or `config.FIELD`).
const BUILDAH_DEPARTS: &[(&str, &str)] = &[
    // ADD of an archive whose `.` entry is owned by 1000:1000: buildah
    // gives the destination directory that owner. Docker's untar skips `.`
    // when the destination exists, and BuildKit creates it first, owned by
    // root.
    ("add-archives", "/gz"),
];

#[test]
fn kiln_build_matches_buildah() {
    if !buildah::installed() {
        return;
    }
    assert_eq!(
        run_ok(Command::new("id").arg("-u")).trim(),
        "0",
        "this test runs as root: buildah builds, and umoci unpacks with owners"
    );
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(Auth::Anonymous);
    let busybox = busybox_layout(work.path());
    push_layout(&busybox, "latest", &registry.host(), "busybox");
    let base = format!("{}/busybox:latest", registry.host());
    let buildah = Buildah {
        root: work.path().join("buildah"),
    };

    let cases = cases();
    assert!(!cases.is_empty(), "no case matches KILN_BUILDAH_CASE");
    let mut failures = Vec::new();
    for case in &cases {
        let dir = work.path().join(&case.name);
        let context = case.context(&dir);
        let mut args = vec!["--build-arg".to_owned(), format!("BASE={base}")];
        args.extend(case.args());
        let expected = buildah.build(case, &context, &args, &dir);
        let found = match kiln_build(&context, &args, &dir) {
            Ok(actual) => differences(&actual, &expected)
                .into_iter()
                .filter(|(key, _)| !BUILDAH_DEPARTS.contains(&(case.name.as_str(), key.as_str())))
                .map(|(key, line)| format!("{key}: {line}"))
                .collect(),
            Err(why) => vec![format!("kiln build failed: {why}")],
        };
        buildah::record(&mut failures, &case.name, found);
    }
    buildah::assert_none_differ(&failures, cases.len());
}

/// One directory of `tests/buildah/`.
struct Case {
    name: String,
    dir: PathBuf,
}

/// Every case, by name, narrowed by `KILN_BUILDAH_CASE`.
fn cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/buildah");
    buildah::case_dirs(&root, "KILN_BUILDAH_CASE")
        .into_iter()
        .map(|(name, dir)| Case { name, dir })
        .collect()
}

impl Case {
    /// A copy of the case in `dir`, with its tarballs made: the build
    /// context, holding the Dockerfile.
    fn context(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let context = dir.join("context");
        // `cp -a` keeps the context's symlinks and modes as committed.
        run_ok(Command::new("cp").arg("-a").arg(&self.dir).arg(&context));
        for line in self.lines("tarballs") {
            let (name, tar_args) = line.split_first().unwrap();
            run_ok(
                Command::new("tar")
                    .args(["--create", "--auto-compress", "--sort=name", "--file"])
                    .arg(name)
                    .args(tar_args)
                    .current_dir(&context),
            );
        }
        context
    }

    /// The case's own flags for both tools.
    fn args(&self) -> Vec<String> {
        self.lines("args").into_iter().flatten().collect()
    }

    /// The words of each line of the case's file `name`, if it has one.
    fn lines(&self, name: &str) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.dir.join(name))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .filter(|words| !words.is_empty())
            .collect()
    }
}

/// An image as the comparison sees it.
struct Image {
    /// The compared members of the config's `config`, normalised.
    config: BTreeMap<&'static str, Value>,
    /// Every path of the unpacked root filesystem, from `/`.
    tree: BTreeMap<String, Entry>,
}

/// `kiln build` of the case into an OCI layout, read back.
fn kiln_build(context: &Path, args: &[String], dir: &Path) -> Result<Image, String> {
    let layout = dir.join("kiln-image");
    let dockerfile = context.join("Dockerfile");
    let output = format!("oci:{}", layout.display());
    let mut command = kiln(
        dir,
        &[
            "build",
            // The base image comes from the test's loopback registry.
            "--allow-net",
            "127.0.0.1",
            "-f",
            dockerfile.to_str().unwrap(),
            "-t",
            TAG,
            "--output",
            &output,
        ],
    );
    command
        .args(args)
        .arg(context)
        .env("DOCKER_CONFIG", dir.join("no-docker-config"));
    let run = Run::of(command);
    if run.code() != Some(0) {
        return Err(format!("exit {:?}\n{}", run.code(), run.all()));
    }
    let config = image_config(&layout)
        .map_err(|e| format!("{}: {e}", layout.display()))?
        .get("config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let tree = unpack(&layout, &dir.join("kiln-bundle"))?;
    Ok(Image {
        config: compared_config(&config),
        tree,
    })
}

/// buildah with storage of the test's own.
struct Buildah {
    /// Its image store and run state.
    root: PathBuf,
}

impl Buildah {
    /// `buildah` with its image store and run state under the test's
    /// directory; `vfs` needs no kernel overlay support.
    fn command(&self) -> Command {
        let mut command = Command::new("buildah");
        command
            .arg("--root")
            .arg(self.root.join("storage"))
            .arg("--runroot")
            .arg(self.root.join("run"))
            .args(["--storage-driver", "vfs"]);
        command
    }

    /// Build the case; the reference image. buildah failing is a fault in
    /// the case, not in kiln, so it panics.
    fn build(&self, case: &Case, context: &Path, args: &[String], dir: &Path) -> Image {
        // buildah 1.28 rejects `--link`, which changes how layers are
        // cut, not the files they hold: buildah reads a copy without it.
        let dockerfile = dir.join("buildah.Dockerfile");
        let text = std::fs::read_to_string(context.join("Dockerfile")).unwrap();
        let without_link: Vec<String> = text
            .lines()
            .map(|line| {
                let word = line.split_whitespace().next().unwrap_or("");
                if word.eq_ignore_ascii_case("COPY") || word.eq_ignore_ascii_case("ADD") {
                    line.replace(" --link ", " ")
                } else {
                    line.to_owned()
                }
            })
            .collect();
        std::fs::write(&dockerfile, without_link.join("\n") + "\n").unwrap();

        let built = self
            .command()
            .args(["bud", "--isolation", "chroot", "--tls-verify=false"])
            // The OCI format drops SHELL, HEALTHCHECK and ONBUILD (buildah
            // warns "not supported for OCI image format"); Docker's keeps
            // them, as BuildKit's OCI configs do.
            .args(["--format", "docker", "-f"])
            .arg(&dockerfile)
            .args(["-t", TAG])
            .args(args)
            .arg(context)
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "case `{}`: buildah bud failed (a fault in the case):\n{}{}",
            case.name,
            String::from_utf8_lossy(&built.stdout),
            String::from_utf8_lossy(&built.stderr)
        );

        // Pushing to an OCI layout converts the config to OCI's, without
        // the Docker extensions, so the config is read from buildah's
        // store, as written.
        let inspect: Value = serde_json::from_str(&run_ok(
            self.command().args(["inspect", "--type", "image", TAG]),
        ))
        .unwrap();
        let mut config = inspect["Docker"]["config"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        // buildah labels every image with its version; kiln has no reason
        // to.
        if let Some(Value::Object(labels)) = config.get_mut("Labels") {
            labels.remove("io.buildah.version");
        }

        let layout = dir.join("buildah-image");
        run_ok(
            self.command()
                .args(["push", "--quiet", TAG])
                .arg(format!("oci:{}:latest", layout.display())),
        );
        let tree = unpack(&layout, &dir.join("buildah-bundle"))
            .unwrap_or_else(|e| panic!("case `{}`: {e}", case.name));
        Image {
            config: compared_config(&config),
            tree,
        }
    }
}

/// The compared members of `config`, with "unset" spelled one way: absent,
/// null, "" and empty lists and maps all mean the same to a runtime.
fn compared_config(config: &Map<String, Value>) -> BTreeMap<&'static str, Value> {
    let mut compared = BTreeMap::new();
    for &field in CONFIG_FIELDS {
        let Some(mut value) = config.get(field).cloned() else {
            continue;
        };
        // Docker omits zero durations and retries ("use the default");
        // writing them as 0 means the same.
        if let (true, Value::Object(check)) = (field == "Healthcheck", &mut value) {
            check.retain(|_, v| v != &Value::from(0));
        }
        let unset = match &value {
            Value::Null => true,
            // BuildKit starts a stage FROM scratch in WorkingDir "/",
            // buildah in "": a runtime starts in "/" either way.
            Value::String(s) if field == "WorkingDir" => s.is_empty() || s == "/",
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        };
        if !unset {
            compared.insert(field, value);
        }
    }
    compared
}

/// Every way `actual` (kiln's) differs from `expected` (buildah's): the
/// path or `config.FIELD`, and both values.
fn differences(actual: &Image, expected: &Image) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for &field in CONFIG_FIELDS {
        let (kiln, buildah) = (actual.config.get(field), expected.config.get(field));
        if kiln != buildah {
            found.push((
                format!("config.{field}"),
                format!("{} | {}", shown(kiln), shown(buildah)),
            ));
        }
    }
    let paths: std::collections::BTreeSet<&String> =
        actual.tree.keys().chain(expected.tree.keys()).collect();
    for path in paths {
        let (kiln, buildah) = (actual.tree.get(path), expected.tree.get(path));
        if kiln != buildah {
            let show = |e: Option<&Entry>| e.map_or("(absent)".to_owned(), Entry::to_string);
            found.push((path.clone(), format!("{} | {}", show(kiln), show(buildah))));
        }
    }
    found
}

fn shown(value: Option<&Value>) -> String {
    value.map_or("(unset)".to_owned(), Value::to_string)
}
