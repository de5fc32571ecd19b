//! Live news that is not stored, passed between services over Redis pub/sub (at most once; a
//! page shows what it rendered until the next news).
//!
//! - [`CartCount`] on `{prefix}:carts`: cart says how many items a customer's cart holds after a
//!   write; notifications hands it to that customer's sockets, so every open page's cart badge
//!   follows (another tab added a line, a cancelled order put its lines back).

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

/// Publishes `payload` on `channel` without holding up the caller (a Redis that hangs must not
/// hold a request): spawned, tried twice (the first command after a dropped connection fails
/// once while the manager reconnects), logged when it does not go.
pub fn publish(redis: &ConnectionManager, channel: &str, payload: String) {
    let mut redis = redis.clone();
    let channel = channel.to_owned();
    tokio::spawn(async move {
        let mut sent: redis::RedisResult<i64> = redis.publish(&channel, &payload).await;
        if sent.is_err() {
            sent = redis.publish(&channel, &payload).await;
        }
        if let Err(e) = sent {
            tracing::warn!(error = %e, %channel, "cannot publish live news");
        }
    });
}
