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
use storefront_events::UserId;

/// A cart's item count after a write. `version` is the cart's: a page keeps the highest it saw,
/// since two writes' news may arrive in either order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartCount {
    pub user: UserId,
    pub count: i64,
    pub version: i64,
}

impl CartCount {
    /// The channel of one shop.
    pub fn channel(prefix: &str) -> String {
        format!("{prefix}:carts")
    }

    /// Where the latest count of a user's cart is kept, for a socket that opens after it was
    /// published (a page loaded while the count changed).
    pub fn key(prefix: &str, user: UserId) -> String {
        format!("{prefix}:carts:{user}")
    }

    /// The latest count kept for `user`, if any (a Redis that does not answer is none: the page
    /// keeps what it rendered).
    pub async fn latest(
        redis: &ConnectionManager,
        prefix: &str,
        user: UserId,
    ) -> Option<CartCount> {
        let mut redis = redis.clone();
        let kept: Option<String> =
            tokio::time::timeout(PUBLISH_TIMEOUT, redis.get(Self::key(prefix, user)))
                .await
                .ok()?
                .ok()?;
        serde_json::from_str(&kept?).ok()
    }

    /// Keeps this count as the user's latest (for [`CartCount::latest`]) and publishes it, in
    /// one task that does not hold up the caller (see [`publish`]).
    pub fn announce(&self, redis: &ConnectionManager, prefix: &str) {
        let Ok(payload) = serde_json::to_string(self) else {
            return;
        };
        let mut redis = redis.clone();
        let key = Self::key(prefix, self.user);
        let channel = Self::channel(prefix);
        tokio::spawn(async move {
            // A day is longer than any page stays open unchanged; the key goes by itself.
            let kept = tokio::time::timeout(
                PUBLISH_TIMEOUT,
                redis.set_ex::<_, _, ()>(&key, &payload, KEEP_SECS),
            )
            .await;
            if !matches!(kept, Ok(Ok(()))) {
                tracing::warn!(%key, "cannot keep a cart's count");
            }
            if let Err(e) = send(&mut redis, &channel, &payload).await {
                tracing::warn!(error = %e, %channel, "cannot publish live news");
            }
        });
    }
}

/// How long a cart's latest count is kept.
const KEEP_SECS: u64 = 24 * 60 * 60;

/// How long one piece of news may take to publish before it is dropped.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Publishes `payload` on `channel` without holding up the caller (a Redis that hangs must not
/// hold a request or pile up tasks): spawned, logged when it does not go (see [`send`]).
pub fn publish(redis: &ConnectionManager, channel: &str, payload: String) {
    let mut redis = redis.clone();
    let channel = channel.to_owned();
    tokio::spawn(async move {
        if let Err(e) = send(&mut redis, &channel, &payload).await {
            tracing::warn!(error = %e, %channel, "cannot publish live news");
        }
    });
}

/// Publishes `payload` on `channel`, within `PUBLISH_TIMEOUT`, tried twice (the first command
/// after a dropped connection fails once while the manager reconnects).
pub async fn send(
    redis: &mut ConnectionManager,
    channel: &str,
    payload: &str,
) -> Result<(), String> {
    tokio::time::timeout(PUBLISH_TIMEOUT, async {
        let mut sent: redis::RedisResult<i64> = redis.publish(channel, payload).await;
        if sent.is_err() {
            sent = redis.publish(channel, payload).await;
        }
        sent.map(|_| ()).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|_| Err("timed out".into()))
}
