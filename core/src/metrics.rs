//! Counters of cache events, as relaxed atomics: cheap to bump on the hot path, read at scrape
//! time by [`Metrics::snapshot`].

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Event counters of one cache.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $( $(#[$doc])* pub $name: AtomicU64, )*
        }

        /// A point-in-time copy of [`Metrics`].
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct MetricsSnapshot {
            $( $(#[$doc])* pub $name: u64, )*
        }

        impl Metrics {
            /// Reads every counter.
            pub fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot { $( $name: self.$name.load(Ordering::Relaxed), )* }
            }
        }
    };
}

counters! {
    /// Lookups answered from Redis.
    l2_hits,
    /// Lookups Redis could not answer with a value (absent, or unreadable).
    l2_misses,
    /// Loader calls started.
    loader_calls,
    /// Loader calls that threw, rejected or timed out.
    loader_errors,
    /// Values written (`set`, and loader results).
    sets,
    /// `del` calls.
    deletes,
    /// `invalidateTag` calls.
    tag_invalidations,
    /// `expire` calls.
    expires,
    /// `set`/`del`/`invalidateTag` calls rejected because Redis refused the invalidation for
    /// longer than the retry bound (or for good, `NOPERM`); each stays queued for replay.
    invalidations_refused,
    /// Values under the prefix that were not a readable envelope (treated as misses).
    redis_corrupt_values,
    /// Redis answers not copied into L1 because an invalidation raced with them.
    l1_fills_skipped,
    /// Loader values not cached because the key or a tag was invalidated while they loaded.
    loads_discarded,
    /// Stampede locks taken by this process.
    lock_acquired,
    /// Cache-aside misses that found another process's lock and waited for its value.
    lock_waits,
    /// Waits that ended with the value written by another process.
    lock_wait_hits,
    /// Waits that ran out (`lock.wait`) and loaded without the lock.
    lock_wait_timeouts,
    /// Bus messages published.
    bus_sent,
    /// Bus messages received from other processes.
    bus_received,
    /// Bus messages that could not be read.
    bus_malformed,
    /// Times the bus subscribed again after losing its connection (L1 cleared each time).
    bus_resubscriptions,
    /// Acknowledgements this process sent (or tried to) for other processes' invalidations.
    bus_acks_sent,
    /// Writes and invalidations that stopped waiting for acknowledgements at `bus.ackTimeout`.
    bus_ack_timeouts,
}

impl Metrics {
    /// Adds one to a counter.
    #[inline]
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How a `get`/`getOrSet` ended, the label of its latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyOutcome {
    /// Answered by Redis.
    L2Hit = 0,
    /// Nothing found and no loader: resolved `null`.
    Miss = 1,
    /// The loader supplied the value (or failed).
    Load = 2,
}

impl LatencyOutcome {
    /// Every outcome, in label order.
    pub const ALL: [LatencyOutcome; 3] = [
        LatencyOutcome::L2Hit,
        LatencyOutcome::Miss,
        LatencyOutcome::Load,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            LatencyOutcome::L2Hit => "l2_hit",
            LatencyOutcome::Miss => "miss",
            LatencyOutcome::Load => "load",
        }
    }
}

/// A cumulative histogram of durations, lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// A copy of a [`Histogram`]: per-bucket (non-cumulative) counts, total count and sum.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations per bucket (not cumulative); the last bucket is `+Inf`'s share beyond
    /// the last bound, reported through `count`.
    pub buckets: Vec<u64>,
    /// Observations.
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum_secs: f64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Reads it.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            count: self.count.load(Ordering::Relaxed),
            sum_secs: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// Latency histograms of `get`/`getOrSet`, one per outcome that is not an L1 hit. (An L1 hit
/// is served in JavaScript from L1's shared expiry table in well under a microsecond; it is
/// counted by the L1 hit counter and not timed, which keeps the hot path free of clock reads.)
#[derive(Debug, Default)]
pub struct Latencies {
    by_outcome: [Histogram; 3],
}

impl Latencies {
    /// Records one duration under `outcome`.
    pub fn observe(&self, outcome: LatencyOutcome, d: std::time::Duration) {
        self.by_outcome[outcome as usize].observe(d);
    }

    /// Reads every histogram, in [`LatencyOutcome::ALL`] order.
    pub fn snapshot(&self) -> Vec<HistogramSnapshot> {
        self.by_outcome.iter().map(Histogram::snapshot).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn histogram_buckets_and_sums() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(30));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[5], 1, "3 ms falls in the 5 ms bucket");
        assert_eq!(s.buckets.iter().sum::<u64>(), 2, "30 s is only in +Inf");
        assert!((s.sum_secs - 30.00305).abs() < 1e-6);
    }
}
