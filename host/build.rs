//! Builds the guest crates for `wasm32-wasip2` so that one `cargo build`
//! yields a `kiln` with its built-in plugins embedded.
//!
//! The guests are built by a nested cargo with its own target directory
//! (the outer build holds the lock on the main one), always in release mode:
//! they are small, and a debug guest would make every step slow.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Built-in plugins: name users type, cargo package, wasm file name.
const BUILTINS: &[(&str, &str)] = &[
    ("hello", "kiln-plugin-hello"),
    ("registry", "kiln-plugin-registry"),
    ("dockerfile-build", "kiln-plugin-dockerfile-build"),
    ("maven-artifact", "kiln-plugin-maven-artifact"),
];

/// Guest crates the tests need but that are not shipped in the binary.
const TEST_PLUGINS: &[&str] = &["kiln-test-hostile"];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_owned();
    for watched in ["wit", "plugins", "tests/plugins", "Cargo.lock", ".cargo"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
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
    for package in BUILTINS
        .iter()
        .map(|(_, p)| *p)
        .chain(TEST_PLUGINS.iter().copied())
    {
        command.args(["-p", package]);
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
    let mut table = String::from(
        "/// Built-in plugins: name and component bytes.\npub(crate) static BUILTINS: &[(&str, &[u8])] = &[\n",
    );
    for (name, package) in BUILTINS {
        let wasm = wasm_path(&wasm_dir, package);
        table.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            wasm.display().to_string()
        ));
    }
    table.push_str("];\n");
    std::fs::write(out_dir.join("builtins.rs"), table).unwrap();

    // Tests find their fixtures here.
    println!(
        "cargo:rustc-env=KILN_TEST_PLUGIN_DIR={}",
        wasm_dir.display()
    );
}

fn wasm_path(dir: &Path, package: &str) -> PathBuf {
    let path = dir.join(format!("{}.wasm", package.replace('-', "_")));
    assert!(path.exists(), "guest build produced no {}", path.display());
    path
}
