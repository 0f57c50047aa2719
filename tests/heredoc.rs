//! Dockerfile here-documents end to end: `kiln build` writes COPY
//! documents as files and runs RUN documents as BuildKit does, and umoci
//! reads the result.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::images::{busybox_run_context, unpack_rootfs};
use common::{Run, kiln};

/// A build context holding `dockerfile`.
fn context(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    dir
}

/// `kiln build` of `dir` into the layout `dir/out`.
fn build(dir: &Path) -> Run {
    Run::of(kiln(dir, &["build", "-o", "oci:out", "."]))
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("/{path}: {e}"))
}

/// The image config in the layout `dir/out`.
fn image_config(dir: &Path) -> serde_json::Value {
    let layout = dir.join("out");
    let blob = |digest: &serde_json::Value| -> serde_json::Value {
        let digest = digest.as_str().unwrap().trim_start_matches("sha256:");
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(digest)).unwrap())
            .unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = blob(&index["manifests"][0]["digest"]);
    blob(&manifest["config"]["digest"])
}

#[test]
fn copy_documents_become_files() {
    let dir = context(
        "FROM scratch\n\
         ARG WHO=world\n\
         ENV GREETING=hello\n\
         COPY <<EOF /greeting\n\
         $GREETING ${WHO}! \"quotes\" stay, \\$GREETING is escaped\n\
         EOF\n\
         COPY <<'EOF' /literal\n\
         $GREETING ${WHO} stays as written\n\
         EOF\n\
         COPY <<one <<two /docs/\n\
         first\n\
         one\n\
         second\n\
         two\n\
         COPY --chmod=755 --chown=1000:1000 <<-EOF /bin/tool\n\
         \t#!/bin/sh\n\
         \techo tool\n\
         \tEOF\n\
         LABEL after=heredocs\n",
    );
    build(dir.path()).ok();
    let root = unpack_rootfs(dir.path());
    assert_eq!(
        read(&root, "greeting"),
        "hello world! \"quotes\" stay, $GREETING is escaped\n"
    );
    assert_eq!(
        read(&root, "literal"),
        "$GREETING ${WHO} stays as written\n"
    );
    assert_eq!(read(&root, "docs/one"), "first\n");
    assert_eq!(read(&root, "docs/two"), "second\n");
    assert_eq!(read(&root, "bin/tool"), "#!/bin/sh\necho tool\n");
    let tool = std::fs::metadata(root.join("bin/tool")).unwrap();
    assert_eq!(tool.permissions().mode() & 0o7777, 0o755);
    assert_eq!((tool.uid(), tool.gid()), (1000, 1000));
    let greeting = std::fs::metadata(root.join("greeting")).unwrap();
    assert_eq!(greeting.permissions().mode() & 0o7777, 0o644);
    assert_eq!((greeting.uid(), greeting.gid()), (0, 0));
    // The instruction after the documents was read as one.
    let config = image_config(dir.path());
    assert_eq!(config["config"]["Labels"]["after"], "heredocs");
}

#[test]
fn an_unterminated_document_names_its_line() {
    let dir = context("FROM scratch\n\nCOPY <<EOF /x\nno end\n");
    let run = build(dir.path());
    assert_ne!(run.code(), Some(0), "{}", run.all());
    assert!(
        run.stderr().contains("line 3: unterminated heredoc"),
        "{}",
        run.stderr()
    );
}

/// A context for RUN: busybox installed, then `dockerfile`.
/// `kiln build --allow-run` of `dir` in the isolation `tier`, unpacked.
fn build_in(dir: &Path, tier: &str) -> PathBuf {
    let mut command = kiln(dir, &["build", "--allow-run", "-o", "oci:out", "."]);
    command.env("KILN_RUN_ISOLATION", tier);
    let text = Run::of(command).ok();
    assert!(
        text.contains(&format!("ran with {tier} isolation")),
        "{text}"
    );
    unpack_rootfs(dir)
}

#[test]
fn run_documents_run_through_the_shell() {
    let dockerfile = "ENV NAME=kiln\n\
                      RUN <<EOF\n\
                      echo one > /one\n\
                      echo \"two $NAME\" > /two\n\
                      EOF\n\
                      RUN <<-EOF\n\
                      \techo tabs > /tabs\n\
                      \tEOF\n\
                      RUN cat > /x <<EOF\n\
                      hello $NAME\n\
                      EOF\n\
                      RUN <<'EOF' cat > /quoted\n\
                      quoted $NAME\n\
                      EOF\n";
    for tier in ["namespaces", "chroot-landlock"] {
        let dir = busybox_run_context(dockerfile);
        let root = build_in(dir.path(), tier);
        assert_eq!(read(&root, "one"), "one\n", "{tier}");
        assert_eq!(read(&root, "two"), "two kiln\n", "{tier}");
        assert_eq!(read(&root, "tabs"), "tabs\n", "{tier}");
        assert_eq!(read(&root, "x"), "hello kiln\n", "{tier}");
        assert_eq!(read(&root, "quoted"), "quoted $NAME\n", "{tier}");
    }
}

#[test]
fn run_documents_with_a_shebang_run_their_interpreter() {
    let dockerfile = "RUN <<EOF\n\
                      #!/usr/bin/awk -f\n\
                      BEGIN { print \"awk ran \" ARGV[0] > \"/awk\" }\n\
                      EOF\n\
                      RUN <<EOF\n\
                      #!/bin/sh -e\n\
                      echo \"script $0\" > /script\n\
                      EOF\n";
    for tier in ["namespaces", "chroot-landlock"] {
        let dir = busybox_run_context(dockerfile);
        let root = build_in(dir.path(), tier);
        assert_eq!(read(&root, "awk"), "awk ran awk\n", "{tier}");
        assert_eq!(
            read(&root, "script"),
            "script /run/heredocs/EOF\n",
            "{tier}"
        );
        // The script's mount leaves nothing behind.
        assert!(!root.join("run").exists(), "{tier}: /run is in the image");
    }
}

#[test]
fn an_onbuild_heredoc_trigger_is_recorded_whole() {
    // The trigger keeps its document on lines of their own, as BuildKit
    // records it, so that a child build parses it again.
    let parent =
        busybox_run_context("ONBUILD RUN <<EOF\necho from the trigger > /triggered\nEOF\n");
    let mut command = kiln(
        parent.path(),
        &["build", "--allow-run", "-o", "oci:out", "."],
    );
    command.env("KILN_RUN_ISOLATION", "namespaces");
    Run::of(command).ok();
    let config = image_config(parent.path());
    let triggers = config["config"]["OnBuild"].as_array().unwrap();
    assert_eq!(
        triggers[0].as_str().unwrap(),
        "RUN <<EOF\necho from the trigger > /triggered\nEOF"
    );
    let history: Vec<&str> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["created_by"].as_str())
        .collect();
    assert!(
        history
            .iter()
            .any(|h| h.contains("ONBUILD RUN <<EOF\necho from the trigger")),
        "{history:?}"
    );
}
