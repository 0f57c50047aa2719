//! Tier C: proot, which traces the command's system calls and rewrites
//! their paths into the image's root, for unprivileged pods where neither
//! namespaces nor `chroot` are allowed. Landlock (files, TCP, signals)
//! and seccomp bound what the tracer and the command can reach even where
//! proot's emulation has gaps.

use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::confine;
use crate::spec::RunSpec;
use crate::tier::Tier;

/// Host directories proot itself needs to read: its binary, its loader
/// and libraries.
const TRACER_READS: [&str; 6] = ["/usr", "/lib", "/lib64", "/bin", "/etc", "/proc"];

/// Run `spec` in tier C; the command's exit status.
pub(super) fn run(spec: &RunSpec) -> Result<i32, String> {
    let proot = spec
        .proot
        .as_ref()
        .ok_or("no proot to run the command with")?;
    super::adopt_orphans();
    let mut command = Command::new(proot);
    if spec.uid == 0 {
        command.arg("-0");
    } else {
        command.arg("-i").arg(format!("{}:{}", spec.uid, spec.gid));
    }
    command
        .arg("-r")
        .arg(&spec.rootfs)
        .arg("-w")
        .arg(&spec.workdir)
        .args(["-b", "/dev", "-b", "/proc"]);
    // Debian's proot (5.1) writes its loader and the glue for missing
    // mount points to a hard-coded /tmp: the pod's own, writable here.
    let mut rules: Vec<(String, bool)> = vec![
        (spec.rootfs.display().to_string(), true),
        ("/dev".to_owned(), true),
        ("/tmp".to_owned(), true),
    ];
    rules.extend(TRACER_READS.iter().map(|p| (p.to_string(), false)));
    for mount in &spec.mounts {
        let source = match &mount.source {
            Some(source) => source.clone(),
            None => {
                let empty = spec.scratch.join(format!("tmpfs-{}", rules.len()));
                std::fs::create_dir(&empty).map_err(|e| format!("{}: {e}", empty.display()))?;
                empty
            }
        };
        rules.push((source.display().to_string(), mount.writable));
        command
            .arg("-b")
            .arg(format!("{}:{}", source.display(), mount.target));
    }
    command
        .args(&spec.args)
        .env_clear()
        // proot reads the environment it passes on: variables that steer
        // it or its dynamic loader would steer the tracer, not the command.
        .envs(
            spec.env
                .iter()
                .filter_map(|e| e.split_once('='))
                .filter(|(name, _)| !name.starts_with("PROOT_") && !name.starts_with("LD_")),
        )
        .stdin(std::process::Stdio::null());
    let proxy = spec.network.proxy_port(Tier::Ptrace);
    // SAFETY: the closure runs in the forked child before exec and only
    // restricts that child.
    unsafe {
        command.pre_exec(move || {
            super::own_group()
                .and_then(|()| confine::capabilities(Tier::Ptrace))
                .and_then(|()| confine::landlock(Tier::Ptrace, proxy, &rules))
                .and_then(|()| confine::seccomp(Tier::Ptrace, proxy.is_some()))
                .map_err(std::io::Error::other)
        });
    }
    let child = command
        .spawn()
        .map_err(|e| format!("running {}: {e}", proot.display()))?;
    super::wait_group(spec, child.id() as libc::pid_t)
}
