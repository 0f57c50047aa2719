//! Step start-up cost, the budget DESIGN.md sets at "well under a
//! millisecond": `cargo bench --bench step_start`.
//!
//! - `warm`: the plugin is compiled, linked (`InstancePre`) and described
//!   (`describe()` is asked once per loaded plugin); each iteration runs
//!   the `hello` step as `kiln step` does: checks its inputs, builds the
//!   sandbox from the grant (preopens, limits), makes a store,
//!   instantiates and calls `run`, which writes its greeting.
//! - `cold_from_disk_cache`: a fresh runtime whose disk cache holds the
//!   precompiled plugin; each iteration reads and verifies the cache entry,
//!   deserializes, links, and runs the step as above (so `describe()` too).

use std::sync::Arc;

use kiln_grant::{ProcessEnv, StepGrant};
use kiln_runtime::cache::CacheOutcome;
use kiln_runtime::plugins::{self, PluginRef};
use kiln_runtime::policy::StepDirs;
use kiln_runtime::report::{Level, Reporter};
use kiln_runtime::step::{self, StepRequest};
use kiln_runtime::{Runtime, RuntimeConfig};

fn main() {
    divan::main();
}

struct Quiet;

impl Reporter for Quiet {
    fn log(&self, _: &str, _: Level, _: &str, _: &[(String, String)]) {}
    fn progress(&self, _: &str, _: &str, _: u64, _: Option<u64>) {}
}

/// The `hello` step writing into `dir`.
fn request(dir: &std::path::Path) -> StepRequest {
    let hello = plugins::builtin("hello").expect("hello is built in");
    let dirs = StepDirs {
        workspace: dir.to_owned(),
        output: dir.to_owned(),
        mounts: Vec::new(),
        hidden: Vec::new(),
    };
    StepRequest::new(
        "bench",
        PluginRef::Builtin(hello),
        Vec::new(),
        StepGrant::default(),
        dirs,
    )
}

/// Run the step once, as `kiln step hello` does.
fn run_step(tokio: &tokio::runtime::Runtime, runtime: &Runtime, request: &StepRequest) {
    tokio
        .block_on(step::run(runtime, request, Arc::new(Quiet), &ProcessEnv))
        .expect("the hello step runs");
}

fn hello() -> &'static [u8] {
    plugins::builtin("hello").expect("hello is built in").wasm
}

fn cache_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("kiln-bench-cache")
}

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(cache_dir()),
    })
    .expect("runtime")
}

#[divan::bench]
fn warm(bencher: divan::Bencher) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let request = request(dir.path());
    run_step(&tokio, &runtime, &request);
    bencher.bench_local(|| run_step(&tokio, &runtime, &request));
}

#[divan::bench(sample_size = 1, sample_count = 200)]
fn cold_from_disk_cache(bencher: divan::Bencher) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Make sure the entry exists before measuring.
    runtime().load(hello()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let request = request(dir.path());
    bencher.with_inputs(runtime).bench_local_values(|runtime| {
        let plugin = runtime.load(hello()).unwrap();
        assert_eq!(plugin.cache_outcome(), CacheOutcome::Hit);
        run_step(&tokio, &runtime, &request);
        runtime
    });
}
