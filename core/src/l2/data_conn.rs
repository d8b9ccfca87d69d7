//! The data connection of the Redis layer: one server's connection manager, or a cluster
//! connection that routes each command by its key's slot. Both speak the same commands; the
//! scripts differ (see [`super::scripts`]).

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A connection the L2 sends its commands on.
#[derive(Clone)]
pub(crate) enum DataConn {
    /// One server (or the master Sentinel named); reconnects by itself.
    Single(ConnectionManager),
    /// A Redis Cluster; follows `MOVED`/`ASK` and failovers by itself.
    Cluster(ClusterConnection),
}

impl DataConn {
    /// Sends `cmd` to the primary serving `slot` (cluster), or to the one server.
    pub(crate) async fn on_slot(&mut self, cmd: Cmd, slot: u16) -> redis::RedisResult<Value> {
        match self {
            DataConn::Single(c) => cmd.query_async(c).await,
            DataConn::Cluster(c) => {
                let route = SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
                c.route_command(cmd, RoutingInfo::SingleNode(route)).await
            }
        }
    }

    /// Sends `cmd` to the node at `host:port` (cluster), or to the one server.
    pub(crate) async fn on_node(
        &mut self,
        cmd: Cmd,
        host: &str,
        port: u16,
    ) -> redis::RedisResult<Value> {
        match self {
            DataConn::Single(c) => cmd.query_async(c).await,
            DataConn::Cluster(c) => {
                let route = SingleNodeRoutingInfo::ByAddress {
                    host: host.to_string(),
                    port,
                };
                c.route_command(cmd, RoutingInfo::SingleNode(route)).await
            }
        }
    }
}

impl ConnectionLike for DataConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            DataConn::Single(c) => c.req_packed_command(cmd),
            DataConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            DataConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            DataConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            DataConn::Single(c) => c.get_db(),
            DataConn::Cluster(c) => c.get_db(),
        }
    }
}
