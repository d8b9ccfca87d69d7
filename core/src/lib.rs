//! # mlc-core: the engine of `multi-level-cache`
//!
//! Plain Rust, no Node.js types: the binding crate (`src/lib.rs` at the repository root) turns
//! JavaScript values and errors into calls of [`cache::Cache`].
//!
//! - [`config`]: options, defaults and their validation.
//! - [`l1`]: the bounded in-process layer (moka), holding slot numbers, TTLs and tags.
//! - [`connection`]: the Redis client for the configured server (shared by L2 and the bus).
//! - [`l2`]: the Redis layer, every command bounded by a timeout.
//! - [`breaker`]: the circuit breaker that stops calling a dead or frozen Redis.
//! - [`replay`]: invalidations that failed, kept (one per key or tag) until Redis is back.
//! - [`keys`]: the Redis key layout of a prefix.
//! - [`lock`]: stampede locks held and awaited across processes.
//! - [`bus`]: the pub/sub invalidation bus between processes.
//! - [`codec`]: the envelope a value travels in through Redis.
//! - [`invalidation`]: the memory that keeps racing reads from refilling L1 with stale data.
//! - [`tag_versions`]: the tag markers this process knows, to judge tagged entries read from Redis.
//! - [`key_order`]: the writes of one key reach Redis in program order.
//! - [`metrics`]: event counters.
//! - [`problems`]: Redis problems worth telling the operator (auth, ACL, db, unreachable...).
//! - [`cache`]: the orchestrator (the `Cache` facade), its completion queue, read batcher,
//!   locking reads and write barrier.
//! - [`clock`]: wall-clock time in Unix milliseconds and microseconds (imports nothing).
//! - [`runtime`]: the process-wide tokio runtime.
//! - [`error`]: error codes and classes.

pub mod acks;
pub mod breaker;
pub mod bus;
pub mod cache;
pub mod clock;
pub mod codec;
pub mod config;
pub mod connection;
pub mod error;
pub mod invalidation;
pub mod key_order;
pub mod keys;
pub mod l1;
pub mod l2;
pub mod lock;
pub mod metrics;
pub mod problems;
pub mod replay;
pub mod runtime;
pub mod shared_state;
pub mod tag_versions;
