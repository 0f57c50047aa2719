//! RUN in emulated CI pods (`../shared/tools/podsim`): each pod profile
//! gets the isolation tier it allows, named in the output; the images are
//! the same byte for byte whatever the tier; escapes from inside RUN are
//! contained in each; and where no tier works the error names the pod
//! setting that unlocks one.
//!
//! Needs the static kiln (tests/run builds it) and runc; the restricted
//! profile's proot comes from a Debian root file system tests/run makes
//! (`KILN_TEST_PROOT_ROOTFS`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Run;
use common::images::{busybox_run_context, unpack_rootfs};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The static kiln, or `None` (the test says it is skipped).
fn static_kiln() -> Option<PathBuf> {
    let musl = root().join("target/x86_64-unknown-linux-musl/release/kiln");
    if musl.exists() {
        Some(musl)
    } else {
        eprintln!(
            "skipped: no static kiln at {} (cargo build --release --target x86_64-unknown-linux-musl)",
            musl.display()
        );
        None
    }
}

/// A build context every pod user may write: busybox, and a Dockerfile
/// whose last RUN tries to escape.
fn context(marker: &Path) -> tempfile::TempDir {
    let dir = busybox_run_context(&format!(
        "RUN echo built > /hello && mkdir /app && echo x > /app/x && rm /app/x\n\
         RUN cat /proc/1/root/etc/hostname > /leak 2>/dev/null; \
             echo x > {marker} 2>/dev/null; \
             mkdir -p /c && chroot /c sh -c 'cd ../../..; echo x > {marker}' 2>/dev/null; \
             kill -9 1 2>/dev/null; true\n",
        marker = marker.display()
    ));
    make_writable(dir.path());
    dir
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in walk(path) {
        let current = std::fs::metadata(&entry).unwrap().permissions().mode();
        let mode = if entry.is_dir() {
            0o777
        } else {
            current | 0o666
        };
        let _ = std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode));
    }
}

fn walk(path: &Path) -> Vec<PathBuf> {
    let mut all = vec![path.to_path_buf()];
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap().flatten() {
            all.extend(walk(&entry.path()));
        }
    }
    all
}

/// `kiln build --allow-run` of `dir` inside a pod of `profile`.
fn build_in_pod(kiln: &Path, profile: &str, rootfs: Option<&Path>, dir: &Path) -> Run {
    let mut command = Command::new(root().join("../shared/tools/podsim/podsim"));
    command.arg(profile);
    if let Some(rootfs) = rootfs {
        command.arg("--rootfs").arg(rootfs);
    }
    command
        .arg("--bind")
        .arg(format!("{}:/usr/local/bin/kiln:ro", kiln.display()))
        .arg("--bind")
        .arg(format!("{}:/builds/project", dir.display()))
        .args(["--workdir", "/builds/project"])
        // A home of the pod user's own: kiln keeps its cache there.
        .args(["--env", "HOME=/builds/project/home"])
        .args(["--", "kiln", "build", "--allow-run", "-o", "oci:out", "."]);
    Run::of(command)
}

/// The digest `kiln build` printed.
fn digest(output: &str) -> String {
    output
        .lines()
        .find_map(|l| l.strip_prefix("digest="))
        .unwrap_or_else(|| panic!("no digest in:\n{output}"))
        .to_owned()
}

#[test]
fn each_pod_profile_gets_its_tier_and_the_same_image() {
    let Some(kiln) = static_kiln() else { return };
    let proot_rootfs = std::env::var_os("KILN_TEST_PROOT_ROOTFS").map(PathBuf::from);
    let mut cases = vec![
        ("root-unconfined", "namespaces", None),
        ("root-runtimedefault", "chroot-landlock", None),
        ("nonroot-unconfined", "namespaces", None),
    ];
    match &proot_rootfs {
        Some(rootfs) => cases.push(("nonroot-restricted", "ptrace", Some(rootfs.as_path()))),
        None => {
            eprintln!("ptrace tier skipped: KILN_TEST_PROOT_ROOTFS is not set (tests/run sets it)")
        }
    }
    let mut digests = Vec::new();
    // One marker for every case: the Dockerfile (and so the image) is the
    // same text in each.
    let outside = tempfile::tempdir().unwrap();
    make_writable(outside.path());
    let marker = outside.path().join("escaped");
    for (profile, tier, rootfs) in cases {
        let dir = context(&marker);
        let run = build_in_pod(&kiln, profile, rootfs, dir.path());
        let text = run.all();
        assert_eq!(run.code(), Some(0), "{profile}:\n{text}");
        assert!(
            text.contains(&format!("ran with {tier} isolation")),
            "{profile}:\n{text}"
        );
        digests.push((profile, digest(&run.stdout())));
        // Escapes stayed inside: nothing written outside, the host's
        // files not read, kiln not killed (it finished).
        assert!(!marker.exists(), "{profile}: wrote outside the root");
        let root = unpack_rootfs(dir.path());
        let leaked = std::fs::read_to_string(root.join("leak")).unwrap_or_default();
        // The pod's own /etc/hostname is "podsim"; nothing of it may show.
        assert!(
            leaked.is_empty(),
            "{profile}: read the pod's files: {leaked}"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("hello")).unwrap(),
            "built\n"
        );
    }
    // The escape attempt's layer differs only by what it could read
    // (nothing), so every tier wrote the same image.
    let first = &digests[0].1;
    assert!(
        digests.iter().all(|(_, d)| d == first),
        "tiers built different images: {digests:?}"
    );
}

#[test]
fn a_pod_that_allows_no_tier_names_the_setting_that_unlocks_one() {
    let Some(kiln) = static_kiln() else { return };
    let outside = tempfile::tempdir().unwrap();
    let dir = context(&outside.path().join("escaped"));
    // podsim's own root file system has no proot.
    let run = build_in_pod(&kiln, "nonroot-restricted", None, dir.path());
    assert_eq!(run.code(), Some(1), "{}", run.all());
    let text = run.stderr();
    assert!(text.contains("RUN cannot be isolated here"), "{text}");
    assert!(text.contains("seccompProfile.type: Unconfined"), "{text}");
    assert!(text.contains("proot"), "{text}");
    assert!(!dir.path().join("out/index.json").exists());
}
