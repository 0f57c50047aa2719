//! `USER` as BuildKit applies it to RUN: a name or number for the user,
//! optionally `:group`; names are looked up in the image's own
//! `/etc/passwd` and `/etc/group`, and the user's supplementary groups are
//! those `/etc/group` lists it in.

use std::io::Read;
use std::path::Path;

use rustix::fs::OFlags;

/// The ids a command runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups, the primary one first.
    pub groups: Vec<u32>,
    /// The home directory `/etc/passwd` gives the user, `/` when it names
    /// none: `HOME` when the image's ENV does not set it, as runc does.
    pub home: String,
}

/// Resolve `spec` (empty for root) in the root file system at `root`.
pub fn resolve(root: &Path, spec: &str) -> Result<User, String> {
    if spec.is_empty() {
        return resolve(root, "0");
    }
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(root, "/etc/passwd");
    let groups_file = read_in_root(root, "/etc/group");
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && (f[0] == user || f[2] == user));
    let home = entry
        .as_ref()
        .and_then(|f| f.get(5))
        .filter(|h| !h.is_empty())
        .map_or_else(|| "/".to_owned(), |h| (*h).to_owned());
    let (uid, primary, name) = match (user.parse::<u32>(), &entry) {
        (Ok(uid), entry) => (
            uid,
            entry.as_ref().and_then(|f| f[3].parse().ok()).unwrap_or(0),
            entry.as_ref().map(|f| f[0].to_owned()),
        ),
        (Err(_), Some(f)) => (
            f[2].parse()
                .map_err(|_| format!("USER {user}: bad uid in /etc/passwd"))?,
            f[3].parse()
                .map_err(|_| format!("USER {user}: bad gid in /etc/passwd"))?,
            Some(f[0].to_owned()),
        ),
        (Err(_), None) => {
            return Err(format!(
                "USER {user}: no such user in the image's /etc/passwd (create it in an earlier RUN, or use a numeric id)"
            ));
        }
    };
    let group_lines: Vec<Vec<&str>> = groups_file
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() > 3)
        .collect();
    let gid = match group {
        None => primary,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_lines
                .iter()
                .find(|f| f[0] == group)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    format!("USER {spec}: no group {group} in the image's /etc/group")
                })?,
        },
    };
    let mut groups = vec![gid];
    // An explicit group replaces the supplementary groups, as in BuildKit.
    if group.is_none()
        && let Some(name) = name
    {
        for fields in &group_lines {
            if fields[3].split(',').any(|member| member == name)
                && let Ok(extra) = fields[2].parse::<u32>()
                && !groups.contains(&extra)
            {
                groups.push(extra);
            }
        }
    }
    Ok(User {
        uid,
        gid,
        groups,
        home,
    })
}

/// The text of `path` inside the root (symlinks resolved inside it), or
/// nothing when it cannot be read.
fn read_in_root(root: &Path, path: &str) -> String {
    let Ok(root) = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) else {
        return String::new();
    };
    let Ok(file) = rustix::fs::openat2(
        &root,
        path.trim_start_matches('/'),
        OFlags::RDONLY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
        rustix::fs::ResolveFlags::IN_ROOT | rustix::fs::ResolveFlags::NO_MAGICLINKS,
    ) else {
        return String::new();
    };
    let mut text = String::new();
    let _ = std::fs::File::from(file)
        .take(1 << 20)
        .read_to_string(&mut text);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn names_numbers_and_groups() {
        let root = root();
        let app = resolve(root.path(), "app").unwrap();
        assert_eq!((app.uid, app.gid, app.groups), (1000, 1000, vec![1000, 10]));
        assert_eq!(app.home, "/home/app");
        assert_eq!(resolve(root.path(), "").unwrap().home, "/root");
        assert_eq!(resolve(root.path(), "4242").unwrap().home, "/");
        let explicit = resolve(root.path(), "app:wheel").unwrap();
        assert_eq!((explicit.gid, explicit.groups), (10, vec![10]));
        let numeric = resolve(root.path(), "4242:7").unwrap();
        assert_eq!((numeric.uid, numeric.gid), (4242, 7));
        assert!(
            resolve(root.path(), "nobody")
                .unwrap_err()
                .contains("/etc/passwd")
        );
        assert_eq!(resolve(root.path(), "").unwrap().uid, 0);
    }
}
