//! How a cache connects to Redis: the client for the configured server (and its TLS
//! material). The data layer ([`crate::l2`]) and the bus ([`crate::bus`]) both build their
//! connections here, so neither depends on the other; a new topology (Cluster, Sentinel) adds
//! its client here.

use redis::Client;

use crate::config::L2Config;

/// Builds a client for `config`, with its TLS material when it has some.
pub fn client(config: &L2Config) -> redis::RedisResult<Client> {
    match &config.tls {
        None => Client::open(config.url.as_str()),
        Some(tls) => Client::build_with_tls(
            config.url.as_str(),
            redis::TlsCertificates {
                client_tls: tls
                    .client
                    .as_ref()
                    .map(|(cert, key)| redis::ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.clone(),
                    }),
                root_cert: tls.ca.clone(),
            },
        ),
    }
}
