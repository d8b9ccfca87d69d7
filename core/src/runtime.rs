//! The tokio runtime shared by every cache of a process.
//!
//! One worker thread: Redis work is I/O bound and the JavaScript thread needs the other core.
//! Its threads are not Node.js handles, so they never keep a process alive.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// A handle to the process-wide runtime, started on first use.
pub fn shared() -> Handle {
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("mlc-io")
                .enable_all()
                .build()
                .expect("the tokio runtime starts")
        })
        .handle()
        .clone()
}
