//! The last steps every tier shares, inside the new root: the working
//! directory, the user, and `execve` with the command's own `PATH`.

use std::ffi::CString;

use rustix::process::{Gid, Uid};

use crate::spec::RunSpec;

/// Enter the working directory, creating it as BuildKit does when it is
/// missing.
pub(super) fn enter_workdir(workdir: &str) -> Result<(), String> {
    if std::env::set_current_dir(workdir).is_err() {
        std::fs::create_dir_all(workdir).map_err(|e| format!("creating WORKDIR {workdir}: {e}"))?;
        std::env::set_current_dir(workdir)
            .map_err(|e| format!("entering WORKDIR {workdir}: {e}"))?;
    }
    Ok(())
}

/// Become the command's user. `groups` is false where the kernel refuses
/// supplementary groups (a single-id user namespace).
pub(super) fn become_user(spec: &RunSpec, groups: bool) -> Result<(), String> {
    if groups {
        let list: Vec<Gid> = spec.groups.iter().map(|g| Gid::from_raw(*g)).collect();
        rustix::thread::set_thread_groups(&list).map_err(|e| format!("setgroups: {e}"))?;
    }
    let gid = Gid::from_raw(spec.gid);
    let uid = Uid::from_raw(spec.uid);
    rustix::thread::set_thread_res_gid(gid, gid, gid)
        .map_err(|e| format!("USER: group {} is not usable here: {e}", spec.gid))?;
    rustix::thread::set_thread_res_uid(uid, uid, uid)
        .map_err(|e| format!("USER: user {} is not usable here: {e}", spec.uid))?;
    Ok(())
}

/// Replace this process with the command. Only returns on failure, with
/// the exit status a shell would give (127 not found, 126 not runnable).
pub(super) fn exec(args: &[String], env: &[String]) -> i32 {
    let Some(program) = args.first() else {
        eprintln!("kiln: RUN has no command");
        return 127;
    };
    let to_c = |s: &String| CString::new(s.as_bytes()).ok();
    let (Some(argv), Some(envp)) = (
        args.iter().map(to_c).collect::<Option<Vec<_>>>(),
        env.iter().map(to_c).collect::<Option<Vec<_>>>(),
    ) else {
        eprintln!("kiln: RUN arguments and environment may not contain NUL bytes");
        return 127;
    };
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let candidates: Vec<String> = if program.contains('/') {
        vec![program.clone()]
    } else {
        path.split(':')
            .map(|dir| format!("{}/{program}", if dir.is_empty() { "." } else { dir }))
            .collect()
    };
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let mut last = std::io::Error::from_raw_os_error(libc::ENOENT);
    for candidate in candidates {
        let Ok(file) = CString::new(candidate) else {
            continue;
        };
        // SAFETY: every pointer is a NUL-terminated string kept alive
        // above, and both arrays end with a null pointer.
        unsafe { libc::execve(file.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
        let error = std::io::Error::last_os_error();
        // Keep the most telling error: "permission denied" over "not found".
        if error.raw_os_error() != Some(libc::ENOENT) {
            last = error;
        }
    }
    eprintln!("kiln: RUN cannot execute {program}: {last}");
    if last.raw_os_error() == Some(libc::ENOENT) {
        127
    } else {
        126
    }
}

/// `PATH` when the image sets none, as BuildKit defaults it.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
