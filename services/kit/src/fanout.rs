//! Live news that is not stored, passed between services over Redis pub/sub (at most once; a
//! page shows what it rendered until the next news).
//!
//! - a product's stock on `{prefix}:stock` (notifications, from `stock.changed`, to the public
//!   product sockets);
//! - [`CartCount`] on `{prefix}:carts`: cart says how many items a customer's cart holds after a
//!   write; notifications hands it to that customer's sockets, so every open page's cart badge
//!   follows (another tab added a line, a cancelled order put its lines back).

use std::time::Duration;

use redis::{AsyncCommands, aio::ConnectionManager};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A cart's item count after a write. `version` is the cart's: a page keeps the highest it saw,
/// since two writes' news may arrive in either order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartCount {
    pub user: Uuid,
    pub count: i64,
    pub version: i64,
}

impl CartCount {
    /// The channel of one shop.
    pub fn channel(prefix: &str) -> String {
        format!("{prefix}:carts")
    }
}

/// How long one piece of news may take to publish before it is dropped.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Publishes `payload` on `channel` without holding up the caller (a Redis that hangs must not
/// hold a request or pile up tasks): spawned, given [`PUBLISH_TIMEOUT`], tried twice (the first
/// command after a dropped connection fails once while the manager reconnects), logged when it
/// does not go.
pub fn publish(redis: &ConnectionManager, channel: &str, payload: String) {
    let mut redis = redis.clone();
    let channel = channel.to_owned();
    tokio::spawn(async move {
        let sent = tokio::time::timeout(PUBLISH_TIMEOUT, async {
            let mut sent: redis::RedisResult<i64> = redis.publish(&channel, &payload).await;
            if sent.is_err() {
                sent = redis.publish(&channel, &payload).await;
            }
            sent.map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        if let Err(e) = sent {
            tracing::warn!(error = %e, %channel, "cannot publish live news");
        }
    });
}
