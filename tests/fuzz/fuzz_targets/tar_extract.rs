//! `kiln_oci::archive`: any file, read as a tar (plain, gzip, zstd, xz or
//! bzip2), is extracted within the byte limit or refused, every entry of
//! the tree lands under its destination, and nothing is written anywhere
//! but the scratch directory (and there, only the numbered files it
//! names).
//!
//! Each input is extracted twice: as a base image layer (whiteouts, unsafe
//! entries skipped, at the root) and as `ADD` does (strict, under `app`).
#![no_main]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kiln_oci::archive::{Landing, Scratch, extract, is_archive};
use kiln_oci::tree::{Kind, Tree};
use libfuzzer_sys::fuzz_target;

/// Extraction budget, as the `extract-limit-mb` input would set it.
const LIMIT: u64 = 16 << 20;
const EPOCH: u64 = 1_700_000_000;

/// One directory per fuzzing process, on tmpfs when there is one.
fn root() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = Path::new("/dev/shm");
        let dir = if base.is_dir() {
            tempfile::tempdir_in(base)
        } else {
            tempfile::tempdir()
        };
        dir.expect("a temporary directory")
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let root = root();
    let input = root.join("input");
    fs::write(&input, data).unwrap();
    is_archive(&input).unwrap();

    for (dest, whiteouts, strict) in [("", true, false), ("app", false, true)] {
        let scratch_dir = root.join("scratch");
        let scratch = Scratch::create(scratch_dir.clone(), LIMIT).unwrap();
        let landing = Landing {
            dest,
            whiteouts,
            strict,
            epoch: EPOCH,
            identity: "fuzz",
        };
        let mut tree = Tree::default();
        let result = extract(
            fs::File::open(&input).unwrap(),
            "fuzz input",
            &landing,
            &mut tree,
            &scratch,
        );
        if let Err(error) = &result {
            error.to_string();
        }
        check_tree(&tree, dest, &scratch_dir);
        check_writes(root, &scratch_dir);
        scratch.remove();
    }
    let left: Vec<_> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["input"], "the scratch directory was not removed");
});

/// Every path is clean, relative and under `dest`, with its parents in
/// the tree; files point into the scratch directory, which stays within
/// the limit.
fn check_tree(tree: &Tree, dest: &str, scratch_dir: &Path) {
    for (path, entry) in tree.iter() {
        assert!(!path.is_empty(), "an entry at the root itself");
        assert!(
            path.split('/').all(|part| !matches!(part, "" | "." | "..")),
            "unclean path {path:?}"
        );
        assert!(
            dest.is_empty() || path == dest || path.starts_with(&format!("{dest}/")),
            "{path:?} outside {dest:?}"
        );
        assert!(entry.mode <= 0o7777);
        assert!(entry.mtime <= EPOCH);
        if let Some((parent, _)) = path.rsplit_once('/') {
            assert!(tree.get(parent).is_some(), "{path:?} has no parent");
        }
        if let Kind::File(file) = &entry.kind {
            let source = PathBuf::from(&file.source);
            assert_eq!(source.parent(), Some(scratch_dir), "{source:?}");
            assert_eq!(fs::metadata(&source).unwrap().len(), file.size);
        }
    }
    // Hard links share their bytes: the scratch directory, not the sum of
    // file sizes, is what the limit bounds.
    let stored: u64 = fs::read_dir(scratch_dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(stored <= LIMIT, "{stored} bytes stored, limit {LIMIT}");
}

/// The process directory holds the input and the scratch directory; the
/// scratch directory holds only regular files with numeric names.
fn check_writes(root: &Path, scratch_dir: &Path) {
    let names: BTreeSet<_> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["input".to_owned(), "scratch".to_owned()])
    );
    for entry in fs::read_dir(scratch_dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        assert!(name.parse::<u64>().is_ok(), "scratch file {name:?}");
        assert!(
            entry.file_type().unwrap().is_file(),
            "{name:?} is not a file"
        );
    }
}
