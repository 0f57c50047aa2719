//! Base images made offline from Debian packages, so tests that build on
//! an image need no network: a busybox image from `busybox-static`, built
//! by umoci, and pushed with skopeo to a registry of the test's own; and
//! the readers tests check built images with (config, unpacked tree).

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::run_ok;

/// A new layout at `layout` with an empty image tagged `tag`, made by
/// umoci; returns the image's `LAYOUT:TAG` name.
pub fn umoci_new(layout: &Path, tag: &str) -> String {
    let image = format!("{}:{tag}", layout.display());
    run_ok(Command::new("umoci").args(["init", "--layout"]).arg(layout));
    run_ok(Command::new("umoci").args(["new", "--image", &image]));
    image
}

/// Where Debian's `busybox-static` installs its binary.
const BUSYBOX: &str = "/bin/busybox";

/// The applets linked to busybox in `/bin`.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "cp", "mv", "rm", "mkdir", "chmod", "chown", "ln", "test", "true",
    "false", "env", "id", "wget", "tar",
];

/// Docker's default `PATH`, which busybox images carry too.
const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Build, in `dir`, an OCI image layout holding a busybox image tagged
/// `latest`, and return the layout's path.
///
/// One layer, every entry owned by root: `/bin/busybox` with its applets
/// as symlinks, `/etc/passwd` and `/etc/group` with `root` and
/// `app` (1000:1000, home `/home/app`), and a sticky `/tmp`. The config has
/// Docker's default `PATH` and `Cmd ["sh"]`, as the Docker Hub image does.
pub fn busybox_layout(dir: &Path) -> PathBuf {
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing (apt-get install busybox-static)"
    );
    let rootfs = dir.join("busybox-rootfs");
    for (path, mode) in [
        ("", 0o755),
        ("bin", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("home/app", 0o755),
        ("tmp", 0o1777),
    ] {
        let path = rootfs.join(path);
        std::fs::create_dir_all(&path).unwrap();
        set_mode(&path, mode);
    }
    let busybox = rootfs.join("bin/busybox");
    std::fs::copy(BUSYBOX, &busybox).unwrap();
    set_mode(&busybox, 0o755);
    for applet in APPLETS {
        symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    for (path, content) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        ),
        ("etc/group", "root:x:0:\napp:x:1000:\n"),
    ] {
        let path = rootfs.join(path);
        std::fs::write(&path, content).unwrap();
        set_mode(&path, 0o644);
    }

    // Owners are set in the archive, so building the image needs no root.
    let layer = dir.join("busybox-layer.tar");
    run_ok(
        Command::new("tar")
            .args([
                "--create",
                "--sort=name",
                "--numeric-owner",
                "--owner=0",
                "--group=0",
                "--mtime=@0",
            ])
            .arg("--file")
            .arg(&layer)
            .arg("--directory")
            .arg(&rootfs)
            .arg("."),
    );
    one_layer_layout(&dir.join("busybox-layout"), &layer, "sh")
}

/// An OCI image layout at `layout` holding one image tagged `latest`: the
/// layer tar `layer`, `PATH` set, and `cmd` as its command.
pub fn one_layer_layout(layout: &Path, layer: &Path, cmd: &str) -> PathBuf {
    let image = umoci_new(layout, "latest");
    run_ok(
        Command::new("umoci")
            .args(["raw", "add-layer", "--image", &image])
            .arg(layer),
    );
    run_ok(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.env",
        PATH,
        "--config.cmd",
        cmd,
    ]));
    run_ok(Command::new("umoci").args(["gc", "--layout"]).arg(layout));
    layout.to_path_buf()
}

/// Push the image tagged `tag` in the OCI layout `layout` to
/// `registry_host/repo:tag`, over plain HTTP (skopeo).
pub fn push_layout(layout: &Path, tag: &str, registry_host: &str, repo: &str) {
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{registry_host}/{repo}:{tag}")),
    );
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The image config of the manifest tagged `latest` in an OCI layout.
pub fn image_config(layout: &Path) -> Result<Value, String> {
    let blob = |digest: &Value| -> Result<Value, String> {
        let digest = digest.as_str().ok_or("a descriptor without a digest")?;
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("{digest} is not sha256"))?;
        let path = layout.join("blobs/sha256").join(hex);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    };
    let index = std::fs::read(layout.join("index.json")).map_err(|e| format!("index.json: {e}"))?;
    let index: Value = serde_json::from_slice(&index).map_err(|e| format!("index.json: {e}"))?;
    let tagged = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "latest")
        .ok_or("index.json has no manifest annotated org.opencontainers.image.ref.name=latest")?;
    let mut manifest = blob(&tagged["digest"])?;
    // An index (one platform's image in it) leads to the manifest.
    while manifest.get("manifests").is_some() {
        manifest = blob(&manifest["manifests"][0]["digest"])?;
    }
    blob(&manifest["config"]["digest"])
}

/// What a path of a root filesystem is; mtimes are left out.
#[derive(PartialEq)]
pub struct Entry {
    pub kind: &'static str,
    /// Permission bits, with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// A file's bytes or a symlink's target.
    pub content: Vec<u8>,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:04o} {}:{}",
            self.kind, self.mode, self.uid, self.gid
        )?;
        match (self.kind, std::str::from_utf8(&self.content)) {
            ("symlink", Ok(target)) => write!(f, " -> {target}"),
            ("file", Ok(text)) if text.len() <= 80 => write!(f, " {text:?}"),
            ("file", _) => write!(f, " ({} bytes)", self.content.len()),
            _ => Ok(()),
        }
    }
}

/// `umoci unpack` the image tagged `latest` of `layout` into `bundle`.
pub fn umoci_unpack(layout: &Path, bundle: &Path) -> Result<(), String> {
    let output = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", layout.display()))
        .arg(bundle)
        .output()
        .map_err(|e| format!("umoci: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "umoci unpack {} failed: {}",
            layout.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// `umoci unpack` the image tagged `latest` of `layout` into `bundle`;
/// its root filesystem, path by path.
pub fn unpack(layout: &Path, bundle: &Path) -> Result<BTreeMap<String, Entry>, String> {
    umoci_unpack(layout, bundle)?;
    let rootfs = bundle.join("rootfs");
    let mut tree = BTreeMap::new();
    walk(&rootfs, &rootfs, &mut tree);
    Ok(tree)
}

fn walk(rootfs: &Path, path: &Path, tree: &mut BTreeMap<String, Entry>) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let kind = meta.file_type();
    let (kind, content) = if kind.is_dir() {
        ("dir", Vec::new())
    } else if kind.is_symlink() {
        let target = std::fs::read_link(path).unwrap();
        ("symlink", target.into_os_string().into_encoded_bytes())
    } else if kind.is_file() {
        ("file", std::fs::read(path).unwrap())
    } else if kind.is_fifo() {
        ("fifo", Vec::new())
    } else if kind.is_char_device() || kind.is_block_device() {
        ("device", meta.rdev().to_le_bytes().to_vec())
    } else {
        ("socket", Vec::new())
    };
    let name = format!("/{}", path.strip_prefix(rootfs).unwrap().display());
    tree.insert(
        name,
        Entry {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            content,
        },
    );
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            walk(rootfs, &entry.unwrap().path(), tree);
        }
    }
}

/// `podman ARGS` with its storage in `dir` (vfs, no daemon, no systemd),
/// as a root CI job can run it.
pub fn podman(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("podman");
    command.args([
        "--root",
        dir.join("root").to_str().unwrap(),
        "--runroot",
        dir.join("run").to_str().unwrap(),
        "--storage-driver",
        "vfs",
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
        "--runtime",
        "runc",
    ]);
    command.args(args);
    command
}

/// Load the docker archive `archive` into podman's storage in `dir` and
/// run `command` in its image `image` (no network, the limits a CI
/// container has); returns what it printed.
pub fn podman_run(dir: &Path, archive: &Path, image: &str, command: &[&str]) -> String {
    run_ok(&mut podman(
        dir,
        &["load", "--input", archive.to_str().unwrap()],
    ));
    let mut args = vec![
        "run",
        "--rm",
        "--network",
        "none",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=20000:20000",
        image,
    ];
    args.extend_from_slice(command);
    run_ok(&mut podman(dir, &args))
}

/// A build context for RUN tests: Debian's static busybox, and a
/// Dockerfile that installs it on `scratch` (with a world-writable `/tmp`)
/// before `rest`.
pub fn busybox_run_context(rest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("/bin/busybox", dir.path().join("busybox"))
        .expect("busybox-static (tests/run installs it)");
    let prelude = "FROM scratch\nCOPY busybox /bin/busybox\n\
                   RUN [\"/bin/busybox\", \"mkdir\", \"-p\", \"/usr/bin\", \"/sbin\", \"/usr/sbin\", \"/tmp\"]\n\
                   RUN [\"/bin/busybox\", \"--install\", \"-s\"]\nRUN chmod 1777 /tmp\n";
    std::fs::write(dir.path().join("Dockerfile"), format!("{prelude}{rest}")).unwrap();
    dir
}

/// The image kiln wrote to the layout `dir/out` (tag `latest`), unpacked
/// by umoci into `dir/bundle`: its root file system.
pub fn unpack_rootfs(dir: &Path) -> std::path::PathBuf {
    let bundle = dir.join("bundle");
    let _ = std::fs::remove_dir_all(&bundle);
    if let Err(e) = unpack(&dir.join("out"), &bundle) {
        panic!("{e}");
    }
    bundle.join("rootfs")
}
