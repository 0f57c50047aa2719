//! Step start-up cost, the budget DESIGN.md sets at "well under a
//! millisecond": `cargo bench --bench step_start`.
//!
//! - `warm`: the plugin is compiled and linked (`InstancePre`); each
//!   iteration makes a store, instantiates and calls `describe()`.
//! - `cold_from_disk_cache`: a fresh runtime whose disk cache holds the
//!   precompiled plugin; each iteration reads and verifies the cache entry,
//!   deserializes, links, instantiates and calls `describe()`.

use std::sync::Arc;

use kiln::plugins;
use kiln::runtime::{CacheOutcome, Runtime, RuntimeConfig};
use kiln::ui::{DEFAULT_LOG_LIMIT, Level, Reporter, SecretMask, StepLog};

fn main() {
    divan::main();
}

struct Quiet;

impl Reporter for Quiet {
    fn log(&self, _: &str, _: Level, _: &str, _: &[(String, String)]) {}
    fn progress(&self, _: &str, _: &str, _: u64, _: Option<u64>) {}
}

fn log() -> Arc<StepLog> {
    Arc::new(StepLog::new(
        "bench",
        Arc::new(Quiet),
        SecretMask::default(),
        DEFAULT_LOG_LIMIT,
    ))
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
    let plugin = runtime.load(hello()).unwrap();
    bencher.bench_local(|| {
        tokio.block_on(runtime.describe(&plugin, log())).unwrap();
    });
}

#[divan::bench(sample_size = 1, sample_count = 200)]
fn cold_from_disk_cache(bencher: divan::Bencher) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Make sure the entry exists before measuring.
    runtime().load(hello()).unwrap();
    bencher.with_inputs(runtime).bench_local_values(|runtime| {
        let plugin = runtime.load(hello()).unwrap();
        assert_eq!(plugin.cache_outcome(), CacheOutcome::Hit);
        tokio.block_on(runtime.describe(&plugin, log())).unwrap();
        runtime
    });
}
