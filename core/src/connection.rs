//! How a cache connects to Redis: one server (`redisUrl`), the master that Redis Sentinel
//! names (`sentinel`), followed through failover, or a Redis Cluster (`cluster`). The data layer ([`crate::l2`]) and the bus
//! ([`crate::bus`]) both build their connections from a [`Connector`], so neither depends on the
//! other; a new topology adds its case here.
//!
//! ## Cluster
//! A cluster is reached through redis-rs' cluster client ([`Connector::cluster_client`]): it
//! discovers the nodes from the seeds, routes each command by its key's slot, follows `MOVED`
//! and `ASK` while slots migrate, and refreshes the slot map when a primary fails over. Its
//! retries are short (a few tries 10-200 ms apart) so that every call stays within the cache's
//! own bound.
//!
//! ## Sentinel
//! A [`Connector`] for Sentinel runs a watcher task (on the tokio runtime) that asks the
//! sentinels for the master's address (`SENTINEL GET-MASTER-ADDR-BY-NAME`, one sentinel after
//! the other, each bounded by the connect and command timeouts) at once and then every
//! [`SENTINEL_POLL`], and takes the first address whose server says it is a master (`ROLE`): a
//! sentinel that has not caught up with a failover names the old master. When the address changes it bumps a generation
//! ([`Connector::changes`]): L2 replaces its connection manager, and the bus subscribes again on
//! the new master (which clears L1, since messages may have been missed). Polling, not only
//! reacting to errors: after a failover Sentinel may leave the old master accepting writes for
//! seconds before it demotes it, and writes there would be lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use redis::{Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};
use tokio::sync::watch;

use crate::config::{L2Config, SentinelConfig};

/// How often the sentinels are asked where the master is.
pub const SENTINEL_POLL: Duration = Duration::from_millis(500);

/// The TLS material of `redis.tls` as the redis client takes it.
fn certificates(tls: &crate::config::TlsFiles) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: tls
            .client
            .as_ref()
            .map(|(cert, key)| redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
        root_cert: tls.ca.clone(),
    }
}

/// Builds a client for one server's `url`, with the TLS material of `config` when it has some.
fn client_for_url(config: &L2Config, url: impl IntoConnectionInfo) -> redis::RedisResult<Client> {
    match &config.tls {
        None => Client::open(url),
        Some(tls) => Client::build_with_tls(url, certificates(tls)),
    }
}

/// Tries of a command the cluster client repeats on its own (after `MOVED`, `TRYAGAIN`, a lost
/// node), each bounded by `redis.commandTimeout`; the cache's own bound still caps the whole.
const CLUSTER_RETRIES: u32 = 4;

/// Where the data connection goes, now and after a failover.
#[derive(Clone)]
pub struct Connector {
    config: L2Config,
    sentinel: Option<Arc<SentinelWatch>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("url", &crate::config::redact(&self.config.url))
            .field(
                "sentinel",
                &self.sentinel.as_ref().map(|s| s.master.read().clone()),
            )
            .finish()
    }
}

/// The master's address as the sentinels last said, and its generation.
struct SentinelWatch {
    config: SentinelConfig,
    master: RwLock<Option<(String, u16)>>,
    generation: watch::Sender<u64>,
    started: AtomicBool,
}

impl Connector {
    /// A connector for `config`. For Sentinel, [`Connector::start`] must run inside a tokio
    /// runtime before the first connection.
    pub fn new(config: &L2Config) -> Connector {
        Connector {
            config: config.clone(),
            sentinel: config.sentinel.clone().map(|s| {
                Arc::new(SentinelWatch {
                    config: s,
                    master: RwLock::new(None),
                    generation: watch::channel(0).0,
                    started: AtomicBool::new(false),
                })
            }),
        }
    }

    /// Starts following the master (Sentinel; nothing to do for one server). The watcher ends
    /// once every clone of this connector is dropped.
    pub fn start(&self) {
        let Some(watch) = &self.sentinel else {
            return;
        };
        if watch.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(watch);
        let bound = self.config.connect_timeout + self.config.command_timeout;
        let config = self.config.clone();
        tokio::spawn(async move {
            // bounded by the connector's life: it ends when the last clone is dropped
            loop {
                let Some(watch) = weak.upgrade() else { return };
                if let Some(addr) = watch.ask(&config, bound).await {
                    watch.learn(addr);
                }
                drop(watch);
                tokio::time::sleep(SENTINEL_POLL).await;
            }
        });
    }

    /// A client for the server to use now: the one server, or the master the sentinels named
    /// (an error until they named one).
    pub fn client(&self) -> redis::RedisResult<Client> {
        match &self.sentinel {
            None => client_for_url(&self.config, self.config.url.as_str()),
            Some(watch) => {
                let Some((host, port)) = watch.master.read().clone() else {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "the sentinels have not named the master yet",
                    )));
                };
                client_for_url(&self.config, watch.data_info(host, port))
            }
        }
    }

    /// Whether the cache speaks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.config.cluster.is_some()
    }

    /// A cluster client for the seed nodes, bounded by the connect and command timeouts;
    /// `push` receives pushes (RESP3: messages of sharded channels, subscription changes), for
    /// the bus.
    pub fn cluster_client(
        &self,
        push: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
    ) -> redis::RedisResult<redis::cluster::ClusterClient> {
        let nodes = self
            .config
            .cluster
            .as_ref()
            .map(|c| c.nodes.clone())
            .unwrap_or_default();
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(self.config.connect_timeout)
            .response_timeout(self.config.command_timeout)
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(10)
            .max_retry_wait(200);
        if let Some(tls) = &self.config.tls {
            builder = builder.certs(certificates(tls));
        }
        if let Some(push) = push {
            builder = builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(push);
        }
        builder.build()
    }

    /// Asks the sentinels now (Sentinel), so a first connection does not wait for the
    /// watcher's next poll.
    pub async fn resolve(&self) {
        if let Some(watch) = &self.sentinel {
            if watch.master.read().is_none() {
                let bound = self.config.connect_timeout + self.config.command_timeout;
                if let Some(addr) = watch.ask(&self.config, bound).await {
                    watch.learn(addr);
                }
            }
        }
    }

    /// A receiver that changes whenever the master moves. For one server nothing moves: its
    /// sender is gone at once (`changed()` fails; wait on nothing then).
    pub fn changes(&self) -> watch::Receiver<u64> {
        match &self.sentinel {
            Some(watch) => watch.generation.subscribe(),
            None => watch::channel(0).1,
        }
    }

    /// Whether the master is found through Sentinel.
    pub fn is_sentinel(&self) -> bool {
        self.sentinel.is_some()
    }
}

impl SentinelWatch {
    /// The master's address: what the first sentinel (in turn) names that also says, asked
    /// itself, that it is a master (`ROLE`). A sentinel that has not caught up with a failover
    /// names the old master, dead or demoted: its answer is passed over.
    async fn ask(&self, config: &L2Config, bound: Duration) -> Option<(String, u16)> {
        for node in &self.config.nodes {
            let ask = async {
                let client = Client::open(node.as_str())?;
                let mut c = client.get_multiplexed_async_connection().await?;
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(&self.config.name)
                    .query_async::<Option<(String, u16)>>(&mut c)
                    .await
            };
            let Ok(Ok(Some((host, port)))) = tokio::time::timeout(bound, ask).await else {
                continue;
            };
            let role = async {
                let client = client_for_url(config, self.data_info(host.clone(), port))?;
                let mut c = client.get_multiplexed_async_connection().await?;
                redis::cmd("ROLE")
                    .query_async::<Vec<redis::Value>>(&mut c)
                    .await
            };
            if let Ok(Ok(role)) = tokio::time::timeout(bound, role).await {
                let is_master = matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master")
                    || matches!(role.first(), Some(redis::Value::SimpleString(r)) if r == "master");
                if is_master {
                    return Some((host, port));
                }
            }
        }
        None
    }

    /// Records the master's address; a new one starts a new generation.
    fn learn(&self, addr: (String, u16)) {
        let mut master = self.master.write();
        if master.as_ref() != Some(&addr) {
            *master = Some(addr);
            drop(master);
            self.generation.send_modify(|g| *g += 1);
        }
    }

    /// How to reach the master at `host:port` with the data nodes' credentials.
    fn data_info(&self, host: String, port: u16) -> ConnectionInfo {
        let addr = if self.config.tls {
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host, port)
        };
        let mut redis = RedisConnectionInfo::default().set_db(self.config.db);
        if let Some(user) = &self.config.username {
            redis = redis.set_username(user.clone());
        }
        if let Some(password) = &self.config.password {
            redis = redis.set_password(password.clone());
        }
        addr.into_connection_info()
            .expect("an address always makes a connection info")
            .set_redis_settings(redis)
    }
}
