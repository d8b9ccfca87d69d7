//! Why a Redis call did not give an answer, and which failures are worth a retry.

/// Why a Redis call did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L2Error {
    /// No answer within the bound.
    Timeout,
    /// No connection (refused, dropped, not yet made).
    Unavailable(String),
    /// Redis answered with an error reply: its code (`BUSY`, `OOM`, `NOPERM`, `WRONGPASS`,
    /// ...) and the whole reply.
    Refused {
        /// The reply's first word.
        code: String,
        /// The reply.
        message: String,
    },
    /// Something this side could not use (a URL it cannot parse, a reply of the wrong shape).
    Invalid(String),
    /// Not sent: the circuit breaker is open.
    Skipped,
}

/// Refusals that end by themselves (a script of another client running, memory full, a
/// server loading its data or not yet promoted): an invalidation refused this way is retried.
const TRANSIENT_REFUSALS: &[&str] = &[
    "BUSY",
    "OOM",
    "LOADING",
    "READONLY",
    "MASTERDOWN",
    "NOREPLICAS",
];

impl L2Error {
    /// Whether Redis could not be reached at all (no answer, no connection, breaker open): a
    /// write that failed this way is replayed (as an invalidation) once Redis is back.
    pub fn is_availability(&self) -> bool {
        matches!(
            self,
            L2Error::Timeout | L2Error::Unavailable(_) | L2Error::Skipped
        )
    }

    /// Whether Redis refused the command for a while only (`BUSY`, `OOM`, `LOADING`,
    /// `READONLY`, ...): trying again later can succeed.
    pub fn is_transient_refusal(&self) -> bool {
        matches!(self, L2Error::Refused { code, .. } if TRANSIENT_REFUSALS.contains(&code.as_str()))
    }

    /// A short stable name: Redis' error code, or `TIMEOUT`, `UNAVAILABLE`, `INVALID`, `SKIPPED`.
    pub fn code(&self) -> &str {
        match self {
            L2Error::Timeout => "TIMEOUT",
            L2Error::Unavailable(_) => "UNAVAILABLE",
            L2Error::Refused { code, .. } => code,
            L2Error::Invalid(_) => "INVALID",
            L2Error::Skipped => "SKIPPED",
        }
    }

    pub(super) fn from_redis(e: redis::RedisError) -> L2Error {
        if e.is_timeout() {
            return L2Error::Timeout;
        }
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_unrecoverable_error()
        {
            return L2Error::Unavailable(e.to_string());
        }
        let message = e.to_string();
        // a cluster whose slot is changing hands (a failover, a migration the client could not
        // follow within its retries) or that lost a slot's owner: the slot's data cannot be
        // reached for now, like a server down (the write is replayed once it answers again)
        if matches!(e.code(), Some("MOVED" | "ASK" | "CLUSTERDOWN" | "TRYAGAIN"))
            || e.kind() == redis::ErrorKind::ClusterConnectionNotFound
        {
            return L2Error::Unavailable(message);
        }
        // this client cannot use Redis at all (not authenticated, no such db): like no
        // connection, for every command (an operator problem, reported by crate::problems)
        if matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
            || message.contains("unauthenticated")
            || message.contains("DB index")
        {
            return L2Error::Unavailable(message);
        }
        match e.code() {
            // a command or channel a script may not use under the user's ACL comes back as ERR
            Some("ERR")
                if message.contains("can't run this command")
                    || message.contains("can't publish to the channel")
                    || message.contains("can't access")
                    || message.contains("no permissions") =>
            {
                L2Error::Refused {
                    code: "NOPERM".into(),
                    message,
                }
            }
            Some(code) => L2Error::Refused {
                code: code.to_string(),
                message,
            },
            None => L2Error::Invalid(message),
        }
    }
}

impl std::fmt::Display for L2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            L2Error::Timeout => write!(f, "Redis did not answer in time"),
            L2Error::Unavailable(e) => write!(f, "Redis unavailable: {e}"),
            L2Error::Refused { message, .. } => write!(f, "Redis refused: {message}"),
            L2Error::Invalid(e) => write!(f, "Redis error: {e}"),
            L2Error::Skipped => write!(f, "Redis skipped: circuit breaker open"),
        }
    }
}
