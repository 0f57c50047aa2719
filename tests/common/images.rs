//! Base images made offline from Debian packages, so tests that build on
//! an image need no network: a busybox image from `busybox-static`, built
//! by umoci, and pushed with skopeo to a registry of the test's own.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::run_ok;

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
    let layout = dir.join("busybox-layout");
    let image = format!("{}:latest", layout.display());
    run_ok(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
    );
    run_ok(Command::new("umoci").args(["new", "--image", &image]));
    run_ok(
        Command::new("umoci")
            .args(["raw", "add-layer", "--image", &image])
            .arg(&layer),
    );
    run_ok(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.env",
        PATH,
        "--config.cmd",
        "sh",
    ]));
    run_ok(Command::new("umoci").args(["gc", "--layout"]).arg(&layout));
    layout
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
