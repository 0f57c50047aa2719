//! Dockerfile RUN through the host executor: real commands (busybox) in
//! each isolation tier this machine offers, the layers read back by umoci,
//! and escapes from inside RUN contained.

mod common;

use std::path::Path;
use std::process::Command;

use common::images::{busybox_run_context, podman_run, unpack_rootfs};
use common::{Run, Server, kiln, run_ok};

/// A busybox context for `dockerfile`'s lines.
fn context(dockerfile: &str) -> tempfile::TempDir {
    busybox_run_context(dockerfile)
}

/// `kiln build --allow-run` of `dir` into `dir/out`, in `tier`.
fn build(dir: &Path, tier: &str, extra: &[&str]) -> Run {
    let mut args = vec!["build", "--allow-run", "-o", "oci:out"];
    args.extend(extra);
    args.push(".");
    let mut command = kiln(dir, &args);
    command.env("KILN_RUN_ISOLATION", tier);
    Run::of(command)
}

/// The image in `dir/out`: its root file system, unpacked by umoci.
fn unpack(dir: &Path) -> std::path::PathBuf {
    unpack_rootfs(dir)
}

/// The tiers root can use here (tests/run installs proot for the last).
const TIERS: [&str; 3] = ["namespaces", "chroot-landlock", "ptrace"];

#[test]
fn run_changes_become_layers_that_umoci_reads() {
    for tier in TIERS {
        let dir = context(
            "ENV GREETING=hello\nARG WHO=world\n\
             RUN echo \"$GREETING $WHO\" > /hello && echo gone > /gone && mkdir -p /app && echo x > /app/x\n\
             RUN rm /gone && chmod 0750 /app && ln /hello /hello-link\n\
             USER 1000:1000\nWORKDIR /tmp\nRUN id -u > /tmp/uid\n",
        );
        let first = build(dir.path(), tier, &[]);
        let text = first.ok();
        assert!(
            text.contains(&format!("ran with {tier} isolation")),
            "{text}"
        );
        let root = unpack(dir.path());
        assert_eq!(
            std::fs::read_to_string(root.join("hello")).unwrap(),
            "hello world\n"
        );
        assert!(!root.join("gone").exists(), "the whiteout removed /gone");
        assert_eq!(
            std::fs::read_to_string(root.join("tmp/uid")).unwrap(),
            "1000\n"
        );
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let app = std::fs::metadata(root.join("app")).unwrap();
        assert_eq!(app.permissions().mode() & 0o7777, 0o750);
        assert_eq!(
            std::fs::metadata(root.join("hello-link")).unwrap().ino(),
            std::fs::metadata(root.join("hello")).unwrap().ino(),
            "a hard link stays one"
        );
        // Nothing of the executor's own leaks into the layers.
        for path in ["proc/1", "dev/null", "etc/resolv.conf"] {
            assert!(!root.join(path).exists(), "{tier}: /{path} is in the image");
        }
        // Unchanged: every layer reused, no command run.
        let again = build(dir.path(), tier, &[]);
        let text = again.ok();
        assert!(text.contains("0 layers written"), "{text}");
        assert!(!text.contains("ran with"), "{text}");
    }
}

#[test]
fn a_failing_command_fails_the_build_with_its_code() {
    let dir = context("RUN echo about to fail && exit 3\n");
    let run = build(dir.path(), "namespaces", &[]);
    assert_eq!(run.code(), Some(1), "{}", run.all());
    assert!(run.all().contains("about to fail"), "{}", run.all());
    assert!(run.stderr().contains("Dockerfile:5:"), "{}", run.stderr());
    assert!(run.stderr().contains("exit code 3"), "{}", run.stderr());
    assert!(!dir.path().join("out/index.json").exists());
}

#[test]
fn escapes_from_inside_run_are_contained() {
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("escaped");
    let server = Server::start();
    let script = format!(
        "RUN cat /proc/1/root/etc/hostname > /leak-proc 2>/dev/null; \
         cat /proc/self/root/../../../etc/shadow > /leak-shadow 2>/dev/null; \
         echo x > {marker} 2>/dev/null; \
         cd / && mkdir -p /c && chroot /c sh -c 'cd ../../../..; echo x > {marker}' 2>/dev/null; \
         wget -q -T 2 -O /leak-net http://127.0.0.1:{port}/ 2>/dev/null; \
         kill -9 1 {kiln} 2>/dev/null; mount -t tmpfs none /mnt 2>/dev/null && echo mounted > /mounted; \
         echo 1 > /proc/sys/vm/drop_caches 2>/dev/null && echo wrote > /proc-sys; \
         true\n",
        marker = marker.display(),
        port = server.port,
        kiln = std::process::id(),
    );
    for tier in TIERS {
        let dir = context(&script);
        build(dir.path(), tier, &[]).ok();
        let root = unpack(dir.path());
        assert!(!marker.exists(), "{tier}: wrote outside the root");
        let host_hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let leaked = std::fs::read_to_string(root.join("leak-proc")).unwrap_or_default();
        assert!(
            leaked.is_empty() || leaked != host_hostname,
            "{tier}: read the host's files through /proc"
        );
        assert!(
            std::fs::read_to_string(root.join("leak-shadow"))
                .unwrap_or_default()
                .is_empty(),
            "{tier}: read /etc/shadow"
        );
        assert!(
            std::fs::read_to_string(root.join("leak-net"))
                .unwrap_or_default()
                .is_empty(),
            "{tier}: reached a loopback service without a grant"
        );
        assert!(
            !root.join("mounted").exists(),
            "{tier}: mounted a file system"
        );
        assert!(
            !root.join("proc-sys").exists(),
            "{tier}: wrote the host's /proc/sys"
        );
    }
    assert_eq!(
        server.connections.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn granted_hosts_are_reached_through_the_proxy_and_others_are_denied() {
    let granted = Server::start();
    let other = Server::start();
    // busybox's nc speaks to the proxy named by $http_proxy (its wget, a
    // static glibc binary, cannot resolve names without NSS libraries).
    let fetch = |port: u16, file: &str| {
        format!(
            "printf 'GET http://127.0.0.1:{port}/ HTTP/1.0\\r\\n\\r\\n' | nc ${{http_proxy#http://}} > /{file}"
        )
    };
    for tier in TIERS {
        let dir = context(&format!(
            "RUN {}; {}; true\nRUN --network=none {}; true\n",
            fetch(granted.port, "granted"),
            fetch(other.port, "other"),
            fetch(granted.port, "offline"),
        ));
        let run = build(
            dir.path(),
            tier,
            &["--allow-net", &format!("127.0.0.1:{}", granted.port)],
        );
        let text = run.ok();
        assert!(
            text.contains(&format!("denied HTTP request to 127.0.0.1:{}", other.port)),
            "{tier}: {text}"
        );
        let root = unpack(dir.path());
        let read = |file: &str| std::fs::read_to_string(root.join(file)).unwrap_or_default();
        assert!(
            read("granted").contains("hello from loopback"),
            "{tier}: {}",
            read("granted")
        );
        assert!(
            read("other").starts_with("HTTP/1.1 403"),
            "{tier}: {}",
            read("other")
        );
        assert!(
            read("offline").is_empty(),
            "{tier}: --network=none reached the proxy"
        );
    }
    assert_eq!(
        other.connections.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert_eq!(
        granted
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        TIERS.len()
    );
}

#[test]
fn mounts_give_the_command_files_that_never_reach_the_image() {
    for tier in TIERS {
        let dir = context(
            "RUN --mount=type=secret,id=token test \"$(cat /run/secrets/token | md5sum)\" = \"$( (printf s3cret; printf %s -value) | md5sum)\" && echo has-secret > /secret-ok\n\
             RUN --mount=type=secret,id=token,env=TOKEN test ${#TOKEN} = 12 && echo \"the token is $TOKEN\"\n\
             RUN --mount=type=cache,target=/var/cache/count sh -c 'n=$(cat /var/cache/count/n 2>/dev/null || echo 0); echo $((n+1)) > /var/cache/count/n; cp /var/cache/count/n /seen'\n\
             RUN --mount=type=bind,source=data.txt,target=/mnt/data.txt cp /mnt/data.txt /copied\n\
             RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && ls /scratch > /listed\n",
        );
        std::fs::write(dir.path().join("data.txt"), "from the context\n").unwrap();
        let cache = tempfile::tempdir().unwrap();
        let build_with_secret = |extra: &[&str]| {
            let mut args = vec![
                "build",
                "--allow-run",
                "--secret",
                "id=token,env=BUILD_TOKEN",
                "-o",
                "oci:out",
            ];
            args.extend(extra);
            args.push(".");
            let mut command = kiln(dir.path(), &args);
            command
                .env("KILN_RUN_ISOLATION", tier)
                .env("KILN_CACHE_DIR", cache.path())
                .env("BUILD_TOKEN", "s3cret-value");
            Run::of(command)
        };
        let first = build_with_secret(&[]).ok();
        assert!(
            !first.contains("s3cret-value"),
            "{tier}: the secret was printed:\n{first}"
        );
        assert!(first.contains("the token is"), "{first}");
        let root = unpack(dir.path());
        assert_eq!(
            std::fs::read_to_string(root.join("secret-ok")).unwrap(),
            "has-secret\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("seen")).unwrap(),
            "1\n",
            "{tier}"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("copied")).unwrap(),
            "from the context\n"
        );
        assert_eq!(std::fs::read_to_string(root.join("listed")).unwrap(), "x\n");
        for absent in [
            "run/secrets",
            "var/cache/count/n",
            "mnt/data.txt",
            "scratch/x",
        ] {
            assert!(
                !root.join(absent).exists(),
                "{tier}: /{absent} reached the image"
            );
        }
        // Nowhere in any blob: layers, config, history.
        for blob in std::fs::read_dir(dir.path().join("out/blobs/sha256")).unwrap() {
            let path = blob.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let mut text = Vec::new();
            if std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
                .is_err()
            {
                text = bytes;
            }
            assert!(
                !String::from_utf8_lossy(&text).contains("s3cret-value"),
                "{tier}: the secret is in {}",
                path.display()
            );
        }
        // The cache survives into the next build; the RUN runs again.
        build_with_secret(&["--no-cache"]).ok();
        let root = unpack(dir.path());
        assert_eq!(
            std::fs::read_to_string(root.join("seen")).unwrap(),
            "2\n",
            "{tier}"
        );
    }
}

#[test]
fn a_changed_bind_mount_source_runs_the_command_again() {
    let dir =
        context("RUN --mount=type=bind,source=data.txt,target=/data.txt cp /data.txt /copied\n");
    std::fs::write(dir.path().join("data.txt"), "first\n").unwrap();
    build(dir.path(), "namespaces", &[]).ok();
    assert_eq!(
        std::fs::read_to_string(unpack(dir.path()).join("copied")).unwrap(),
        "first\n"
    );
    std::fs::write(dir.path().join("data.txt"), "second, longer\n").unwrap();
    let text = build(dir.path(), "namespaces", &[]).ok();
    assert!(text.contains("ran with namespaces"), "{text}");
    assert_eq!(
        std::fs::read_to_string(unpack(dir.path()).join("copied")).unwrap(),
        "second, longer\n"
    );
}

#[test]
fn a_bind_mount_from_another_stage_reads_its_files() {
    let dir = busybox_run_context(
        "RUN mkdir /app && echo built in the first stage > /app/out.txt && chmod 0755 /app/out.txt\n\
         FROM scratch AS final\nCOPY busybox /bin/busybox\n\
         RUN --mount=type=bind,from=0,source=/app,target=/mnt [\"/bin/busybox\", \"cp\", \"-p\", \"/mnt/out.txt\", \"/final\"]\n",
    );
    for tier in TIERS {
        let text = build(dir.path(), tier, &["--no-cache"]).ok();
        assert!(text.contains(&format!("ran with {tier}")), "{text}");
        let root = unpack(dir.path());
        assert_eq!(
            std::fs::read_to_string(root.join("final")).unwrap(),
            "built in the first stage\n"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(root.join("final"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755,
            "{tier}: modes come from the stage's layers"
        );
        assert!(!root.join("mnt/out.txt").exists(), "{tier}");
        assert!(!root.join("app").exists(), "{tier}");
    }
}

#[test]
fn a_command_cannot_trace_kiln_and_podman_runs_the_image() {
    let dir = context(
        "COPY ptrace /ptrace\nARG TARGET\nRUN /ptrace $TARGET > /traced; cat /traced\nCMD [\"cat\", \"/traced\"]\n",
    );
    run_ok(
        Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(dir.path().join("ptrace"))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/escape/ptrace.c")),
    );
    // This test's own process: the host's, kiln's parent, the same user
    // as the build.
    let target = format!("TARGET={}", std::process::id());
    for tier in TIERS {
        build(
            dir.path(),
            tier,
            &[
                "--no-cache",
                "--build-arg",
                &target,
                "-o",
                "docker-archive:image.tar",
                "-t",
                "kiln.test/traced:latest",
            ],
        )
        .ok();
        let traced = std::fs::read_to_string(unpack(dir.path()).join("traced")).unwrap();
        assert!(traced.starts_with("ptrace "), "{tier}: {traced}");
        assert!(
            !traced.contains("ATTACHED") && !traced.contains("OPENED"),
            "{tier}: {traced}"
        );
        assert!(
            traced.contains("x32 Operation not permitted"),
            "{tier}: {traced}"
        );
        let podman_dir = tempfile::tempdir().unwrap();
        let printed = podman_run(
            podman_dir.path(),
            &dir.path().join("image.tar"),
            "kiln.test/traced:latest",
            &[],
        );
        assert_eq!(printed, traced, "{tier}: podman runs the image kiln built");
    }
}

#[test]
fn a_pipeline_step_granted_run_builds_and_says_its_isolation() {
    let dir = context("RUN echo from the pipeline > /piped\n");
    std::fs::write(
        dir.path().join("kiln.yml"),
        "stages: [image]\nsteps:\n  build:\n    stage: image\n    uses: dockerfile-build\n    with:\n      output: /output/image\n    allow:\n      run: true\n",
    )
    .unwrap();
    let mut command = kiln(dir.path(), &["run", "--json", "kiln.yml"]);
    command.env("KILN_RUN_ISOLATION", "namespaces");
    let text = Run::of(command).ok();
    let summary = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|event| event["event"] == "summary" || event.get("steps").is_some())
        .unwrap_or_else(|| panic!("no summary in:\n{text}"));
    assert_eq!(summary["steps"][0]["isolation"], "namespaces", "{summary}");
    // Without the grant, kiln run refuses before the step starts.
    std::fs::write(
        dir.path().join("kiln.yml"),
        "stages: [image]\nsteps:\n  build:\n    stage: image\n    uses: dockerfile-build\n",
    )
    .unwrap();
    let refused = Run::of(kiln(dir.path(), &["run", "kiln.yml"]));
    assert_eq!(refused.code(), Some(2), "{}", refused.all());
    assert!(
        refused.stderr().contains("allow: { run: true }"),
        "{}",
        refused.stderr()
    );
}

#[test]
fn mount_targets_and_caches_cannot_be_turned_against_kiln() {
    for tier in TIERS {
        // A target that folds to the root through `..` is refused.
        let dir = context("RUN ln -s / /r\nRUN --mount=type=cache,id=up,target=/r/.. true\n");
        let refused = build(dir.path(), tier, &[]);
        assert_eq!(refused.code(), Some(2), "{tier}: {}", refused.all());
        assert!(
            refused.stderr().contains("is the root"),
            "{tier}: {}",
            refused.stderr()
        );
        // A cache a command replaced with a symlink comes back empty, and
        // a tmpfs over the image's directory hides it only meanwhile.
        let dir = context(
            "RUN --mount=type=cache,id=poison,target=/c sh -c 'rm -rf /c; ln -s / /c' || true\n\
             RUN --mount=type=cache,id=poison,target=/c ls -A /c > /listing\n\
             RUN mkdir -p /data && echo keep > /data/f\n\
             RUN --mount=type=tmpfs,target=/data ls -A /data > /seen-in-tmpfs\n\
             RUN cat /data/f > /after-tmpfs\n",
        );
        let cache = tempfile::tempdir().unwrap();
        let mut command = kiln(dir.path(), &["build", "--allow-run", "-o", "oci:out", "."]);
        command
            .env("KILN_RUN_ISOLATION", tier)
            .env("KILN_CACHE_DIR", cache.path());
        Run::of(command).ok();
        let root = unpack(dir.path());
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        assert_eq!(read("listing"), "", "{tier}: the cache followed a symlink");
        assert_eq!(read("seen-in-tmpfs"), "", "{tier}");
        assert_eq!(
            read("after-tmpfs"),
            "keep\n",
            "{tier}: the tmpfs removed the image's files"
        );
    }
}

#[test]
fn nothing_a_command_started_outlives_it() {
    // A daemon detached with setsid. (Under ptrace, proot itself waits
    // for every process it traces: the step's deadline ends those.)
    let dir = context("RUN setsid sleep 31337 </dev/null >/dev/null 2>&1 & sleep 0.3; true\n");
    for tier in ["namespaces", "chroot-landlock"] {
        build(dir.path(), tier, &["--no-cache"]).ok();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let left: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains("31337"))
            .collect();
        assert!(left.is_empty(), "{tier}: left running: {left:?}");
    }
}
