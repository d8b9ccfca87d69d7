//! Validated configuration of a cache, built from the raw options a caller passed.
//!
//! Every duration arrives in seconds (fractions allowed: `0.05` is 50 ms) and is validated here,
//! once, at construction: a bad option is an error naming it, never a half-built cache.

use std::time::Duration;

use crate::error::{CacheError, ErrorCode};

/// Default `prefix`: the namespace of every Redis key and channel.
pub const DEFAULT_PREFIX: &str = "mlc";
/// Default `l1.maxEntries`.
pub const DEFAULT_L1_MAX_ENTRIES: u64 = 10_000;
/// The largest `l1.maxEntries` accepted.
pub const MAX_L1_ENTRIES: u64 = 10_000_000;
/// Default `l1.ttl` in seconds.
pub const DEFAULT_L1_TTL_SECS: f64 = 60.0;
/// Default `l2.ttl` in seconds.
pub const DEFAULT_L2_TTL_SECS: f64 = 3600.0;
/// Default `lock.ttl` in seconds: how long a stampede lock lives unless extended.
pub const DEFAULT_LOCK_TTL_SECS: f64 = 10.0;
/// Default `lock.wait` in seconds: how long a caller waits for another loader before loading itself.
pub const DEFAULT_LOCK_WAIT_SECS: f64 = 5.0;
/// Default `loaderTimeout` in seconds: a loader that has not settled by then is abandoned and its
/// callers rejected with `ERR_MLC_LOADER_TIMEOUT`.
pub const DEFAULT_LOADER_TIMEOUT_SECS: f64 = 30.0;
/// Default `redis.connectTimeout` in seconds.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: f64 = 1.0;
/// Default `redis.commandTimeout` in seconds: the bound on every Redis round trip.
pub const DEFAULT_COMMAND_TIMEOUT_SECS: f64 = 0.5;
/// Default `redis.breakerThreshold`: consecutive Redis failures that open the circuit breaker.
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 3;
/// Default `redis.breakerCooldown` in seconds: how long an open breaker skips Redis.
pub const DEFAULT_BREAKER_COOLDOWN_SECS: f64 = 1.0;
/// Default `bus.ackTimeout` in seconds: how long a `set`, `del` or `invalidateTag` waits for the
/// other processes to confirm they dropped their L1 copy.
pub const DEFAULT_BUS_ACK_TIMEOUT_SECS: f64 = 0.05;
/// The longest `bus.ackTimeout` accepted, in seconds.
pub const MAX_BUS_ACK_TIMEOUT_SECS: f64 = 10.0;
/// Default `limits.maxValueBytes`: the largest serialized value accepted (16 MiB).
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 16 * 1024 * 1024;
/// The longest key accepted, in UTF-16 code units (JavaScript `key.length`).
pub const MAX_KEY_LENGTH: usize = 1024;
/// The longest tag accepted, in UTF-16 code units.
pub const MAX_TAG_LENGTH: usize = 1024;
/// The most tags one entry may carry.
pub const MAX_TAGS_PER_ENTRY: usize = 64;
/// The longest TTL accepted, in seconds (about 31 years).
pub const MAX_TTL_SECS: f64 = 1e9;
/// The most replicas `redis.waitReplicas` may ask for.
pub const MAX_WAIT_REPLICAS: u32 = 16;

/// The longest prefix accepted, in bytes.
pub const MAX_PREFIX_LENGTH: usize = 64;

/// Raw options as the caller gave them (types checked by the JS layer, `lib/options.js`), all
/// optional. This struct is the one list of native options: the binding deserializes the JS
/// object straight into it, under these names in camelCase (`l1MaxEntries`, ...), and refuses a
/// name it does not know, so the JS layer cannot drift from it unnoticed.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Options {
    /// `redisUrl`: `redis://`, `rediss://`, `unix://` or `redis+unix://`. `None`: no Redis.
    pub redis_url: Option<String>,
    /// `prefix`.
    pub prefix: Option<String>,
    /// `l1: false` turns the in-process layer off.
    pub l1_disabled: bool,
    /// `l1.maxEntries`.
    pub l1_max_entries: Option<f64>,
    /// `l1.ttl` in seconds.
    pub l1_ttl: Option<f64>,
    /// `l2: false` turns Redis off even when a URL is set.
    pub l2_disabled: bool,
    /// `l2.ttl` in seconds.
    pub l2_ttl: Option<f64>,
    /// `lock.ttl` in seconds.
    pub lock_ttl: Option<f64>,
    /// `lock.wait` in seconds.
    pub lock_wait: Option<f64>,
    /// `loaderTimeout` in seconds.
    pub loader_timeout: Option<f64>,
    /// `redis.connectTimeout` in seconds.
    pub connect_timeout: Option<f64>,
    /// `redis.commandTimeout` in seconds.
    pub command_timeout: Option<f64>,
    /// `redis.breakerThreshold`.
    pub breaker_threshold: Option<f64>,
    /// `redis.breakerCooldown` in seconds.
    pub breaker_cooldown: Option<f64>,
    /// `redis.tls.caFile`: PEM file of the CA that signed the server's certificate.
    pub tls_ca_file: Option<String>,
    /// `redis.tls.certFile`: PEM client certificate (mutual TLS).
    pub tls_cert_file: Option<String>,
    /// `redis.tls.keyFile`: PEM client key (mutual TLS).
    pub tls_key_file: Option<String>,
    /// `limits.maxValueBytes`.
    pub max_value_bytes: Option<f64>,
    /// `bus.ackTimeout` in seconds (0: do not wait).
    pub bus_ack_timeout: Option<f64>,
    /// `redis.waitReplicas`: replicas an invalidation waits for (`WAIT`); 0: none.
    pub wait_replicas: Option<f64>,
    /// `redis.waitTimeout` in seconds: the longest an invalidation waits for them.
    pub wait_timeout: Option<f64>,
    /// `sentinel.nodes`: the sentinels' URLs (`redis://` or `rediss://`, their own auth in them).
    pub sentinel_nodes: Option<Vec<String>>,
    /// `sentinel.name`: the name of the master the sentinels monitor.
    pub sentinel_name: Option<String>,
    /// `sentinel.username`: the data nodes' ACL user.
    pub sentinel_username: Option<String>,
    /// `sentinel.password`: the data nodes' password.
    pub sentinel_password: Option<String>,
    /// `sentinel.db`: the database on the data nodes.
    pub sentinel_db: Option<f64>,
    /// `cluster.nodes`: seed nodes of a Redis Cluster (`redis://` or `rediss://`, auth in them).
    pub cluster_nodes: Option<Vec<String>>,
}

/// How the master is found through Redis Sentinel.
#[derive(Clone, PartialEq)]
pub struct SentinelConfig {
    /// The sentinels' URLs.
    pub nodes: Vec<String>,
    /// The master's name.
    pub name: String,
    /// The data nodes' ACL user.
    pub username: Option<String>,
    /// The data nodes' password.
    pub password: Option<String>,
    /// The database on the data nodes.
    pub db: i64,
    /// Whether the data nodes speak TLS (the sentinels' URLs are `rediss://`).
    pub tls: bool,
}

impl std::fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelConfig")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| redact(n)).collect::<Vec<_>>(),
            )
            .field("name", &self.name)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .finish()
    }
}

/// Where a Redis Cluster is: its seed nodes (the rest is discovered).
#[derive(Clone, PartialEq)]
pub struct ClusterConfig {
    /// The seed nodes' URLs (all of one scheme, auth in them).
    pub nodes: Vec<String>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| redact(n)).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Settings of the in-process layer.
#[derive(Debug, Clone, PartialEq)]
pub struct L1Config {
    /// The most entries L1 ever holds.
    pub max_entries: u64,
    /// TTL of an entry without a per-entry `ttl`.
    pub ttl: Duration,
}

/// Settings of the Redis layer.
#[derive(Debug, Clone, PartialEq)]
pub struct L2Config {
    /// The Redis URL; with [`L2Config::sentinel`], `sentinel://<name>` (a name for messages).
    pub url: String,
    /// The master is found (and followed through failover) by these sentinels.
    pub sentinel: Option<SentinelConfig>,
    /// The cache speaks to this Redis Cluster (see [`crate::connection`]).
    pub cluster: Option<ClusterConfig>,
    /// TTL of an entry without a per-entry `ttl`.
    pub ttl: Duration,
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// Bound on every command round trip.
    pub command_timeout: Duration,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_threshold: u32,
    /// How long the open breaker skips Redis.
    pub breaker_cooldown: Duration,
    /// TLS material for `rediss://` URLs, read at construction.
    pub tls: Option<TlsFiles>,
    /// How long a write or invalidation waits for the other processes' acknowledgements on the
    /// bus (zero: it does not ask for them).
    pub ack_timeout: Duration,
    /// Replicas every invalidation waits for (`WAIT`) before it completes; 0: none.
    pub wait_replicas: u32,
    /// The longest an invalidation waits for them.
    pub wait_timeout: Duration,
}

/// TLS material (PEM bytes) read from the files named in `redis.tls`.
#[derive(Clone, PartialEq)]
pub struct TlsFiles {
    /// CA certificate(s); `None`: the system's trust store.
    pub ca: Option<Vec<u8>>,
    /// Client certificate and key, for mutual TLS.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca", &self.ca.is_some())
            .field("client", &self.client.is_some())
            .finish()
    }
}

/// Settings of the stampede lock.
#[derive(Debug, Clone, PartialEq)]
pub struct LockConfig {
    /// Lifetime of a lock in Redis (extended while its loader runs).
    pub ttl: Duration,
    /// How long a caller waits for another process's loader before loading itself.
    pub wait: Duration,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Namespace of every Redis key and channel.
    pub prefix: String,
    /// `None` when L1 is off.
    pub l1: Option<L1Config>,
    /// `None` when Redis is off (no URL, or `l2: false`).
    pub l2: Option<L2Config>,
    /// Stampede lock settings.
    pub lock: LockConfig,
    /// Bound on one loader call.
    pub loader_timeout: Duration,
    /// Largest serialized value, in bytes.
    pub max_value_bytes: u64,
}

impl Config {
    /// Validates raw options. The error names the offending option.
    pub fn from_options(o: Options) -> Result<Config, CacheError> {
        let prefix = o
            .prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_PREFIX.to_string());
        validate_prefix(&prefix)?;

        let l1 = if o.l1_disabled {
            None
        } else {
            let max = o.l1_max_entries.unwrap_or(DEFAULT_L1_MAX_ENTRIES as f64);
            if !max.is_finite() || max < 1.0 || max.fract() != 0.0 || max > MAX_L1_ENTRIES as f64 {
                return Err(option_range(
                    "l1.maxEntries",
                    &format!("an integer from 1 to {MAX_L1_ENTRIES}"),
                    max,
                ));
            }
            Some(L1Config {
                max_entries: max as u64,
                ttl: seconds("l1.ttl", o.l1_ttl, DEFAULT_L1_TTL_SECS)?,
            })
        };

        let l2_ttl = seconds("l2.ttl", o.l2_ttl, DEFAULT_L2_TTL_SECS)?;
        let connect_timeout = seconds(
            "redis.connectTimeout",
            o.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT_SECS,
        )?;
        let command_timeout = seconds(
            "redis.commandTimeout",
            o.command_timeout,
            DEFAULT_COMMAND_TIMEOUT_SECS,
        )?;
        let sentinel = read_sentinel(&o)?;
        let cluster = read_cluster(&o)?;
        let given = [
            o.redis_url.as_deref().is_some_and(|u| !u.is_empty()),
            sentinel.is_some(),
            cluster.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(CacheError::type_error(
                ErrorCode::InvalidOption,
                "options `redisUrl`, `sentinel` and `cluster` exclude each other: give exactly one",
            ));
        }
        let url = match (&sentinel, &cluster) {
            (Some(s), _) => Some(format!("sentinel://{}", s.name)),
            (_, Some(c)) => Some(format!("cluster://{}", redact(&c.nodes[0]))),
            _ => o.redis_url.clone().filter(|u| !u.is_empty()),
        };
        if let (Some(url), None, None) = (&url, &sentinel, &cluster) {
            validate_url(url)?;
        }
        let threshold = o
            .breaker_threshold
            .unwrap_or(DEFAULT_BREAKER_THRESHOLD as f64);
        if !threshold.is_finite() || threshold < 1.0 || threshold.fract() != 0.0 || threshold > 1e6
        {
            return Err(option_range(
                "redis.breakerThreshold",
                "an integer from 1 to 1000000",
                threshold,
            ));
        }
        let breaker_cooldown = seconds(
            "redis.breakerCooldown",
            o.breaker_cooldown,
            DEFAULT_BREAKER_COOLDOWN_SECS,
        )?;
        let tls = read_tls(&o)?;
        let tls_url = url
            .as_deref()
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("rediss://"));
        let tls_url = tls_url
            || cluster.as_ref().is_some_and(|c| {
                c.nodes
                    .iter()
                    .all(|n| n.to_ascii_lowercase().starts_with("rediss://"))
            });
        if tls.is_some() && !tls_url && !sentinel.as_ref().is_some_and(|s| s.tls) {
            return Err(CacheError::type_error(
                ErrorCode::InvalidOption,
                "option `redis.tls` needs a rediss:// `redisUrl` (or rediss:// `sentinel.nodes` or `cluster.nodes`)",
            ));
        }
        let lock = LockConfig {
            ttl: seconds("lock.ttl", o.lock_ttl, DEFAULT_LOCK_TTL_SECS)?,
            wait: seconds("lock.wait", o.lock_wait, DEFAULT_LOCK_WAIT_SECS)?,
        };
        let loader_timeout = seconds(
            "loaderTimeout",
            o.loader_timeout,
            DEFAULT_LOADER_TIMEOUT_SECS,
        )?;
        let ack_secs = o.bus_ack_timeout.unwrap_or(DEFAULT_BUS_ACK_TIMEOUT_SECS);
        if !ack_secs.is_finite() || !(0.0..=MAX_BUS_ACK_TIMEOUT_SECS).contains(&ack_secs) {
            return Err(option_range(
                "bus.ackTimeout",
                &format!("a number of seconds from 0 to {MAX_BUS_ACK_TIMEOUT_SECS}"),
                ack_secs,
            ));
        }
        let ack_timeout = Duration::from_micros((ack_secs * 1e6).round() as u64);
        let wait_replicas = o.wait_replicas.unwrap_or(0.0);
        if !wait_replicas.is_finite()
            || !(0.0..=MAX_WAIT_REPLICAS as f64).contains(&wait_replicas)
            || wait_replicas.fract() != 0.0
        {
            return Err(option_range(
                "redis.waitReplicas",
                &format!("an integer from 0 to {MAX_WAIT_REPLICAS}"),
                wait_replicas,
            ));
        }
        let wait_timeout = seconds(
            "redis.waitTimeout",
            o.wait_timeout,
            command_timeout.as_secs_f64(),
        )?;
        let l2 = match url {
            Some(url) if !o.l2_disabled => Some(L2Config {
                url,
                sentinel,
                cluster,
                ttl: l2_ttl,
                connect_timeout,
                command_timeout,
                breaker_threshold: threshold as u32,
                breaker_cooldown,
                tls,
                ack_timeout,
                wait_replicas: wait_replicas as u32,
                wait_timeout,
            }),
            _ => None,
        };

        let max_value_bytes = o.max_value_bytes.unwrap_or(DEFAULT_MAX_VALUE_BYTES as f64);
        if !max_value_bytes.is_finite()
            || max_value_bytes < 1.0
            || max_value_bytes.fract() != 0.0
            || max_value_bytes > 512.0 * 1024.0 * 1024.0
        {
            return Err(option_range(
                "limits.maxValueBytes",
                "an integer from 1 to 536870912 (Redis' string limit)",
                max_value_bytes,
            ));
        }

        Ok(Config {
            loader_timeout,
            prefix,
            l1,
            l2,
            lock,
            max_value_bytes: max_value_bytes as u64,
        })
    }
}

/// Converts a TTL in seconds (as given to `set`/`getOrSet`) into a duration of at least 1 ms.
pub fn ttl_from_secs(secs: f64) -> Result<Duration, CacheError> {
    if !secs.is_finite() || secs <= 0.0 || secs > MAX_TTL_SECS {
        return Err(CacheError::range_error(
            ErrorCode::InvalidTtl,
            format!(
                "ttl must be a positive finite number of seconds up to {MAX_TTL_SECS}, got {secs}"
            ),
        ));
    }
    Ok(Duration::from_millis(
        ((secs * 1000.0).ceil() as u64).max(1),
    ))
}

fn seconds(name: &str, value: Option<f64>, default: f64) -> Result<Duration, CacheError> {
    let secs = value.unwrap_or(default);
    ttl_from_secs(secs).map_err(|_| {
        option_range(
            name,
            &format!("a positive finite number of seconds up to {MAX_TTL_SECS}"),
            secs,
        )
    })
}

fn option_range(name: &str, expected: &str, got: f64) -> CacheError {
    CacheError::range_error(
        ErrorCode::InvalidOption,
        format!("option `{name}` must be {expected}, got {got}"),
    )
}

fn validate_prefix(prefix: &str) -> Result<(), CacheError> {
    let ok_chars = prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LENGTH || !ok_chars {
        return Err(CacheError::type_error(
            ErrorCode::InvalidOption,
            format!(
                "option `prefix` must be 1 to {MAX_PREFIX_LENGTH} characters of A-Z a-z 0-9 _ - . :, got {prefix:?}"
            ),
        ));
    }
    Ok(())
}

fn read_tls(o: &Options) -> Result<Option<TlsFiles>, CacheError> {
    let read = |name: &str, path: &Option<String>| -> Result<Option<Vec<u8>>, CacheError> {
        match path {
            None => Ok(None),
            Some(p) => std::fs::read(p).map(Some).map_err(|e| {
                CacheError::type_error(
                    ErrorCode::InvalidOption,
                    format!("option `redis.tls.{name}` cannot be read ({p}): {e}"),
                )
            }),
        }
    };
    let ca = read("caFile", &o.tls_ca_file)?;
    let cert = read("certFile", &o.tls_cert_file)?;
    let key = read("keyFile", &o.tls_key_file)?;
    let client = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(CacheError::type_error(
                ErrorCode::InvalidOption,
                "options `redis.tls.certFile` and `redis.tls.keyFile` go together",
            ))
        }
    };
    Ok((ca.is_some() || client.is_some()).then_some(TlsFiles { ca, client }))
}

/// `sentinel`: every node a valid `redis://`/`rediss://` URL (all of one scheme), a name, a db.
fn read_sentinel(o: &Options) -> Result<Option<SentinelConfig>, CacheError> {
    let Some(nodes) = &o.sentinel_nodes else {
        return Ok(None);
    };
    if nodes.is_empty() {
        return Err(CacheError::type_error(
            ErrorCode::InvalidOption,
            "option `sentinel.nodes` must name at least one sentinel",
        ));
    }
    let tls = node_urls("sentinel.nodes", nodes)?;
    let name = o.sentinel_name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(CacheError::type_error(
            ErrorCode::InvalidOption,
            "option `sentinel.name` must name the master the sentinels monitor",
        ));
    }
    let db = o.sentinel_db.unwrap_or(0.0);
    if !db.is_finite() || db < 0.0 || db.fract() != 0.0 || db > 1e6 {
        return Err(option_range("sentinel.db", "an integer from 0", db));
    }
    Ok(Some(SentinelConfig {
        nodes: nodes.clone(),
        name,
        username: o.sentinel_username.clone().filter(|u| !u.is_empty()),
        password: o.sentinel_password.clone().filter(|p| !p.is_empty()),
        db: db as i64,
        tls,
    }))
}

/// `cluster`: at least one seed node, each a valid `redis://`/`rediss://` URL, all of one scheme.
fn read_cluster(o: &Options) -> Result<Option<ClusterConfig>, CacheError> {
    let Some(nodes) = &o.cluster_nodes else {
        return Ok(None);
    };
    if nodes.is_empty() {
        return Err(CacheError::type_error(
            ErrorCode::InvalidOption,
            "option `cluster.nodes` must name at least one seed node",
        ));
    }
    node_urls("cluster.nodes", nodes)?;
    Ok(Some(ClusterConfig {
        nodes: nodes.clone(),
    }))
}

/// Checks a list of node URLs (`option` names it): each `redis://` or `rediss://` and valid,
/// all of one scheme. Returns whether they use TLS.
fn node_urls(option: &str, nodes: &[String]) -> Result<bool, CacheError> {
    let mut tls = None;
    for node in nodes {
        let scheme = node.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        let is_tls = match scheme.as_deref() {
            Some("redis") => false,
            Some("rediss") => true,
            _ => {
                return Err(CacheError::type_error(
                    ErrorCode::InvalidOption,
                    format!(
                        "option `{option}` must hold redis:// or rediss:// URLs, got {:?}",
                        redact(node)
                    ),
                ))
            }
        };
        if *tls.get_or_insert(is_tls) != is_tls {
            return Err(CacheError::type_error(
                ErrorCode::InvalidOption,
                format!("option `{option}` mixes redis:// and rediss:// URLs"),
            ));
        }
        redis::Client::open(node.as_str()).map_err(|e| {
            CacheError::type_error(
                ErrorCode::InvalidOption,
                format!(
                    "option `{option}` holds an invalid URL ({}): {e}",
                    redact(node)
                ),
            )
        })?;
    }
    Ok(tls.unwrap_or(false))
}

fn validate_url(url: &str) -> Result<(), CacheError> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let known = matches!(
        scheme.as_deref(),
        Some("redis" | "rediss" | "unix" | "redis+unix")
    );
    if !known {
        return Err(CacheError::type_error(
            ErrorCode::InvalidOption,
            format!(
                "option `redisUrl` must start with redis://, rediss://, unix:// or redis+unix://, got {:?}",
                redact(url)
            ),
        ));
    }
    redis::Client::open(url).map(|_| ()).map_err(|e| {
        CacheError::type_error(
            ErrorCode::InvalidOption,
            format!(
                "option `redisUrl` is not a valid Redis URL ({}): {e}",
                redact(url)
            ),
        )
    })
}

/// The URL with any password replaced by `***`, safe for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***{}", &url[..s], &url[at..]),
                None => format!("{}://***{}", &url[..s], &url[at..]),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_documented_values() {
        let c = Config::from_options(Options::default()).unwrap();
        assert_eq!(c.prefix, "mlc");
        let l1 = c.l1.unwrap();
        assert_eq!(l1.max_entries, 10_000);
        assert_eq!(l1.ttl, Duration::from_secs(60));
        assert!(c.l2.is_none(), "no URL means L1 only");
        assert_eq!(c.max_value_bytes, 16 * 1024 * 1024);
    }

    #[test]
    fn l2_needs_url_and_not_disabled() {
        let o = Options {
            redis_url: Some("redis://127.0.0.1:6379".into()),
            ..Default::default()
        };
        let c = Config::from_options(o.clone()).unwrap();
        let l2 = c.l2.unwrap();
        assert_eq!(l2.ttl, Duration::from_secs(3600));
        assert_eq!(l2.ack_timeout, Duration::from_millis(50));
        let c = Config::from_options(Options {
            l2_disabled: true,
            ..o
        })
        .unwrap();
        assert!(c.l2.is_none());
    }

    #[test]
    fn bad_options_name_the_option() {
        let e = Config::from_options(Options {
            l1_max_entries: Some(MAX_L1_ENTRIES as f64 + 1.0),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.class, crate::error::ErrorClass::Range);
        let e = Config::from_options(Options {
            l1_max_entries: Some(-1.0),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidOption);
        assert_eq!(e.class, crate::error::ErrorClass::Range);
        assert!(e.message.contains("l1.maxEntries"));

        let e = Config::from_options(Options {
            redis_url: Some("http://x".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.class, crate::error::ErrorClass::Type);
        assert!(e.message.contains("redisUrl"));

        for bad in [f64::NAN, f64::INFINITY, -0.001, 10.5] {
            let e = Config::from_options(Options {
                bus_ack_timeout: Some(bad),
                ..Default::default()
            })
            .unwrap_err();
            assert_eq!(e.class, crate::error::ErrorClass::Range);
            assert!(e.message.contains("bus.ackTimeout"), "{e}");
        }
        let c = Config::from_options(Options {
            redis_url: Some("redis://127.0.0.1:6379".into()),
            bus_ack_timeout: Some(0.0),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.l2.unwrap().ack_timeout, Duration::ZERO);

        for bad in [f64::NAN, f64::INFINITY, -1.0, 0.0] {
            let e = Config::from_options(Options {
                l2_ttl: Some(bad),
                ..Default::default()
            })
            .unwrap_err();
            assert!(e.message.contains("l2.ttl"), "{e}");
        }
        let e = Config::from_options(Options {
            prefix: Some("a b".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.message.contains("prefix"));
        let e = Config::from_options(Options {
            prefix: Some("{x}".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.message.contains("prefix"));
    }

    #[test]
    fn ttl_fractions_round_up_to_a_millisecond() {
        assert_eq!(ttl_from_secs(0.05).unwrap(), Duration::from_millis(50));
        assert_eq!(ttl_from_secs(0.0001).unwrap(), Duration::from_millis(1));
        assert!(ttl_from_secs(-0.5).is_err());
        assert!(ttl_from_secs(f64::NAN).is_err());
    }

    #[test]
    fn redact_hides_passwords() {
        assert_eq!(redact("redis://u:secret@h:1"), "redis://u:***@h:1");
        assert_eq!(redact("redis://:secret@h"), "redis://:***@h");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
