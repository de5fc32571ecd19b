//! Wake-ups for dozing consumers (`KAFKA_IDLE_FETCH_INTERVAL_MS`, [`super::ConsumerRunner`]).
//!
//! A dozing consumer fetches nothing; it looks at its partitions' ends every idle fetch interval.
//! Those looks are what an idle shop spends on the local broker: every 250 ms, five consumers kept
//! tansu at 4.5 % of a core (docs/saga.md, "Benchmark"). So the outbox relay also says on Redis
//! which topics it has just written to (`PUBLISH {topic}:wake`, once a topic per batch), and a
//! dozing consumer of one of them wakes at once; its own looks become a net for what the relay did
//! not announce (another producer, a Redis away), and can be seconds apart.

use std::time::Duration;

use futures::StreamExt;
use redis::aio::ConnectionManager;
use tokio::sync::watch;

use crate::fanout;

/// The Redis channel on which a write to `topic` (its full name) is announced.
pub fn channel(topic: &str) -> String {
    format!("{topic}:wake")
}

/// Announces the topics a relay has written to.
#[derive(Clone)]
pub struct Announcer {
    redis: ConnectionManager,
}

impl Announcer {
    pub fn new(redis: ConnectionManager) -> Self {
        Announcer { redis }
    }

    /// One PUBLISH a topic, spawned (a Redis that hangs holds up nothing: the consumers' own looks
    /// find the events then).
    pub fn announce<'a>(&self, topics: impl IntoIterator<Item = &'a str>) {
        for topic in topics {
            fanout::publish(&self.redis, &channel(topic), String::new());
        }
    }
}

/// Follows the wake channels of `topics` until `stop`: the counter goes up at every announcement.
/// Resubscribes after a lost connection (what was announced meanwhile is found by the looks).
pub fn listen(
    client: redis::Client,
    topics: &[String],
    mut stop: watch::Receiver<bool>,
) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    let channels: Vec<String> = topics.iter().map(|t| channel(t)).collect();
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(100);
        loop {
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&channels).await {
                    Ok(()) => {
                        pause = Duration::from_millis(100);
                        let mut messages = pubsub.on_message();
                        loop {
                            tokio::select! {
                                _ = stop.changed() => return,
                                message = messages.next() => match message {
                                    Some(_) => tx.send_modify(|n| *n += 1),
                                    None => break,
                                },
                            }
                        }
                        tracing::warn!("consumer wake-ups: subscription lost");
                    }
                    Err(e) => tracing::warn!(error = %e, "consumer wake-ups: cannot subscribe"),
                },
                Err(e) => tracing::warn!(error = %e, "consumer wake-ups: cannot reach Redis"),
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    });
    rx
}
