//! The shape README's architecture section describes, checked: within each
//! crate, modules use each other in one direction (no import circles), and
//! the crates below the runtime build without wasmtime. Cargo already
//! refuses circles between crates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The source directory of every crate in the workspace.
fn crate_sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("host/src")];
    for parent in ["host", "plugins", "tests/plugins"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(parent))
            .unwrap()
            .filter_map(|entry| Some(entry.ok()?.path().join("src")))
            .filter(|src| src.is_dir() && src.parent().unwrap().join("Cargo.toml").is_file())
            .collect();
        found.sort();
        dirs.extend(found);
    }
    dirs
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The first identifier of `text`.
fn identifier(text: &str) -> &str {
    let text = text.trim_start();
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The names a path starting with `prefix` reaches first in `code`:
/// `X` of `crate::X::…`, and each item's first name in `crate::{X, Y::…}`.
fn names_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut names = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        // A whole path segment: not `foo_crate::`.
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let mut depth = 0;
                let mut item_start = 0;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            names.push(identifier(&group[item_start..i]));
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            names.push(identifier(&group[item_start..i]));
                            item_start = i + 1;
                        }
                        _ => {}
                    }
                }
            }
            None => names.push(identifier(rest)),
        }
    }
    names.retain(|name| !name.is_empty());
    names
}

/// What the crate root re-exports, by name, and the module each comes
/// from (`pub use error::Error;` makes `crate::Error` a use of `error`).
fn root_exports(src: &Path) -> BTreeMap<String, String> {
    let mut exports = BTreeMap::new();
    for root in ["lib.rs", "main.rs"] {
        let Ok(code) = std::fs::read_to_string(src.join(root)) else {
            continue;
        };
        for statement in code.split(';') {
            let Some(path) = statement.trim().strip_prefix("pub use ") else {
                continue;
            };
            let module = identifier(path).to_owned();
            let rest = &path[module.len()..];
            for name in rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .filter(|n| !n.is_empty())
            {
                exports.insert(name.to_owned(), module.clone());
            }
        }
    }
    exports
}

/// The crate's top-level modules and which of them each one uses, through
/// `crate::X` anywhere in its files, or `super::X` in its top file (where
/// `super` is the crate root). Comments are left out: a doc link is not a
/// use.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let module_of = |file: &Path| -> Option<(String, bool)> {
        let relative = file.strip_prefix(src).ok()?;
        let mut parts = relative.iter().map(|p| p.to_string_lossy().into_owned());
        let first = parts.next()?;
        let rest: Vec<String> = parts.collect();
        match (first.strip_suffix(".rs"), rest.as_slice()) {
            (Some("lib" | "main"), _) => None,
            (Some(name), []) => Some((name.to_owned(), true)),
            (None, [file]) => Some((first.clone(), file == "mod.rs")),
            (None, _) => Some((first.clone(), false)),
            (Some(_), _) => None,
        }
    };
    let mut modules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut uses = Vec::new();
    for file in &files {
        let Some((module, top)) = module_of(file) else {
            continue;
        };
        modules.entry(module.clone()).or_default();
        let code: String = std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .map(|line| line.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        let mut named: Vec<&str> = names_after(&code, "crate::");
        if top {
            named.extend(names_after(&code, "super::"));
        }
        uses.extend(named.into_iter().map(|n| (module.clone(), n.to_owned())));
    }
    let exports = root_exports(src);
    for (from, to) in uses {
        let to = exports.get(&to).cloned().unwrap_or(to);
        if from != to && modules.contains_key(&to) {
            modules.get_mut(&from).unwrap().insert(to);
        }
    }
    modules
}

/// A circle in `graph`, as the modules along it, if there is one.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut circle = path[start..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in &graph[node] {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn modules_use_each_other_in_one_direction() {
    let mut circles = Vec::new();
    for src in crate_sources() {
        if let Some(circle) = find_circle(&module_graph(&src)) {
            circles.push(format!("{}: {}", src.display(), circle.join(" → ")));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles (move what both sides need into a module below them):\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_circle_check_sees_a_circle() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("b")).unwrap();
    std::fs::write(dir.path().join("a.rs"), "use crate::b::Thing;\n").unwrap();
    std::fs::write(dir.path().join("b/mod.rs"), "mod inner;\n").unwrap();
    std::fs::write(
        dir.path().join("b/inner.rs"),
        "// crate::c is only mentioned\nfn f() { crate::a::g() }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("c.rs"), "use super::a;\n").unwrap();
    std::fs::write(dir.path().join("d.rs"), "use crate::{c::X, Thing};\n").unwrap();
    std::fs::write(dir.path().join("lib.rs"), "pub use d::{Thing, Other};\n").unwrap();
    let graph = module_graph(dir.path());
    assert_eq!(
        find_circle(&graph),
        Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()])
    );
    assert!(!graph["b"].contains("c"));
    assert_eq!(
        graph["d"].iter().collect::<Vec<_>>(),
        ["c"],
        "grouped uses count; a re-export of d's own item is not a circle"
    );
    assert!(graph["c"].contains("a"));
    std::fs::write(dir.path().join("c.rs"), "use crate::Thing;\n").unwrap();
    assert!(module_graph(dir.path())["c"].contains("d"));
}

/// The crates below the runtime: plain data, the store and the pipeline
/// file, which must build (and test) without a wasm runtime.
#[test]
fn only_the_runtime_links_wasmtime() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for package in ["kiln-grant", "kiln-store", "kiln-pipeline"] {
        let tree = Command::new(&cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "tree",
                "--offline",
                "-e",
                "normal",
                "--prefix",
                "none",
                "-p",
            ])
            .arg(package)
            .output()
            .unwrap();
        assert!(
            tree.status.success(),
            "{}",
            String::from_utf8_lossy(&tree.stderr)
        );
        let tree = String::from_utf8_lossy(&tree.stdout);
        assert!(tree.contains(package), "{tree}");
        assert!(
            !tree.lines().any(|line| line.starts_with("wasmtime")),
            "{package} depends on wasmtime:\n{tree}"
        );
    }
}
