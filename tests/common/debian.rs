//! A Debian bookworm minbase image, for tests whose RUN needs dpkg, apt
//! and useradd: the root filesystem is made once by `mmdebstrap` from the
//! machine's mirror, cached as a tarball outside the repository, and made
//! into an OCI layout by umoci on each use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use super::images::one_layer_layout;
use super::run_ok;

/// The mirror the root filesystem comes from; tests that let RUN reach it
/// grant this host.
pub const MIRROR: &str = "http://deb.debian.org/debian";

/// Apt options of this machine, needed to use its mirror (a snapshot:
/// Release files past their Valid-Until). Used while mmdebstrap installs,
/// and copied into images by tests that run apt-get.
pub const APT_CONF: &str = "/etc/apt/apt.conf.d/99artifact-registry";

/// Builds in this process take turns, so the tarball is made once.
static BUILDING: Mutex<()> = Mutex::new(());

/// The cached minbase root filesystem, an uncompressed tar made by
/// `mmdebstrap --variant=minbase bookworm`; built on first use (about a
/// minute through the mirror; tests/run builds it before the tests).
///
/// The name carries no date: the mirror is a snapshot, so the tar holds
/// the same packages whenever it is made. Delete it to make it anew.
pub fn rootfs_tarball() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set")
        .join("kiln-test-tools");
    let tarball = cache.join("debian-bookworm-minbase.tar");
    let _turn = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if tarball.is_file() {
        return tarball;
    }
    std::fs::create_dir_all(&cache).unwrap();
    // Made beside the cache and renamed, so a build cut short leaves no
    // tarball that looks complete.
    let partial = tempfile::Builder::new()
        .prefix("debian-bookworm-minbase.")
        .suffix(".tar")
        .tempfile_in(&cache)
        .unwrap()
        .into_temp_path();
    let mut command = Command::new("mmdebstrap");
    command.args([
        "--quiet",
        "--variant=minbase",
        // No device nodes: neither builder under test has to create any,
        // and Docker Hub's Debian images carry none either.
        "--skip=output/dev",
        // mmdebstrap copies the host's resolver and name into the root;
        // images from Docker Hub have neither, and the apt options are
        // this machine's, copied in by the tests that need them.
        "--customize-hook=rm -f \"$1/etc/resolv.conf\" \"$1/etc/hostname\" \"$1/etc/apt/apt.conf.d/99mmdebstrap\"",
    ]);
    if Path::new(APT_CONF).is_file() {
        command.arg(format!("--aptopt={APT_CONF}"));
    }
    command.arg("bookworm").arg(&partial).arg(MIRROR);
    run_ok(&mut command);
    partial.persist(&tarball).unwrap();
    tarball
}

/// Build, in `dir`, an OCI image layout holding the minbase image tagged
/// `latest` (one layer, `PATH` set, `Cmd ["bash"]` as Docker Hub's
/// `debian:bookworm`), and return the layout's path.
pub fn debian_layout(dir: &Path) -> PathBuf {
    one_layer_layout(&dir.join("debian-layout"), &rootfs_tarball(), "bash")
}
