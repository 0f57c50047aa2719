//! The wasmtime side of kiln: one engine, a linker with WASI p2, wasi:http
//! and the kiln host interfaces, precompiled components, and one store per
//! step run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{HasSelf, Linker, ResourceTable, ResourceTableError};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};
use wasmtime_wasi_http::WasiHttpCtx;

use kiln_grant::{MAX_MEMORY, MemorySize};

use crate::cache::{CacheOutcome, ComponentCache};
use crate::host_api::bindings;
use crate::host_api::{NamedValue, PluginInfo, StepContext, StepError, StepState};
use crate::log::{LogLimitExceeded, StepLog};
use crate::policy::Sandbox;
use kiln_executor::tier::Tier;

/// Linear memories one plugin may have (Rust components have one).
const MAX_MEMORIES: u32 = 2;

/// How often the epoch advances; a step's timeout is accurate to this.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Time `describe()` may take; it must be cheap.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Memory `describe()` may use.
const DESCRIBE_MEMORY: u64 = 256 << 20;

/// Handles (open files and directories, streams, HTTP requests) one step
/// may hold at once. Each open file is a host file descriptor; without a
/// bound one step could take every descriptor kiln has and starve the
/// steps beside it.
pub const MAX_HANDLES: usize = 1024;

/// What a plugin call returned, and the isolation its RUN commands had
/// (none when it ran none), for the step's summary.
#[derive(Debug, Clone)]
pub struct Called<R> {
    /// The call's result.
    pub value: R,
    /// The RUN isolation tier used, by name.
    pub isolation: Option<&'static str>,
}

/// A plugin ready to instantiate: compiled, linked, with its digest.
pub struct LoadedPlugin {
    pre: bindings::StepPluginPre<StepState>,
    digest: String,
    cache: CacheOutcome,
    /// What `describe()` answered, asked once per loaded component: a
    /// component's description cannot change, and asking again would
    /// instantiate it a second time for every step.
    info: tokio::sync::OnceCell<PluginInfo>,
    /// Whether the component imports `kiln:plugin/executor`: it may ask
    /// the host to run native commands (only when its step is granted).
    runs_commands: bool,
}

impl LoadedPlugin {
    /// Whether the component imports the executor interface, so that its
    /// steps may need `allow.run`.
    pub fn runs_commands(&self) -> bool {
        self.runs_commands
    }

    /// `sha256:<hex>` of the component bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Whether the compiled form came from the disk cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }
}

/// Why a step did not succeed. Each message is one line that names the
/// cause and, where the user can act, the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepFailure {
    /// The plugin or host found an input unusable.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The plugin needed a capability its grant does not give.
    #[error("{0}")]
    Denied(String),
    /// The plugin ran and reported failure.
    #[error("failed: {0}")]
    Failed(String),
    /// The plugin crashed (a wasm trap, including Rust panics).
    #[error("plugin crashed: {0}")]
    Trapped(String),
    /// The wall-clock limit passed.
    #[error("timed out after {} (raise it with --timeout or allow.timeout)", humantime::format_duration(*.0))]
    TimedOut(Duration),
    /// The plugin tried to use more memory than granted.
    #[error("exceeded its memory limit of {} (raise it with --memory or allow.memory)", MemorySize(*.0))]
    MemoryExceeded(u64),
    /// The plugin printed more than its log budget.
    #[error("exceeded its output limit of {0} bytes of logs")]
    LogLimit(u64),
    /// The plugin held more handles (files, streams, requests) at once
    /// than a step may.
    #[error(
        "held more than {MAX_HANDLES} open files, streams or requests at once; a plugin must close what it no longer uses"
    )]
    HandleLimit,
    /// The plugin could not be loaded or instantiated.
    #[error("cannot start plugin: {0}")]
    Setup(String),
}

impl StepFailure {
    /// Whether the cause is the caller's input rather than the run.
    pub fn is_usage(&self) -> bool {
        matches!(self, StepFailure::InvalidInput(_) | StepFailure::Setup(_))
    }
}

/// Settings of a [`Runtime`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Where precompiled components are kept; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
}

impl RuntimeConfig {
    /// `$KILN_CACHE_DIR`, else the user's cache directory + `kiln`.
    pub fn from_env() -> Self {
        let cache_dir = std::env::var_os("KILN_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| dirs::cache_dir().map(|d| d.join("kiln")));
        RuntimeConfig { cache_dir }
    }
}

/// The engine, linker and loaded plugins of a kiln process. Create one and
/// share it: every step run gets its own `Store` from it.
pub struct Runtime {
    engine: Engine,
    linker: Linker<StepState>,
    cache: ComponentCache,
    loaded: Mutex<HashMap<String, Arc<LoadedPlugin>>>,
    ticker_stop: Arc<AtomicBool>,
    cache_root: Option<PathBuf>,
}

impl Runtime {
    /// Build the engine (pooling allocator, epoch interruption) and linker.
    pub fn new(config: RuntimeConfig) -> wasmtime::Result<Self> {
        let mut pool = PoolingAllocationConfig::new();
        pool.max_memory_size(usize::try_from(MAX_MEMORY).unwrap_or(usize::MAX))
            .total_component_instances(64)
            .total_core_instances(512)
            .total_memories(128)
            .total_tables(512)
            .total_stacks(64)
            // The memory cap applies to each linear memory; bounding their
            // number keeps one component from multiplying it.
            .max_memories_per_component(MAX_MEMORIES)
            .max_core_instances_per_component(64);
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        // Always linked, even for steps granted no network, so that every
        // plugin instantiates; the hook denies what is not granted.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        bindings::StepPlugin::add_to_linker::<_, HasSelf<StepState>>(&mut linker, |s| s)?;
        // Every open is checked against the directories the step may not
        // see even where a mount covers them.
        crate::policy::add_hidden_check_to_linker(&mut linker, |s: &StepState| s.mounts.hidden())?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), ticker_stop.clone());

        Ok(Runtime {
            cache: ComponentCache::new(&engine, config.cache_dir.as_deref()),
            cache_root: config.cache_dir,
            engine,
            linker,
            loaded: Mutex::new(HashMap::new()),
            ticker_stop,
        })
    }

    /// Compile (or load from the disk cache) and link a component.
    /// Loading the same bytes twice returns the same plugin.
    pub fn load(&self, wasm: &[u8]) -> wasmtime::Result<Arc<LoadedPlugin>> {
        let digest_hex = hex::encode(Sha256::digest(wasm));
        if let Some(plugin) = self.loaded_plugins().get(&digest_hex) {
            return Ok(plugin.clone());
        }
        let (component, cache) = self.cache.load(&self.engine, wasm, &digest_hex)?;
        let runs_commands = component
            .component_type()
            .imports(&self.engine)
            .any(|(name, _)| name.starts_with("kiln:plugin/executor@"));
        let pre = bindings::StepPluginPre::new(self.linker.instantiate_pre(&component)?)?;
        let plugin = Arc::new(LoadedPlugin {
            pre,
            digest: format!("sha256:{digest_hex}"),
            cache,
            info: tokio::sync::OnceCell::new(),
            runs_commands,
        });
        self.loaded_plugins().insert(digest_hex, plugin.clone());
        Ok(plugin)
    }

    /// kiln's cache directory (compiled plugins, build layouts), which no
    /// step may open beyond its own output there.
    pub fn cache_root(&self) -> Option<&std::path::Path> {
        self.cache_root.as_deref()
    }

    fn loaded_plugins(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LoadedPlugin>>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Call `describe()` in a sandbox with the default grant and nothing
    /// mounted but empty directories, the first time it is asked for this
    /// plugin; later calls answer from memory (and log nothing).
    pub async fn describe(
        &self,
        plugin: &LoadedPlugin,
        log: Arc<StepLog>,
    ) -> Result<PluginInfo, StepFailure> {
        plugin
            .info
            .get_or_try_init(|| async {
                let sandbox = Sandbox::isolated(log, DESCRIBE_MEMORY, DESCRIBE_TIMEOUT);
                self.call(plugin, sandbox, |instance, store| {
                    Box::pin(async move { instance.kiln_plugin_step().call_describe(store).await })
                })
                .await
                .map(|called| called.value)
            })
            .await
            .cloned()
    }

    /// Run the step: instantiate in a fresh store under `sandbox`, call
    /// `run`, and classify any failure.
    pub async fn run(
        &self,
        plugin: &LoadedPlugin,
        sandbox: Sandbox,
        context: StepContext,
        inputs: Vec<NamedValue>,
    ) -> Result<Called<Vec<NamedValue>>, StepFailure> {
        let Called { value, isolation } = self
            .call(plugin, sandbox, move |instance, store| {
                Box::pin(async move {
                    instance
                        .kiln_plugin_step()
                        .call_run(store, &context, &inputs)
                        .await
                })
            })
            .await?;
        value
            .map(|value| Called { value, isolation })
            .map_err(|error| match error {
                StepError::InvalidInput(m) => StepFailure::InvalidInput(m),
                StepError::Denied(m) if m.starts_with("denied") => StepFailure::Denied(m),
                StepError::Denied(m) => StepFailure::Denied(format!("denied: {m}")),
                StepError::Failed(m) => StepFailure::Failed(m),
            })
    }

    /// Instantiate `plugin` in a new store built from `sandbox` and call
    /// `f`, enforcing the time and memory limits. Messages are masked.
    async fn call<R>(
        &self,
        plugin: &LoadedPlugin,
        sandbox: Sandbox,
        f: impl for<'a> FnOnce(
            bindings::StepPlugin,
            &'a mut Store<StepState>,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>,
        >,
    ) -> Result<Called<R>, StepFailure> {
        let log = sandbox.log.clone();
        let stdio = sandbox.stdio.clone();
        let timeout = sandbox.timeout;
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HANDLES);
        let mut store = Store::new(
            &self.engine,
            StepState {
                wasi: sandbox.wasi,
                table,
                http_ctx: WasiHttpCtx::new(),
                http: sandbox.http,
                memory: sandbox.memory,
                secrets: sandbox.secrets,
                mounts: sandbox.mounts,
                gzip_streams: 0,
                log: sandbox.log,
                run: crate::host_api::executor::RunState::new(sandbox.run),
            },
        );
        store.limiter(|state| &mut state.memory);
        // Every tick the guest yields to tokio, so a cancelled or timed-out
        // step stops promptly even while it spins, and never hogs a worker
        // thread; past the deadline it traps, and so does a step past its
        // output budget (host lines it caused, such as denials, are charged
        // without failing the call that caused them).
        let deadline = std::time::Instant::now() + timeout;
        let budget = log.clone();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if budget.limit_exceeded() {
                return Err(wasmtime::Error::new(LogLimitExceeded {
                    limit: budget.limit(),
                }));
            }
            if std::time::Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });

        // The epoch stops guest code that spins; the tokio timeout stops a
        // guest blocked in a host call (sleeping, waiting on a socket).
        let outcome = tokio::time::timeout(timeout, async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            f(instance, &mut store).await
        })
        .await;
        for output in &stdio {
            output.finish();
        }
        let state = store.data();
        // Unfinished files go, whether the step succeeded, failed, timed
        // out or crashed.
        state.mounts.remove_partial_files(&log);
        let isolation = state.run.used.map(Tier::name);
        let error = match outcome {
            Ok(Ok(value)) => return Ok(Called { value, isolation }),
            Err(_elapsed) => return Err(StepFailure::TimedOut(timeout)),
            Ok(Err(error)) => error,
        };
        if state.memory.was_hit() {
            return Err(StepFailure::MemoryExceeded(state.memory.limit()));
        }
        if log.limit_exceeded() {
            return Err(StepFailure::LogLimit(log.limit()));
        }
        if error.chain().any(|cause| {
            matches!(
                cause.downcast_ref::<ResourceTableError>(),
                Some(ResourceTableError::Full)
            )
        }) {
            return Err(StepFailure::HandleLimit);
        }
        if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            return Err(StepFailure::TimedOut(timeout));
        }
        Err(match error.downcast_ref::<Trap>() {
            Some(trap) => StepFailure::Trapped(format!(
                "{trap} (a panic or abort; its message, if any, is in the step's output above)"
            )),
            None => StepFailure::Setup(log.mask().apply(&one_line(&error))),
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// The first line of an error and its root cause, without the wasm
/// backtrace wasmtime appends.
fn one_line(error: &wasmtime::Error) -> String {
    let top = error.to_string();
    let top = top.lines().next().unwrap_or_default().to_owned();
    let root = error.root_cause().to_string();
    let root = root.lines().next().unwrap_or_default();
    if root.is_empty() || top.contains(root) {
        top
    } else {
        format!("{top}: {root}")
    }
}

/// Advance the engine's epoch every [`EPOCH_TICK`] until `stop` is set.
fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("kiln-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .expect("spawning the epoch thread");
}
