//! Sign-in rate limits in Redis, shared by every auth replica.
//!
//! Two counters, fixed windows: wrong passwords per email (stops guessing one account from many
//! addresses) and attempts per client address (stops one address spraying many accounts, and bounds
//! the argon2 work it can make us do). Over a limit: 429 with `Retry-After` = the window's rest.
//! Redis down: 503 — sign-in fails closed rather than unthrottled.

use std::{net::IpAddr, time::Duration};

use redis::aio::ConnectionManager;
use storefront_kit::Error;

use crate::config::RateLimits;

#[derive(Clone)]
pub struct SigninLimiter {
    redis: ConnectionManager,
    namespace: String,
    limits: RateLimits,
}

fn unavailable(e: redis::RedisError) -> Error {
    Error::Unavailable(format!("rate limiter unreachable: {e}"))
}

impl SigninLimiter {
    pub fn new(redis: ConnectionManager, namespace: &str, limits: RateLimits) -> Self {
        SigninLimiter {
            redis,
            namespace: namespace.to_owned(),
            limits,
        }
    }

    /// Counts an attempt from `ip`; 429 when over the limit.
    pub async fn attempt_from(&self, ip: IpAddr) -> Result<(), Error> {
        let key = format!("{}:signin:ip:{ip}", self.namespace);
        let (count, ttl) = self.bump(&key, self.limits.ip_window).await?;
        if count > self.limits.attempts_per_ip {
            return Err(limited(ttl));
        }
        Ok(())
    }

    /// 429 while `email` has too many recent failures.
    pub async fn check_email(&self, email: &str) -> Result<(), Error> {
        let key = self.email_key(email);
        let mut redis = self.redis.clone();
        let (count, ttl): (Option<u64>, i64) = redis::pipe()
            .get(&key)
            .ttl(&key)
            .query_async(&mut redis)
            .await
            .map_err(unavailable)?;
        if count.unwrap_or(0) >= self.limits.failures_per_email {
            return Err(limited(ttl));
        }
        Ok(())
    }

    pub async fn failed(&self, email: &str) -> Result<(), Error> {
        self.bump(&self.email_key(email), self.limits.failure_window)
            .await
            .map(|_| ())
    }

    pub async fn succeeded(&self, email: &str) -> Result<(), Error> {
        let mut redis = self.redis.clone();
        redis::cmd("DEL")
            .arg(self.email_key(email))
            .query_async::<()>(&mut redis)
            .await
            .map_err(unavailable)
    }

    fn email_key(&self, email: &str) -> String {
        format!("{}:signin:fail:{email}", self.namespace)
    }

    /// Increments a fixed-window counter: (count, seconds left in the window).
    async fn bump(&self, key: &str, window: Duration) -> Result<(u64, i64), Error> {
        let mut redis = self.redis.clone();
        redis::pipe()
            .atomic()
            .incr(key, 1u64)
            .cmd("EXPIRE")
            .arg(key)
            .arg(window.as_secs().max(1))
            .arg("NX")
            .ignore()
            .ttl(key)
            .query_async(&mut redis)
            .await
            .map_err(unavailable)
    }
}

fn limited(ttl: i64) -> Error {
    Error::RateLimited {
        retry_after: Duration::from_secs(ttl.max(1) as u64),
    }
}
