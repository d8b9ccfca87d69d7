//! Problems with Redis worth telling the operator about: a wrong password, a missing ACL
//! permission, a database that does not exist, a Redis that is out of memory, read-only,
//! loading, busy or unreachable.
//!
//! The cache keeps working through all of them (it falls back to L1 and loaders, slower), which
//! is exactly why they must be reported somewhere: otherwise a misconfiguration looks like
//! "Redis down". The Redis layer ([`crate::l2`]) and the bus subscriber ([`crate::bus`]) report
//! what Redis said; the binding drains the distinct problems noticed since the last drain with
//! [`Problems::take`] and hands them to the JavaScript side, which logs them (or emits a process
//! warning once per code).
//!
//! Memory is bounded: one entry per [`ProblemCode`] (repeats only bump its count), and reports
//! are cheap when nothing is wrong (a success costs one relaxed atomic load).
//!
//! Every message and detail is scrubbed of the password of the Redis URL (raw and
//! percent-decoded); the target is named by [`crate::config::redact`].

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// What kind of problem: one per distinct cause and remedy. [`ProblemCode::as_str`] is the
/// stable code the JavaScript side reports (`MLC_REDIS_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemCode {
    /// Redis refused the credentials (`WRONGPASS`, `NOAUTH`, authentication failed).
    Auth,
    /// The ACL user lacks a permission (`NOPERM`): a command, key or channel.
    NoPerm,
    /// The database number of the URL does not exist (`SELECT` refused).
    Db,
    /// No connection: refused, dropped, DNS or TLS failure.
    Unreachable,
    /// Connected, but no answer within `redis.commandTimeout` (+ `connectTimeout`).
    Timeout,
    /// Redis is at `maxmemory` and refuses writes (`OOM`).
    Oom,
    /// Redis is running a long script (`BUSY`).
    Busy,
    /// The server is a read-only replica (`READONLY`).
    ReadOnly,
    /// Redis is loading its dataset, or a replica lost its master (`LOADING`, `MASTERDOWN`).
    Loading,
    /// Any other error reply (an unknown command on a Redis-compatible server, a script error).
    Error,
    /// Redis answers again after it was unreachable or timed out (informational).
    Recovered,
}

impl ProblemCode {
    /// The stable code, e.g. `MLC_REDIS_AUTH`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemCode::Auth => "MLC_REDIS_AUTH",
            ProblemCode::NoPerm => "MLC_REDIS_NOPERM",
            ProblemCode::Db => "MLC_REDIS_DB",
            ProblemCode::Unreachable => "MLC_REDIS_UNREACHABLE",
            ProblemCode::Timeout => "MLC_REDIS_TIMEOUT",
            ProblemCode::Oom => "MLC_REDIS_OOM",
            ProblemCode::Busy => "MLC_REDIS_BUSY",
            ProblemCode::ReadOnly => "MLC_REDIS_READONLY",
            ProblemCode::Loading => "MLC_REDIS_LOADING",
            ProblemCode::Error => "MLC_REDIS_ERROR",
            ProblemCode::Recovered => "MLC_REDIS_RECOVERED",
        }
    }

    /// The log level it deserves: `error` for misconfiguration that will not heal by itself,
    /// `info` for recovery, `warn` for the rest.
    pub fn level(self) -> &'static str {
        match self {
            ProblemCode::Auth | ProblemCode::NoPerm | ProblemCode::Db => "error",
            ProblemCode::Recovered => "info",
            _ => "warn",
        }
    }

    fn summary(self) -> &'static str {
        match self {
            ProblemCode::Auth => "refused the credentials: check the user and password of redisUrl",
            ProblemCode::NoPerm => "refused a command for lack of an ACL permission: grant it to the user (see README, \"Least privilege\")",
            ProblemCode::Db => "has no such database: check the /db number of redisUrl (Redis' `databases` setting)",
            ProblemCode::Unreachable => "cannot be reached: the cache runs on L1 and loaders until it is back",
            ProblemCode::Timeout => "did not answer within redis.commandTimeout: the cache runs on L1 and loaders meanwhile",
            ProblemCode::Oom => "is out of memory (maxmemory) and refuses writes: values are not shared until it has room",
            ProblemCode::Busy => "is busy running a script and refuses commands",
            ProblemCode::ReadOnly => "is a read-only replica: point redisUrl at the primary",
            ProblemCode::Loading => "is not ready to serve data (loading its dataset, or a replica without its master)",
            ProblemCode::Error => "answered with an unexpected error",
            ProblemCode::Recovered => "is reachable again",
        }
    }
}

/// One distinct problem noticed since the last [`Problems::take`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What kind.
    pub code: ProblemCode,
    /// Redis' own error code (`WRONGPASS`, `NOPERM`, ...), when it answered with one.
    pub redis_code: Option<String>,
    /// What Redis (or the connection) said, first occurrence, scrubbed of the password.
    pub detail: String,
    /// Where it was noticed: `command` (a cache operation) or `subscribe` (the bus).
    pub context: &'static str,
    /// The server, as `redisUrl` with its password replaced by `***`.
    pub target: String,
    /// Occurrences since the last drain.
    pub count: u64,
}

impl Problem {
    /// A one-line message for logs and warnings (never contains the password).
    pub fn message(&self) -> String {
        let mut m = format!("Redis at {} {}", self.target, self.code.summary());
        if !self.detail.is_empty() {
            m.push_str(" (");
            m.push_str(&self.detail);
            m.push(')');
        }
        m
    }
}

/// The most characters of Redis' text kept in a [`Problem::detail`].
const MAX_DETAIL: usize = 300;

/// The problems of one cache (shared by its Redis layer and bus subscriber).
#[derive(Debug)]
pub struct Problems {
    target: String,
    secrets: Vec<String>,
    pending: Mutex<Vec<Problem>>,
    /// whether anything is waiting in `pending` (a cheap check for [`Problems::take`])
    any: AtomicBool,
    /// whether the last availability outcome was a failure (unreachable or timeout)
    down: AtomicBool,
}

impl Problems {
    /// Problems of a cache using `url` (its password is scrubbed from everything reported).
    pub fn new(url: &str) -> Problems {
        let secrets = password_of(url)
            .map(|p| {
                let decoded = percent_decode(p);
                let mut v = vec![p.to_string()];
                if decoded != p {
                    v.push(decoded);
                }
                v
            })
            .unwrap_or_default();
        Problems {
            target: crate::config::redact(url),
            secrets,
            pending: Mutex::new(Vec::new()),
            any: AtomicBool::new(false),
            down: AtomicBool::new(false),
        }
    }

    /// Classifies an error of the redis client and reports it (nothing for `NOSCRIPT`, which
    /// the client handles by loading the script).
    pub fn report_redis(&self, e: &redis::RedisError, context: &'static str) {
        if e.kind() == redis::ErrorKind::AuthenticationFailed {
            return self.push(ProblemCode::Auth, None, &e.to_string(), context);
        }
        if e.is_timeout() {
            return self.report_timeout(&e.to_string(), context);
        }
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.kind() == redis::ErrorKind::ClusterConnectionNotFound
            || matches!(e.code(), Some("MOVED" | "ASK" | "CLUSTERDOWN" | "TRYAGAIN"))
        {
            // (on a cluster: a slot whose owner is gone or changing)
            return self.report_unreachable(&e.to_string(), context);
        }
        let text = e.to_string();
        // a pipeline's error (MGET, a script in a pipeline) has no code of its own: its text
        // carries the failing command's
        match e.code().or_else(|| known_code(&text)) {
            Some(code) => self.report_coded(code, &text, context),
            None => self.report_redis_error(&text, context),
        }
    }

    /// Reports an error reply given as Redis' text (`NOPERM this user has no permissions...`);
    /// its code is the first word.
    pub fn report_redis_error(&self, text: &str, context: &'static str) {
        let code = text
            .split(|c: char| c.is_whitespace() || c == ':')
            .find(|w| !w.is_empty())
            .unwrap_or("")
            .trim_matches('"');
        self.report_coded(code, text, context);
    }

    fn report_coded(&self, code: &str, text: &str, context: &'static str) {
        let upper = code.to_ascii_uppercase();
        let lower = text.to_ascii_lowercase();
        let kind = match upper.as_str() {
            "NOSCRIPT" => return,
            "WRONGPASS" | "NOAUTH" => ProblemCode::Auth,
            "NOPERM" => ProblemCode::NoPerm,
            "OOM" => ProblemCode::Oom,
            "BUSY" => ProblemCode::Busy,
            "READONLY" => ProblemCode::ReadOnly,
            "LOADING" | "MASTERDOWN" => ProblemCode::Loading,
            _ if lower.contains("db index")
                || lower.contains("invalid db")
                || lower.contains("switch database") =>
            {
                ProblemCode::Db
            }
            // an unauthenticated client sending a large command gets a protocol error
            _ if lower.contains("wrongpass")
                || lower.contains("authentication")
                || lower.contains("unauthenticated") =>
            {
                ProblemCode::Auth
            }
            // an ACL refusal inside a script: "ERR The user executing the script can't ..."
            _ if lower.contains("noperm")
                || lower.contains("no permissions")
                || lower.contains("user executing the script can't") =>
            {
                ProblemCode::NoPerm
            }
            _ => ProblemCode::Error,
        };
        let redis_code =
            (!upper.is_empty() && upper.bytes().all(|b| b.is_ascii_uppercase())).then_some(upper);
        self.push(kind, redis_code, text, context);
    }

    /// Reports that no connection could be made or it dropped.
    pub fn report_unreachable(&self, detail: &str, context: &'static str) {
        self.down.store(true, Ordering::Relaxed);
        self.push(ProblemCode::Unreachable, None, detail, context);
    }

    /// Reports a command or connection attempt that got no answer in time.
    pub fn report_timeout(&self, detail: &str, context: &'static str) {
        self.down.store(true, Ordering::Relaxed);
        self.push(ProblemCode::Timeout, None, detail, context);
    }

    /// Redis answered: reports [`ProblemCode::Recovered`] if it was unreachable or timing out.
    /// One relaxed load when it was not.
    pub fn recovered(&self) {
        if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::Relaxed) {
            self.push(ProblemCode::Recovered, None, "", "command");
        }
    }

    /// The distinct problems noticed since the last call, in the order first noticed (empty,
    /// without taking a lock, when there are none).
    pub fn take(&self) -> Vec<Problem> {
        if !self.any.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut pending = self.pending.lock();
        self.any.store(false, Ordering::Release);
        std::mem::take(&mut *pending)
    }

    fn push(
        &self,
        code: ProblemCode,
        redis_code: Option<String>,
        detail: &str,
        context: &'static str,
    ) {
        let mut pending = self.pending.lock();
        // down again before the recovery was drained: the latest state is what matters
        if matches!(code, ProblemCode::Unreachable | ProblemCode::Timeout) {
            pending.retain(|p| p.code != ProblemCode::Recovered);
        }
        if let Some(p) = pending.iter_mut().find(|p| p.code == code) {
            p.count += 1;
            return;
        }
        pending.push(Problem {
            code,
            redis_code,
            detail: self.scrub(detail),
            context,
            target: self.target.clone(),
            count: 1,
        });
        self.any.store(true, Ordering::Release);
    }

    fn scrub(&self, text: &str) -> String {
        let mut s: String = text.chars().take(MAX_DETAIL).collect();
        for secret in &self.secrets {
            if !secret.is_empty() {
                s = s.replace(secret.as_str(), "***");
            }
        }
        s
    }
}

/// Reports the outcome of one bounded Redis call: `Err(_)` it got no answer in time,
/// `Ok(Some(e))` it failed with `e`, `Ok(None)` it succeeded (Redis is reachable).
pub fn observe<E>(
    problems: &Problems,
    outcome: Result<Option<&redis::RedisError>, E>,
    context: &'static str,
) {
    match outcome {
        Ok(None) => problems.recovered(),
        Ok(Some(e)) => problems.report_redis(e, context),
        Err(_) => problems.report_timeout("no answer in time", context),
    }
}

/// The error codes this module tells apart (as Redis spells them).
const KNOWN_CODES: [&str; 9] = [
    "WRONGPASS",
    "NOAUTH",
    "NOPERM",
    "OOM",
    "BUSY",
    "READONLY",
    "LOADING",
    "MASTERDOWN",
    "NOSCRIPT",
];

/// The first known error code standing as a word of `text` (`Pipeline failure: [(Index 0,
/// error: "OOM": command not allowed ...)]`).
fn known_code(text: &str) -> Option<&'static str> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .find_map(|w| KNOWN_CODES.iter().find(|k| **k == w).copied())
}

/// The password part of a URL's userinfo, if any.
fn password_of(url: &str) -> Option<&str> {
    let s = url.find("://")? + 3;
    let at = url.rfind('@').filter(|&at| at > s)?;
    let userinfo = &url[s..at];
    let password = match userinfo.split_once(':') {
        Some((_, p)) => p,
        None => userinfo, // `redis://secret@host`: a lone userinfo may be a password too
    };
    (!password.is_empty()).then_some(password)
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(p: &Problems) -> Vec<(ProblemCode, u64)> {
        p.take().into_iter().map(|p| (p.code, p.count)).collect()
    }

    #[test]
    fn error_replies_are_classified_by_their_code() {
        let p = Problems::new("redis://127.0.0.1:6379");
        for (text, code) in [
            (
                "WRONGPASS invalid username-password pair",
                Some(ProblemCode::Auth),
            ),
            ("NOAUTH Authentication required.", Some(ProblemCode::Auth)),
            (
                "NOPERM this user has no permissions to run the 'evalsha' command",
                Some(ProblemCode::NoPerm),
            ),
            ("ERR DB index is out of range", Some(ProblemCode::Db)),
            ("ERR invalid DB index", Some(ProblemCode::Db)),
            (
                "OOM command not allowed when used memory > 'maxmemory'.",
                Some(ProblemCode::Oom),
            ),
            (
                "BUSY Redis is busy running a script.",
                Some(ProblemCode::Busy),
            ),
            (
                "READONLY You can't write against a read only replica.",
                Some(ProblemCode::ReadOnly),
            ),
            (
                "LOADING Redis is loading the dataset in memory",
                Some(ProblemCode::Loading),
            ),
            (
                "MASTERDOWN Link with MASTER is down",
                Some(ProblemCode::Loading),
            ),
            ("ERR unknown command 'EVALSHA'", Some(ProblemCode::Error)),
            ("ERR Protocol error: unauthenticated multibulk length", Some(ProblemCode::Auth)),
            ("ERR The user executing the script can't publish to the channel mentioned in the command script", Some(ProblemCode::NoPerm)),
            ("NOSCRIPT No matching script.", None),
        ] {
            p.report_redis_error(text, "command");
            let got = p.take();
            assert_eq!(got.first().map(|p| p.code), code, "{text}");
        }
    }

    #[test]
    fn pipeline_errors_are_classified_by_the_code_in_their_text() {
        assert_eq!(
            known_code("Pipeline failure: [(Index 0, error: \"OOM\": command not allowed when used memory > 'maxmemory'.)]"),
            Some("OOM")
        );
        assert_eq!(known_code("ResponseError: Protocol error"), None);
    }

    #[test]
    fn repeats_are_counted_once_per_code_and_drained() {
        let p = Problems::new("redis://127.0.0.1:6379");
        assert!(p.take().is_empty());
        for _ in 0..1000 {
            p.report_redis_error("NOPERM no", "command");
            p.report_unreachable("refused", "subscribe");
        }
        assert_eq!(
            codes(&p),
            vec![
                (ProblemCode::NoPerm, 1000),
                (ProblemCode::Unreachable, 1000)
            ]
        );
        assert!(p.take().is_empty());
    }

    #[test]
    fn recovery_is_reported_once_after_unavailability() {
        let p = Problems::new("redis://127.0.0.1:6379");
        p.recovered();
        assert!(p.take().is_empty(), "healthy all along: nothing to say");
        p.report_timeout("no answer", "command");
        p.take();
        p.recovered();
        p.recovered();
        assert_eq!(codes(&p), vec![(ProblemCode::Recovered, 1)]);
        p.report_unreachable("refused", "command");
        p.recovered();
        p.report_unreachable("refused", "command");
        assert_eq!(codes(&p), vec![(ProblemCode::Unreachable, 2)]);
    }

    #[test]
    fn passwords_never_appear() {
        let p = Problems::new("redis://app:s3cr%40t@127.0.0.1:6390/2");
        p.report_redis_error("ERR something about s3cr@t and s3cr%40t", "command");
        let got = p.take().remove(0);
        let all = format!("{} {} {}", got.message(), got.detail, got.target);
        assert!(!all.contains("s3cr"), "{all}");
        assert!(got.target.contains("127.0.0.1:6390"));
    }
}
