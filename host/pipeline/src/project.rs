//! Files of the project, read for the pipeline (a cache key's
//! `${hash:FILE}`, a Dockerfile `kiln check` plans). The pipeline file is
//! untrusted, so the file it names is opened beneath the project: cap-std
//! refuses `..` and symlinks that leave it, and only a regular file of a
//! bounded size is read.

use std::io::Read;
use std::path::Path;

/// `file` (relative to `project_dir`) opened for reading at most `max`
/// bytes, plus one so a caller sees a file that grew past it.
pub fn open_file(
    project_dir: &Path,
    file: &str,
    max: u64,
) -> Result<std::io::Take<std::fs::File>, String> {
    kiln_store::check_relative(file)?;
    let project = cap_std::fs::Dir::open_ambient_dir(project_dir, cap_std::ambient_authority())
        .map_err(|e| format!("cannot open the project directory: {e}"))?;
    let opened = project
        .open(file)
        .map_err(|e| format!("cannot read {file} inside the project: {e}"))?;
    let meta = opened
        .metadata()
        .map_err(|e| format!("cannot read {file}: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "{file} is not a regular file; name a file of the project"
        ));
    }
    if meta.len() > max {
        return Err(format!(
            "{file} has {} bytes, more than the {max} read",
            meta.len()
        ));
    }
    Ok(opened.into_std().take(max + 1))
}
