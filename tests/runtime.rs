//! One runtime, many steps: after each kind of hostile failure the same
//! `Runtime` runs the next step normally, as a pipeline would.

use std::path::Path;
use std::sync::{Arc, Mutex};

use kiln_grant::{MemorySize, ProcessEnv, StepGrant, Timeout};
use kiln_runtime::plugins::{GUEST_BUILD_DIR, PluginRef};
use kiln_runtime::policy::StepDirs;
use kiln_runtime::report::{Level, Reporter};
use kiln_runtime::step::{self, StepRequest};
use kiln_runtime::{Runtime, RuntimeConfig, StepFailure, Value};

#[derive(Default)]
struct Collect(Mutex<Vec<String>>);

impl Reporter for Collect {
    fn log(&self, step: &str, _: Level, message: &str, _: &[(String, String)]) {
        self.0.lock().unwrap().push(format!("[{step}] {message}"));
    }
    fn progress(&self, _: &str, _: &str, _: u64, _: Option<u64>) {}
}

fn request(
    dir: &Path,
    plugin: PluginRef,
    inputs: &[(&str, &str)],
    grant: StepGrant,
) -> StepRequest {
    StepRequest::new(
        "t",
        plugin,
        inputs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        grant,
        StepDirs {
            workspace: dir.to_owned(),
            output: dir.to_owned(),
            mounts: Vec::new(),
            hidden: Vec::new(),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_survives_every_failure_and_runs_the_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_owned()),
    })
    .unwrap();
    let hostile = PluginRef::File(Path::new(GUEST_BUILD_DIR).join("kiln_test_hostile.wasm"));
    let hello = PluginRef::parse("hello").unwrap();
    let tight = StepGrant {
        timeout: Some("1s".parse::<Timeout>().unwrap()),
        memory: Some("64MiB".parse::<MemorySize>().unwrap()),
        ..StepGrant::default()
    };
    let reporter = Arc::new(Collect::default());

    type Expect = fn(&StepFailure) -> bool;
    let attacks: [(&str, Expect); 5] = [
        ("spin", |f| matches!(f, StepFailure::TimedOut(_))),
        ("alloc", |f| matches!(f, StepFailure::MemoryExceeded(_))),
        ("trap", |f| matches!(f, StepFailure::Trapped(_))),
        ("log-flood", |f| matches!(f, StepFailure::LogLimit(_))),
        ("read-file", |f| matches!(f, StepFailure::Denied(_))),
    ];
    for (attack, expected) in attacks {
        let hostile_step = request(
            dir.path(),
            hostile.clone(),
            &[("attack", attack), ("target", "/etc/passwd")],
            tight.clone(),
        );
        let failure = step::run(&runtime, &hostile_step, reporter.clone(), &ProcessEnv)
            .await
            .expect_err(attack);
        assert!(expected(&failure), "{attack}: unexpected {failure:?}");

        let hello_step = request(
            dir.path(),
            hello.clone(),
            &[("name", attack)],
            StepGrant::default(),
        );
        let outputs = step::run(&runtime, &hello_step, reporter.clone(), &ProcessEnv)
            .await
            .unwrap_or_else(|e| panic!("hello after {attack}: {e}"));
        assert_eq!(
            outputs.value[0].value,
            Value::Text(format!("hello, {attack}!"))
        );
        assert_eq!(outputs.isolation, None, "hello runs no command");
    }
    // One loaded plugin is described once, however many steps run it.
    let described = reporter
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.as_str() == "[t] described")
        .count();
    assert_eq!(described, 1);
}
