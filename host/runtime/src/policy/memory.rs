//! The memory cap of a step.
//!
//! wasmtime's `StoreLimits` can refuse growth past a cap, but it cannot tell
//! the host afterwards *why* the guest died: a refused `memory.grow` makes a
//! Rust guest abort with a generic trap. [`MemoryCap`] is a `StoreLimits`
//! that remembers that the cap was hit and turns the refusal into a trap
//! carrying [`MemoryCapExceeded`], so the user is told to raise `--memory`.

use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// A guest tried to grow its memory past the step's cap.
#[derive(Debug, thiserror::Error)]
#[error("the plugin needs more than its memory limit of {limit} bytes")]
pub struct MemoryCapExceeded {
    /// The cap in bytes.
    pub limit: u64,
}

/// Limits a store's linear memories to `limit` bytes each.
pub struct MemoryCap {
    limit: u64,
    limits: StoreLimits,
    hit: AtomicBool,
}

/// Table elements a plugin may have: generous for real code, small enough
/// that a hostile table cannot exhaust the host.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl MemoryCap {
    /// A cap of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        MemoryCap {
            limit,
            limits: StoreLimitsBuilder::new()
                .memory_size(usize::try_from(limit).unwrap_or(usize::MAX))
                .table_elements(MAX_TABLE_ELEMENTS)
                .build(),
            hit: AtomicBool::new(false),
        }
    }

    /// The cap in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether a growth was refused because of the cap.
    pub fn was_hit(&self) -> bool {
        self.hit.load(Ordering::Relaxed)
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if self.limits.memory_growing(current, desired, maximum)? {
            return Ok(true);
        }
        self.hit.store(true, Ordering::Relaxed);
        Err(wasmtime::Error::new(MemoryCapExceeded {
            limit: self.limit,
        }))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}
