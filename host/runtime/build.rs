//! Builds the guest crates for `wasm32-wasip2` so that one `cargo build`
//! yields a `kiln` with its built-in plugins embedded.
//!
//! The list of built-ins is not kept here: a guest crate under `plugins/`
//! is one when its manifest says `[package.metadata.kiln] builtin = "NAME"`,
//! and a crate under `tests/plugins/` with `test-plugin = true` is built for
//! the tests. `tests/run` reads the same manifests for its lint list, so
//! adding a plugin is adding its crate.
//!
//! The guests are built by a nested cargo with its own target directory
//! (the outer build holds the lock on the main one), always in release mode:
//! they are small, and a debug guest would make every step slow.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A guest crate kiln builds: its package name and, for a built-in, the
/// name users type.
struct Guest {
    package: String,
    builtin: Option<String>,
}

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..").canonicalize().unwrap();
    for watched in ["wit", "plugins", "tests/plugins", "Cargo.lock", ".cargo"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let guests = guests(&[root.join("plugins"), root.join("tests/plugins")]);
    let target_dir = root.join("target").join("guests");

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for guest in &guests {
        command.args(["-p", &guest.package]);
    }
    // The outer build's settings (rustflags for the host, clippy's wrapper,
    // the host target) must not leak into the guest build.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_MAKEFLAGS"
            || key.starts_with("RUSTC")
            || key == "RUSTFLAGS"
            || key == "RUSTDOCFLAGS"
        {
            command.env_remove(key.as_ref());
        }
    }
    let status = command
        .status()
        .expect("running cargo for the guest plugins");
    if !status.success() {
        panic!(
            "building the guest plugins for wasm32-wasip2 failed (see above). \
             If the target is missing, run `rustup target add wasm32-wasip2`."
        );
    }

    let wasm_dir = target_dir.join("wasm32-wasip2").join("release");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let mut builtins: Vec<(&str, PathBuf)> = guests
        .iter()
        .filter_map(|g| {
            let name = g.builtin.as_deref()?;
            Some((name, wasm_path(&wasm_dir, &g.package)))
        })
        .collect();
    builtins.sort();
    if let Some(pair) = builtins.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        panic!(
            "two crates under plugins/ declare the built-in `{}`; give each a name of its own",
            pair[0].0
        );
    }
    let mut table = String::from(
        "/// Built-in plugins: name and component bytes, in name order.\npub(crate) static BUILTINS: &[(&str, &[u8])] = &[\n",
    );
    for (name, wasm) in builtins {
        table.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            wasm.display().to_string()
        ));
    }
    table.push_str("];\n");
    std::fs::write(out_dir.join("builtins.rs"), table).unwrap();

    // Tests load the test plugins from here.
    println!("cargo:rustc-env=KILN_GUEST_DIR={}", wasm_dir.display());
}

/// The guest crates under `dirs`: built-ins (`builtin = "NAME"`) and test
/// plugins (`test-plugin = true`) by their `[package.metadata.kiln]`.
fn guests(dirs: &[PathBuf]) -> Vec<Guest> {
    dirs.iter()
        .flat_map(|dir| manifests(dir))
        .filter_map(|text| {
            let builtin = value(&text, "package.metadata.kiln", "builtin");
            let test = value(&text, "package.metadata.kiln", "test-plugin");
            (builtin.is_some() || test.as_deref() == Some("true")).then_some(Guest {
                package: value(&text, "package", "name")?,
                builtin,
            })
        })
        .collect()
}

/// The text of every `*/Cargo.toml` directly under `dir`.
fn manifests(dir: &Path) -> impl Iterator<Item = String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| Some(entry.ok()?.path().join("Cargo.toml")))
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| std::fs::read_to_string(&path).unwrap())
}

/// The value of `key` in the manifest's `[table]`: the small subset of
/// TOML these manifests use (`key = "text"` or `key = true`), so the build
/// script needs no TOML parser.
fn value(manifest: &str, table: &str, key: &str) -> Option<String> {
    let header = format!("[{table}]");
    let mut in_table = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_table = line == header;
        } else if in_table
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            // A value is a plain word or a quoted one with no `"` inside;
            // a `#` comment may follow.
            let v = v.trim();
            let v = match v.strip_prefix('"') {
                Some(quoted) => quoted.split('"').next().unwrap_or_default(),
                None => v.split('#').next().unwrap_or_default().trim(),
            };
            return Some(v.to_owned());
        }
    }
    None
}

fn wasm_path(dir: &Path, package: &str) -> PathBuf {
    let path = dir.join(format!("{}.wasm", package.replace('-', "_")));
    assert!(path.exists(), "guest build produced no {}", path.display());
    path
}
