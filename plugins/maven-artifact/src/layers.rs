//! Jib-style layers: an application split by how often its parts change,
//! so an image build copies each as its own layer and a code change
//! re-pushes only the small `classes` layer.
//!
//! - `dependencies`: release JARs (`target/dependency`, `target/lib`, or a
//!   Spring Boot fat JAR's `BOOT-INF/lib`);
//! - `snapshot-dependencies`: `-SNAPSHOT` JARs from the same places;
//! - `resources`: everything on the classpath that is not a `.class`;
//! - `classes`: the `.class` files.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::zip::Zip;
use kiln_sdk::Error;

/// The layer directories, in the order an image should copy them.
pub const LAYERS: [&str; 4] = [
    "dependencies",
    "snapshot-dependencies",
    "resources",
    "classes",
];

/// What was written to each layer.
#[derive(Debug, Default, serde::Serialize)]
pub struct Written {
    /// Files per layer.
    pub files: std::collections::BTreeMap<&'static str, usize>,
}

/// The layer a classpath entry belongs to.
fn class_layer(path: &str) -> &'static str {
    if path.ends_with(".class") {
        "classes"
    } else {
        "resources"
    }
}

fn jar_layer(name: &str) -> &'static str {
    if name.contains("-SNAPSHOT") {
        "snapshot-dependencies"
    } else {
        "dependencies"
    }
}

/// Split the application into `out/LAYER/…`: from the fat JAR's
/// `BOOT-INF/` when `jar` is one, else from `target/` (`classes`,
/// `dependency`, `lib`), falling back to the JAR's own entries.
pub fn split(project: &Path, jar: &Path, out: &Path) -> Result<Written, Error> {
    let mut written = Written::default();
    for layer in LAYERS {
        let dir = out.join(layer);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    let mut zip = Zip::open(jar)?;
    let fat = zip.entries.iter().any(|e| e.name.starts_with("BOOT-INF/"));
    let target = project.join("target");
    let classes_dir = target.join("classes");
    if fat || !classes_dir.is_dir() {
        let prefix = if fat { "BOOT-INF/classes/" } else { "" };
        for entry in zip.entries.clone() {
            if entry.name.ends_with('/') {
                continue;
            }
            let (layer, relative) = if let Some(lib) = entry.name.strip_prefix("BOOT-INF/lib/") {
                (jar_layer(lib), lib.to_owned())
            } else if let Some(inner) = entry
                .name
                .strip_prefix(prefix)
                .filter(|_| fat || !entry.name.starts_with("META-INF/"))
            {
                (class_layer(inner), inner.to_owned())
            } else {
                continue;
            };
            let destination = safe_join(&out.join(layer), &relative, &entry.name)?;
            let mut reader = zip.read(&entry)?;
            write_file(&destination, &mut reader)?;
            *written.files.entry(layer).or_default() += 1;
        }
    } else {
        for (path, relative) in walk(&classes_dir)? {
            let layer = class_layer(&relative);
            let mut reader = File::open(&path).map_err(|e| Error::io(&path, e))?;
            write_file(&out.join(layer).join(&relative), &mut reader)?;
            *written.files.entry(layer).or_default() += 1;
        }
    }
    for dir in ["dependency", "lib"] {
        let libs = target.join(dir);
        if !libs.is_dir() {
            continue;
        }
        for (path, relative) in walk(&libs)? {
            if !relative.ends_with(".jar") || relative.contains('/') {
                continue;
            }
            let layer = jar_layer(&relative);
            let mut reader = File::open(&path).map_err(|e| Error::io(&path, e))?;
            write_file(&out.join(layer).join(&relative), &mut reader)?;
            *written.files.entry(layer).or_default() += 1;
        }
    }
    Ok(written)
}

/// `base/relative` for an archive entry, refusing one that climbs out.
fn safe_join(base: &Path, relative: &str, entry: &str) -> Result<PathBuf, Error> {
    if relative.starts_with('/') || relative.split('/').any(|p| p == "..") {
        return Err(Error::invalid_input(format!(
            "archive entry `{entry}` would be written outside its layer; the archive is refused"
        )));
    }
    Ok(base.join(relative))
}

fn write_file(path: &Path, reader: &mut dyn std::io::Read) -> Result<(), Error> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let mut file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buffer).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        file.write_all(&buffer[..n])
            .map_err(|e| Error::io(path, e))?;
    }
}

/// Regular files below `dir`, sorted, with their `/`-separated relative
/// paths.
fn walk(dir: &Path) -> Result<Vec<(PathBuf, String)>, Error> {
    let mut out = Vec::new();
    let mut pending = vec![(dir.to_owned(), String::new())];
    while let Some((current, prefix)) = pending.pop() {
        let listing = std::fs::read_dir(&current).map_err(|e| Error::io(&current, e))?;
        for item in listing {
            let item = item.map_err(|e| Error::io(&current, e))?;
            let name = item.file_name().to_string_lossy().into_owned();
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let kind = item.file_type().map_err(|e| Error::io(item.path(), e))?;
            if kind.is_dir() {
                pending.push((item.path(), relative));
            } else if kind.is_file() {
                out.push((item.path(), relative));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_by_name() {
        assert_eq!(jar_layer("guava-33.0.jar"), "dependencies");
        assert_eq!(jar_layer("lib-1.0-SNAPSHOT.jar"), "snapshot-dependencies");
        assert_eq!(class_layer("com/example/App.class"), "classes");
        assert_eq!(class_layer("application.properties"), "resources");
        assert!(safe_join(Path::new("/o"), "../x", "../x").is_err());
    }
}
