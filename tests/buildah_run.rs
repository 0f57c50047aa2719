//! Dockerfile RUN, kiln against buildah. Each directory of
//! `tests/data/run-diff/BASE/` is a Dockerfile (starting `ARG BASE` and
//! `FROM $BASE`) and its context; kiln (`--allow-run`) and buildah
//! (`bud --isolation chroot`) build it from the same base image, served by
//! a registry of the test's own, and the two images must agree:
//!
//! - their unpacked file trees (umoci): the same paths, each of the same
//!   kind, permission bits, owner, contents (sha256) or link target, and
//!   the same hard-link groups; mtimes are not compared;
//! - their configs: Env, Cmd, Entrypoint, WorkingDir, User, Labels,
//!   ExposedPorts, Volumes;
//! - their histories' shape: one entry per instruction, the same ones
//!   marked empty, and each RUN's command.
//!
//! Where the two differ by design, it is said where the comparison makes
//! up for it: the run-time mount points and files buildah leaves in every
//! RUN's layer (`BUILDAH_LEFTOVERS`), the paths of a case where buildah
//! departs from Docker (BuildKit), which kiln follows (`BUILDAH_DEPARTS`),
//! Env's order (`compared_config`) and the history's wording (`Step`).
//! Nothing else is ignored.
//!
//! Bases: `busybox/` builds on Debian's static busybox with every applet
//! linked, `debian/` on a Debian bookworm minbase made by mmdebstrap
//! (`common::debian`). A case may also hold `args` (flags for both tools,
//! split at whitespace) and `secrets` (`ID=VALUE` lines, given to both as
//! `--secret id=ID,src=FILE`). Neither is part of the context.
//!
//! `KILN_RUN_DIFF_CASE=NAME` runs only the cases whose name contains NAME;
//! `KILN_RUN_DIFF_KEEP=1` keeps the images and unpacked trees, and prints
//! where.
//! Runs as root (buildah, and umoci unpacking with owners). Skips when
//! buildah is not installed, unless `KILN_REQUIRE_CONFORMANCE` is set.
//!
//! `tests/data/run-diff/apt/` is not compared: kiln's RUN reaches the
//! Debian mirror through its proxy only when the build grants the host.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

use common::debian::{APT_CONF, debian_layout};
use common::images::{busybox_layout, image_config, push_layout, umoci_unpack};
use common::registry::{Auth, Registry};
use common::{Run, buildah, kiln, run_ok};

/// What both tools name the image they build; `latest` tags it in the
/// OCI layouts.
const TAG: &str = "run-diff:latest";

/// The base image's repository in the test's registry, tagged `latest`
/// as in the layouts that make it.
const BASE: &str = "base";

/// The members of the image config's `config` that are compared.
const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
];

/// Paths buildah 1.28 (`--isolation chroot`) leaves in the layer of every
/// RUN and kiln by design does not (README, "### RUN": nothing from
/// `/proc`, `/sys`, `/dev` or a mount target reaches a layer): the mount
/// points of its run-time file systems, created as empty directories, and
/// the files it binds over `/etc`, created empty with mode 0755. They are
/// ignored where buildah's image has them empty and kiln's has nothing.
const BUILDAH_LEFTOVERS: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/run",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
];

/// A path of one case where buildah 1.28 departs from Docker (BuildKit),
/// which kiln follows.
struct Departure {
    case: &'static str,
    path: &'static str,
    /// Whether only the hard-link group is left out of the comparison;
    /// otherwise the whole path is.
    hard_links_only: bool,
    why: &'static str,
}

/// Every departure the cases show, printed when a case is compared.
const BUILDAH_DEPARTS: &[Departure] = &[
    // `ln` to a file of an earlier layer: on overlayfs (Docker, BuildKit)
    // the link copies the file up, so the layer holds both names as one
    // hard-link group, as kiln's does; buildah's vfs diff writes only the
    // new name, so the two are separate files in the image.
    Departure {
        case: "links",
        path: "/bin/busybox",
        hard_links_only: true,
        why: "buildah's vfs diff breaks a hard link to a lower layer's file",
    },
    Departure {
        case: "links",
        path: "/l/busybox-hard",
        hard_links_only: true,
        why: "buildah's vfs diff breaks a hard link to a lower layer's file",
    },
    Departure {
        case: "links",
        path: "/etc/passwd",
        hard_links_only: true,
        why: "buildah's vfs diff breaks a hard link to a lower layer's file",
    },
    Departure {
        case: "links",
        path: "/l/passwd-hard",
        hard_links_only: true,
        why: "buildah's vfs diff breaks a hard link to a lower layer's file",
    },
    // A cache mount over a directory the image has: buildah's layer
    // deletes the directory and what it held; BuildKit leaves both.
    Departure {
        case: "cache-mount",
        path: "/var/cache/existing",
        hard_links_only: false,
        why: "buildah deletes a cache mount's existing target",
    },
    Departure {
        case: "cache-mount",
        path: "/var/cache/existing/kept",
        hard_links_only: false,
        why: "buildah deletes a cache mount's existing target",
    },
    // A secret's target whose directories the image lacks: buildah makes
    // them and leaves them in the layer; kiln leaves nothing of a mount.
    Departure {
        case: "secret-mount",
        path: "/run/secrets",
        hard_links_only: false,
        why: "buildah leaves the directories it made for a mount target",
    },
    Departure {
        case: "secret-mount",
        path: "/etc/app",
        hard_links_only: false,
        why: "buildah leaves the directories it made for a mount target",
    },
    // What RUN writes under a VOLUME declared before it: BuildKit keeps
    // it (moby/buildkit#880), buildah 1.28 drops it, as Docker's classic
    // builder did.
    Departure {
        case: "multi-stage",
        path: "/data/after",
        hard_links_only: false,
        why: "buildah drops what RUN writes to a VOLUME",
    },
    // groupadd backs /etc/group up to /etc/group-, with the original's
    // size and mtime, which the base's /etc/group- has too: buildah's vfs
    // diff compares those and misses the new content.
    Departure {
        case: "dpkg-users",
        path: "/etc/group-",
        hard_links_only: false,
        why: "buildah's vfs diff misses a change that keeps size and mtime",
    },
];

#[test]
fn busybox_runs_match_buildah() {
    compare_base("busybox", busybox_with_applets);
}

#[test]
fn debian_runs_match_buildah() {
    compare_base("debian", debian_layout);
}

/// Push the base image `layout` makes, build every case of
/// `tests/data/run-diff/NAME/` with both tools, and fail listing every
/// difference of every case.
fn compare_base(name: &str, layout: fn(&Path) -> PathBuf) {
    if !buildah::installed() {
        return;
    }
    let cases = cases(name);
    if cases.is_empty() {
        return;
    }
    assert_eq!(
        run_ok(Command::new("id").arg("-u")).trim(),
        "0",
        "this test runs as root: buildah builds, and umoci unpacks with owners"
    );
    let mut work = tempfile::tempdir().unwrap();
    if std::env::var_os("KILN_RUN_DIFF_KEEP").is_some() {
        work.disable_cleanup(true);
        eprintln!("keeping {}", work.path().display());
    }
    let registry = Registry::start(Auth::Anonymous);
    push_layout(&layout(work.path()), "latest", &registry.host(), BASE);
    let builds = Builds {
        registry: registry.host(),
        base: format!("{}/{BASE}:latest", registry.host()),
        buildah_root: work.path().join("buildah"),
    };
    std::fs::create_dir_all(builds.buildah_root.join("tmp")).unwrap();

    let mut failures = Vec::new();
    for case in &cases {
        let dir = work.path().join(&case.name);
        let context = case.context(&dir);
        let expected = builds.buildah(case, &context, &dir);
        let found = match builds.kiln(case, &context, &dir) {
            Ok(actual) => differences(&case.name, &actual, &expected),
            Err(why) => vec![format!("kiln build failed: {why}")],
        };
        buildah::record(&mut failures, &format!("{name}/{}", case.name), found);
    }
    buildah::assert_none_differ(&failures, cases.len());
}

/// Debian's static busybox with every applet it has linked where
/// `busybox --list-full` puts it: `common::images`'s busybox image (root
/// and `app` users, a sticky `/tmp`) and a second layer of the applets.
fn busybox_with_applets(dir: &Path) -> PathBuf {
    let layout = busybox_layout(dir);
    let applets = dir.join("applets-rootfs");
    let list = run_ok(Command::new("/bin/busybox").arg("--list-full"));
    // The list names busybox itself too.
    for path in list.lines().filter(|path| *path != "bin/busybox") {
        let path = applets.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        symlink("/bin/busybox", path).unwrap();
    }
    // The test runs as root, so umoci records the applets as root's.
    run_ok(
        Command::new("umoci")
            .args(["insert", "--image"])
            .arg(format!("{}:latest", layout.display()))
            .arg(&applets)
            .arg("/"),
    );
    layout
}

/// One directory of `tests/data/run-diff/BASE/`.
struct Case {
    name: String,
    dir: PathBuf,
}

/// The files of a case that are not part of its context.
const CASE_FILES: &[&str] = &["args", "secrets"];

/// Every case of `base`, by name, narrowed by `KILN_RUN_DIFF_CASE`.
fn cases(base: &str) -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/run-diff")
        .join(base);
    buildah::case_dirs(&root, "KILN_RUN_DIFF_CASE")
        .into_iter()
        .map(|(name, dir)| Case { name, dir })
        .collect()
}

impl Case {
    /// A copy of the case in `dir`, without its `args` and `secrets`: the
    /// build context, holding the Dockerfile.
    fn context(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let context = dir.join("context");
        run_ok(Command::new("cp").arg("-a").arg(&self.dir).arg(&context));
        for name in CASE_FILES {
            let _ = std::fs::remove_file(context.join(name));
        }
        context
    }

    /// The case's own flags for both tools.
    fn args(&self) -> Vec<String> {
        self.text("args")
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    /// `--secret id=ID,src=FILE` for each of the case's secrets, as both
    /// tools take them, each written to a file in `dir`.
    fn secret_flags(&self, dir: &Path) -> Vec<String> {
        let mut flags = Vec::new();
        for (id, value) in self
            .text("secrets")
            .lines()
            .filter_map(|l| l.split_once('='))
        {
            let file = dir.join(format!("secret-{id}"));
            std::fs::write(&file, value).unwrap();
            flags.push("--secret".to_owned());
            flags.push(format!("id={id},src={}", file.display()));
        }
        flags
    }

    fn text(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

/// Where both tools build from, and buildah's storage for the test.
struct Builds {
    /// The test's registry, `127.0.0.1:PORT`.
    registry: String,
    /// The base image's reference in it.
    base: String,
    /// buildah's image store and run state, private to the test.
    buildah_root: PathBuf,
}

impl Builds {
    /// `kiln build --allow-run` of the case, read back.
    fn kiln(&self, case: &Case, context: &Path, dir: &Path) -> Result<Image, String> {
        let layout = dir.join("kiln-image");
        let output = format!("oci:{}", layout.display());
        let mut command = kiln(
            dir,
            &[
                "build",
                "--allow-run",
                "--allow-net",
                &self.registry,
                "--build-arg",
                &format!("BASE={}", self.base),
                "-t",
                TAG,
                "--output",
                &output,
            ],
        );
        command
            .args(case.args())
            .args(case.secret_flags(dir))
            .arg(context);
        let run = Run::of(command);
        if run.code() != Some(0) {
            return Err(format!("exit {:?}\n{}", run.code(), run.all()));
        }
        Image::read(&layout, &dir.join("kiln-bundle"))
    }

    /// `buildah bud` of the case, pushed to an OCI layout and read back;
    /// the reference image. buildah failing is a fault in the case, so it
    /// panics.
    fn buildah(&self, case: &Case, context: &Path, dir: &Path) -> Image {
        let mut command = self.buildah_command();
        command
            .args(["bud", "--isolation", "chroot", "--tls-verify=false"])
            // A layer per instruction, as kiln writes them.
            .arg("--layers")
            // The OCI format makes buildah ignore SHELL (it warns "SHELL is
            // not supported for OCI image format") and run every RUN with
            // /bin/sh; Docker's format keeps it. The push below writes an
            // OCI image either way.
            .args(["--format", "docker"])
            .arg("--build-arg")
            .arg(format!("BASE={}", self.base))
            .args(["-t", TAG])
            .args(case.args());
        let built = command
            .args(case.secret_flags(dir))
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
        let layout = dir.join("buildah-image");
        run_ok(
            self.buildah_command()
                .args(["push", "--quiet", TAG])
                .arg(format!("oci:{}:latest", layout.display())),
        );
        Image::read(&layout, &dir.join("buildah-bundle"))
            .unwrap_or_else(|e| panic!("case `{}`: {e}", case.name))
    }

    /// `buildah` with the test's storage; `vfs` needs no kernel overlay.
    fn buildah_command(&self) -> Command {
        let mut command = Command::new("buildah");
        command
            .arg("--root")
            .arg(self.buildah_root.join("storage"))
            .arg("--runroot")
            .arg(self.buildah_root.join("run"))
            .args(["--storage-driver", "vfs"])
            // Cache mounts live under $TMPDIR (/var/tmp by default), shared
            // by every build on the machine otherwise.
            .env("TMPDIR", self.buildah_root.join("tmp"));
        command
    }
}

/// An image as the comparison sees it.
struct Image {
    /// The compared members of the config's `config`, normalised.
    config: BTreeMap<&'static str, Value>,
    /// The history, one entry per instruction.
    history: Vec<Step>,
    /// Every path of the unpacked root filesystem.
    tree: Tree,
}

impl Image {
    /// The image tagged `latest` in `layout`, unpacked by umoci into
    /// `bundle`.
    fn read(layout: &Path, bundle: &Path) -> Result<Image, String> {
        let config = image_config(layout).map_err(|e| format!("{}: {e}", layout.display()))?;
        umoci_unpack(layout, bundle)?;
        Ok(Image {
            config: compared_config(&config["config"]),
            history: config["history"]
                .as_array()
                .into_iter()
                .flatten()
                .map(Step::of)
                .collect(),
            tree: Tree::read(&bundle.join("rootfs")),
        })
    }
}

/// The compared members of `config`, with "unset" spelled one way: absent,
/// null, "" and empty lists and maps all mean the same to a runtime.
fn compared_config(config: &Value) -> BTreeMap<&'static str, Value> {
    let mut compared = BTreeMap::new();
    for &field in CONFIG_FIELDS {
        let Some(mut value) = config.get(field).cloned() else {
            continue;
        };
        // buildah labels every image with its version; kiln has no reason
        // to.
        if let Value::Object(labels) = &mut value
            && field == "Labels"
        {
            labels.remove("io.buildah.version");
        }
        // ENV of a variable the image has: Docker (BuildKit) and kiln
        // replace it where it is, buildah moves it to the end. Names are
        // unique in both, so the order means nothing to a runtime.
        if let Value::Array(env) = &mut value
            && field == "Env"
        {
            env.sort_by_key(Value::to_string);
        }
        let unset = match &value {
            Value::Null => true,
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

/// One history entry, as far as the two tools are meant to agree.
///
/// The wording differs by design (`HISTORY_SHAPE`): buildah writes
/// Docker's classic `/bin/sh -c #(nop) ENV A=b`, and for RUN the shell,
/// prefixed by `|N NAME=VALUE...` when build arguments are in scope; kiln
/// writes the instruction as the Dockerfile has it, `ENV A=b`,
/// `RUN echo hi`, without the build arguments' values, and with a
/// continued line's whitespace collapsed (the command it runs keeps it).
/// Compared: whether the entry has a layer, the instruction, and for RUN
/// the command up to whitespace.
#[derive(PartialEq)]
struct Step {
    empty_layer: bool,
    /// `RUN`, `ENV`, ...; the whole `created_by` of entries neither tool
    /// wrote (the base's).
    instruction: String,
    /// A RUN's command as the Dockerfile has it, mounts left out.
    command: Option<String>,
}

/// Why history entries are compared by shape rather than by text.
const HISTORY_SHAPE: &str = "compared: has a layer, instruction, RUN's command";

impl Step {
    fn of(entry: &Value) -> Step {
        let empty_layer = entry["empty_layer"].as_bool().unwrap_or(false);
        let created_by = entry["created_by"].as_str().unwrap_or_default().trim();
        if let Some(command) = created_by.strip_prefix("RUN ") {
            // kiln's.
            return Step::run(empty_layer, command);
        }
        if let Some((_, instruction)) = created_by.split_once("#(nop) ") {
            // buildah's, of an instruction without a layer.
            let keyword = instruction.split_whitespace().next().unwrap_or_default();
            return Step {
                empty_layer,
                instruction: keyword.to_owned(),
                command: None,
            };
        }
        if let Some(keyword) = created_by
            .split_whitespace()
            .next()
            .filter(|word| word.chars().all(|c| c.is_ascii_uppercase()))
        {
            // kiln's, of an instruction without a layer (`ENV A=b`).
            return Step {
                empty_layer,
                instruction: keyword.to_owned(),
                command: None,
            };
        }
        if !created_by.starts_with("umoci ") {
            // buildah's RUN: `[|N NAME=VALUE... ]SHELL... COMMAND`; its
            // command is what follows the shell, which the comparison
            // finds by the command kiln wrote (`same_run`).
            return Step::run(empty_layer, created_by);
        }
        Step {
            empty_layer,
            instruction: created_by.to_owned(),
            command: None,
        }
    }

    fn run(empty_layer: bool, command: &str) -> Step {
        // Both write `--mount=...` flags before the command, or neither;
        // the command is what matters.
        let mut command = command.trim();
        while let Some(rest) = command.strip_prefix("--") {
            command = rest
                .split_once(' ')
                .map_or("", |(_, rest)| rest)
                .trim_start();
        }
        Step {
            empty_layer,
            instruction: "RUN".to_owned(),
            command: Some(command.to_owned()),
        }
    }

    /// Whether kiln's entry `self` and buildah's `other` describe the same
    /// instruction: buildah's RUN text ends with kiln's command.
    fn same_as(&self, other: &Step) -> bool {
        // WORKDIR of a directory the image lacks: kiln makes it in a layer
        // of its own, as BuildKit does; buildah makes it in the next RUN's
        // layer and marks WORKDIR empty. The trees agree either way.
        let layers_agree = self.empty_layer == other.empty_layer || self.instruction == "WORKDIR";
        let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
        layers_agree
            && self.instruction == other.instruction
            && match (&self.command, &other.command) {
                (Some(kiln), Some(buildah)) => words(buildah).ends_with(&words(kiln)),
                (kiln, buildah) => kiln == buildah,
            }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.instruction)?;
        if let Some(command) = &self.command {
            write!(f, " {command}")?;
        }
        if self.empty_layer {
            write!(f, " (no layer)")?;
        }
        Ok(())
    }
}

/// A root filesystem, path by path (`/`, `/bin`, ...).
struct Tree(BTreeMap<String, Node>);

/// What a path is, as compared: mtimes left out.
#[derive(Clone, PartialEq)]
struct Node {
    kind: Kind,
    /// Permission bits, with setuid, setgid and sticky.
    mode: u32,
    uid: u32,
    gid: u32,
    /// The other paths of its hard-link group, sorted; empty for a file
    /// with one link and for everything but files.
    hard_links: Vec<String>,
}

#[derive(Clone, PartialEq)]
enum Kind {
    Dir,
    /// A file's size and digest, and its text when short enough to show.
    File {
        size: u64,
        sha256: String,
        text: Option<String>,
    },
    Symlink(String),
    Fifo,
    Device(u64),
    Socket,
}

impl Tree {
    /// Every path under `root`, not following symlinks.
    fn read(root: &Path) -> Tree {
        let mut nodes = BTreeMap::new();
        let mut inodes: HashMap<u64, Vec<String>> = HashMap::new();
        let mut pending = vec![root.to_owned()];
        while let Some(path) = pending.pop() {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let name = format!("/{}", path.strip_prefix(root).unwrap().display());
            let file_type = meta.file_type();
            let kind = if file_type.is_dir() {
                for entry in std::fs::read_dir(&path).unwrap() {
                    pending.push(entry.unwrap().path());
                }
                Kind::Dir
            } else if file_type.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                Kind::Symlink(target.to_string_lossy().into_owned())
            } else if file_type.is_file() {
                if meta.nlink() > 1 {
                    inodes.entry(meta.ino()).or_default().push(name.clone());
                }
                let bytes = std::fs::read(&path).unwrap();
                Kind::File {
                    size: meta.len(),
                    sha256: hex::encode(Sha256::digest(&bytes)),
                    text: String::from_utf8(bytes)
                        .ok()
                        .filter(|text| text.len() <= 100),
                }
            } else if file_type.is_fifo() {
                Kind::Fifo
            } else if file_type.is_char_device() || file_type.is_block_device() {
                Kind::Device(meta.rdev())
            } else {
                Kind::Socket
            };
            let node = Node {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                hard_links: Vec::new(),
            };
            nodes.insert(name, node);
        }
        for group in inodes.values() {
            for path in group {
                let mut others: Vec<String> =
                    group.iter().filter(|p| *p != path).cloned().collect();
                others.sort();
                nodes.get_mut(path).unwrap().hard_links = others;
            }
        }
        Tree(nodes)
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Dir => "dir".to_owned(),
            Kind::File {
                text: Some(text), ..
            } => format!("file {text:?}"),
            Kind::File { size, sha256, .. } => {
                format!("file {size} bytes sha256:{}", &sha256[..12])
            }
            Kind::Symlink(target) => format!("symlink -> {target}"),
            Kind::Fifo => "fifo".to_owned(),
            Kind::Device(rdev) => format!("device {rdev:#x}"),
            Kind::Socket => "socket".to_owned(),
        };
        write!(f, "{kind} {:04o} {}:{}", self.mode, self.uid, self.gid)?;
        if !self.hard_links.is_empty() {
            write!(f, " linked to {}", self.hard_links.join(", "))?;
        }
        Ok(())
    }
}

/// Whether buildah's `node` at `path`, absent from kiln's image, is one of
/// the run-time mount points and bound files of `BUILDAH_LEFTOVERS`.
fn buildah_leftover(path: &str, node: &Node) -> bool {
    let empty = match &node.kind {
        Kind::Dir => true,
        Kind::File { size, .. } => *size == 0,
        _ => false,
    };
    empty && node.uid == 0 && BUILDAH_LEFTOVERS.contains(&path)
}

/// Every way `actual` (kiln's) differs from `expected` (buildah's), one
/// line each: the config field, history entry or path, and both values.
fn differences(case: &str, actual: &Image, expected: &Image) -> Vec<String> {
    let mut found = Vec::new();
    for &field in CONFIG_FIELDS {
        let (kiln, buildah) = (actual.config.get(field), expected.config.get(field));
        if kiln != buildah {
            let show = |v: Option<&Value>| v.map_or("(unset)".to_owned(), Value::to_string);
            found.push(format!(
                "config.{field}: {} | {}",
                show(kiln),
                show(buildah)
            ));
        }
    }
    let steps = actual.history.len().max(expected.history.len());
    for index in 0..steps {
        let (kiln, buildah) = (actual.history.get(index), expected.history.get(index));
        let same = match (kiln, buildah) {
            (Some(kiln), Some(buildah)) => kiln.same_as(buildah),
            _ => false,
        };
        if !same {
            let show = |s: Option<&Step>| s.map_or("(absent)".to_owned(), Step::to_string);
            found.push(format!(
                "history[{index}] ({HISTORY_SHAPE}): {} | {}",
                show(kiln),
                show(buildah)
            ));
        }
    }
    let paths: BTreeSet<&String> = actual.tree.0.keys().chain(expected.tree.0.keys()).collect();
    for path in paths {
        let (kiln, buildah) = (actual.tree.0.get(path), expected.tree.0.get(path));
        if kiln == buildah {
            continue;
        }
        if let (None, Some(node)) = (kiln, buildah)
            && buildah_leftover(path, node)
        {
            continue;
        }
        if let Some(departure) = BUILDAH_DEPARTS
            .iter()
            .find(|d| d.case == case && d.path == path.as_str())
        {
            let unlinked = |node: Option<&Node>| {
                node.cloned().map(|node| Node {
                    hard_links: Vec::new(),
                    ..node
                })
            };
            if !departure.hard_links_only || unlinked(kiln) == unlinked(buildah) {
                eprintln!("{case}: {path} not compared: {}", departure.why);
                continue;
            }
        }
        let show = |n: Option<&Node>| n.map_or("(absent)".to_owned(), Node::to_string);
        found.push(format!("{path}: {} | {}", show(kiln), show(buildah)));
    }
    found
}

/// apt-get in a RUN on the Debian base reaches the mirror through kiln's
/// proxy when the build grants the mirror's host, and not at all
/// otherwise. As root kiln maps every id, so apt's sandbox user (`_apt`)
/// works without `APT::Sandbox::User "root"`.
#[test]
fn apt_get_reaches_the_mirror_only_when_granted() {
    if !Path::new("/usr/bin/mmdebstrap").exists()
        && std::env::var_os("KILN_REQUIRE_CONFORMANCE").is_none()
    {
        eprintln!("skipping: mmdebstrap is not installed (apt-get install mmdebstrap)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(Auth::Anonymous);
    push_layout(
        &debian_layout(work.path()),
        "latest",
        &registry.host(),
        BASE,
    );
    let base = format!("BASE={}/{BASE}:latest", registry.host());

    let context = work.path().join("context");
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/run-diff/apt"))
            .arg(&context),
    );
    let hosts = apt_configuration(&context);

    let build = |allow_net: &[String], output: &str| {
        let mut args = vec!["build", "--allow-run", "--no-cache", "--allow-net"];
        let registry_host = registry.host();
        args.push(&registry_host);
        for host in allow_net {
            args.extend(["--allow-net", host]);
        }
        args.extend(["--build-arg", &base, "-t", TAG, "-o", output, "."]);
        Run::of(kiln(&context, &args))
    };

    let granted = build(&hosts, "oci:granted");
    let text = granted.ok();
    assert!(text.contains("ran with"), "{text}");
    let root = Image::read(&context.join("granted"), &work.path().join("bundle"))
        .unwrap()
        .tree;
    let curl = root
        .0
        .get("/usr/bin/curl")
        .expect("the image has /usr/bin/curl");
    assert!(
        matches!(curl.kind, Kind::File { .. }) && curl.mode & 0o111 != 0,
        "/usr/bin/curl: {curl}"
    );

    // The registry stays granted (the base comes from it), so RUN has
    // kiln's proxy, which refuses the mirror: `denied HTTP request to
    // deb.debian.org:80`, and apt's 403.
    let refused = build(&[], "oci:refused");
    assert_ne!(refused.code(), Some(0), "{}", refused.all());
    let text = refused.all();
    assert!(
        text.contains("denied")
            || text.contains("Could not resolve")
            || text.contains("Unable to connect"),
        "neither kiln's denial nor apt's failure to reach the mirror:\n{text}"
    );
    assert!(!context.join("refused/index.json").exists());
}

/// Copy this machine's apt sources and options into `context/apt/` (the
/// Dockerfile copies them into the image); returns the hosts they name.
/// A machine without them gets Debian's mirror.
fn apt_configuration(context: &Path) -> Vec<String> {
    let dir = context.join("apt");
    std::fs::create_dir_all(&dir).unwrap();
    let sources = Path::new("/etc/apt/sources.list.d/debian.sources");
    let text = std::fs::read_to_string(sources).unwrap_or_else(|_| {
        format!(
            "Types: deb\nURIs: {}\nSuites: bookworm bookworm-updates\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
            common::debian::MIRROR
        )
    });
    std::fs::write(dir.join("debian.sources"), &text).unwrap();
    let options = std::fs::read_to_string(APT_CONF).unwrap_or_default();
    std::fs::write(dir.join("99artifact-registry"), options).unwrap();
    let mut hosts: Vec<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("URIs:"))
        .flat_map(str::split_whitespace)
        .filter_map(|uri| uri.split_once("://"))
        .map(|(_, rest)| rest.split('/').next().unwrap_or_default().to_owned())
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}
