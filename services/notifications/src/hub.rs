//! Fan-out: the sockets open on this replica, and the Redis channel that joins the replicas.
//!
//! The consumer that stored a notification publishes it on `{prefix}:notifications` once its
//! transaction committed. Every replica subscribes and hands each message to the sockets it holds
//! for that user (or to all of them, for a broadcast), so a notification reaches a user whichever
//! replica holds the socket, and exactly once per socket.
//!
//! Delivery to a socket never waits: each socket has a bounded queue, and a socket whose queue is
//! full is dropped from the hub (its task then closes it with 1013, and the client reconnects with
//! its cursor). So one slow client never holds up the others.
//!
//! Redis pub/sub is at-most-once. When the subscription breaks, messages published meanwhile are
//! lost to this replica, so after resubscribing it closes every socket it holds: each client
//! reconnects with the last id it saw and the database fills the gap.
//!
//! A cart's item count travels the same way on `{prefix}:carts` (cart publishes it after each
//! write, `storefront_kit::fanout::CartCount`) to the signed-in customer's sockets, as
//! `{"type":"cart","count":N,"version":V}`: nothing stored, a page keeps the highest version.
//!
//! Stock news travels the same way on `{prefix}:stock` to the public product sockets
//! (`/ws/notifications/stock`): each watches a few products, anonymous, and gets every change of
//! their stock ([`StockNews`]) while it is open. Nothing is stored: a client that reconnects
//! starts from what its page showed.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};
use storefront_events::{ProductId, UserId};

use axum::extract::ws::Utf8Bytes;
use futures::StreamExt;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use storefront_kit::fanout::CartCount;

use crate::store::{EVERYONE, Notification, NotificationDoc};

/// What travels on the Redis channel: who it is for, and the notification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    pub to: String,
    pub notification: Notification,
}

/// One frame for a socket: the notification's id (to skip what a replay already sent) and the
/// serialised message, shared by every socket it goes to.
#[derive(Debug, Clone)]
pub struct Frame {
    pub id: i64,
    pub text: Utf8Bytes,
}

/// What a socket sends: `{"type":"notification","notification":{…}}`.
#[derive(Debug, Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    notification: &'a Notification,
}

impl Frame {
    pub fn of(notification: &Notification) -> Frame {
        let text = serde_json::to_string(&Envelope {
            kind: "notification",
            notification,
        })
        .unwrap_or_default();
        Frame {
            id: notification.id,
            text: text.into(),
        }
    }
}

/// A cart's count for its owner's sockets. Not a notification: id 0, never skipped as a replay.
fn cart_frame(cart: &CartCount) -> Frame {
    let text = serde_json::json!({
        "type": "cart",
        "count": cart.count,
        "version": cart.version,
    })
    .to_string();
    Frame {
        id: 0,
        text: text.into(),
    }
}

struct Slot {
    id: u64,
    tx: mpsc::Sender<Frame>,
}

/// A product's stock after a change, as the public product channel sends it:
/// `{"type":"stock","product_id":…,"available":N,"in_stock":bool,"version":V}`. `version` is the
/// product's: a client keeps the highest it saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockNews {
    pub product_id: ProductId,
    pub available: i64,
    pub in_stock: bool,
    pub version: u64,
}

impl StockNews {
    fn frame(&self) -> Frame {
        let text = serde_json::json!({
            "type": "stock",
            "product_id": self.product_id,
            "available": self.available,
            "in_stock": self.in_stock,
            "version": self.version,
        })
        .to_string();
        Frame {
            id: 0,
            text: text.into(),
        }
    }
}

/// The public sockets watching products, by product.
#[derive(Default)]
struct Watchers {
    by_product: HashMap<ProductId, Vec<Slot>>,
    open: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("{0} sockets are open for this user on this replica already")]
pub struct TooManySockets(pub usize);

pub struct Hub {
    sockets: Mutex<HashMap<String, Vec<Slot>>>,
    next: AtomicU64,
    open: AtomicU64,
    channel: String,
    redis: ConnectionManager,
    subscribed: AtomicBool,
    send_buffer: usize,
    max_per_user: usize,
    watchers: Mutex<Watchers>,
    stock_channel: String,
    cart_channel: String,
    prefix: String,
    max_watchers: usize,
}

/// A public socket's place in the hub: the products it watches; dropping it leaves the hub.
pub struct Watch {
    hub: Arc<Hub>,
    products: Vec<ProductId>,
    id: u64,
    pub frames: mpsc::Receiver<Frame>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut watchers = self.hub.watchers();
        let mut left = false;
        for product in &self.products {
            if let Some(slots) = watchers.by_product.get_mut(product) {
                let before = slots.len();
                slots.retain(|s| s.id != self.id);
                left |= slots.len() < before;
                if slots.is_empty() {
                    watchers.by_product.remove(product);
                }
            }
        }
        if left {
            watchers.open = watchers.open.saturating_sub(1);
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0} product sockets are open on this replica already")]
pub struct TooManyWatchers(pub usize);

/// A socket's place in the hub; dropping it leaves the hub.
pub struct Registration {
    hub: Arc<Hub>,
    user: String,
    id: u64,
    pub frames: mpsc::Receiver<Frame>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.remove(&self.user, self.id);
    }
}

impl Hub {
    pub fn new(
        redis: ConnectionManager,
        topic_prefix: &str,
        send_buffer: usize,
        max_per_user: usize,
        max_watchers: usize,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            sockets: Mutex::default(),
            next: AtomicU64::new(1),
            open: AtomicU64::new(0),
            channel: format!("{topic_prefix}:notifications"),
            redis,
            subscribed: AtomicBool::new(false),
            send_buffer,
            max_per_user,
            watchers: Mutex::default(),
            stock_channel: format!("{topic_prefix}:stock"),
            cart_channel: storefront_kit::fanout::CartCount::channel(topic_prefix),
            prefix: topic_prefix.to_owned(),
            max_watchers,
        })
    }

    fn watchers(&self) -> std::sync::MutexGuard<'_, Watchers> {
        self.watchers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The user's cart count as cart last announced it, as a frame: sent after a socket's hello,
    /// so a page that opened its socket just after a change (the order it cancelled put its lines
    /// back while it reloaded) still gets it.
    pub async fn latest_cart(&self, user: UserId) -> Option<Frame> {
        CartCount::latest(&self.redis, &self.prefix, user)
            .await
            .map(|cart| cart_frame(&cart))
    }

    /// Public product sockets open on this replica.
    pub fn watching(&self) -> usize {
        self.watchers().open
    }

    /// A public socket watching `products` (distinct, a handful).
    pub fn watch(self: &Arc<Self>, products: Vec<ProductId>) -> Result<Watch, TooManyWatchers> {
        // Stock news is small and rare per product: a short queue, and a client that cannot
        // keep it is dropped like a slow notifications client.
        let (tx, frames) = mpsc::channel(self.send_buffer.min(64));
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut watchers = self.watchers();
        if watchers.open >= self.max_watchers {
            return Err(TooManyWatchers(watchers.open));
        }
        for product in &products {
            watchers
                .by_product
                .entry(*product)
                .or_default()
                .push(Slot { id, tx: tx.clone() });
        }
        watchers.open += 1;
        drop(watchers);
        Ok(Watch {
            hub: self.clone(),
            products,
            id,
            frames,
        })
    }

    /// Hands `news` to this replica's sockets watching its product; a socket that cannot take it
    /// is dropped (its session then closes it with 1013).
    pub fn deliver_stock(&self, news: &StockNews) {
        let mut watchers = self.watchers();
        let Some(slots) = watchers.by_product.get_mut(&news.product_id) else {
            return;
        };
        let frame = news.frame();
        slots.retain(|slot| slot.tx.try_send(frame.clone()).is_ok());
        if slots.is_empty() {
            watchers.by_product.remove(&news.product_id);
        }
    }

    /// Publishes a stock change to every replica (not awaited; logged, not fatal: pages show
    /// what they rendered until the next change).
    pub fn publish_stock(&self, news: &StockNews) {
        if let Ok(payload) = serde_json::to_string(news) {
            storefront_kit::fanout::publish(&self.redis, &self.stock_channel, payload);
        }
    }

    /// Sockets open on this replica.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Whether the Redis subscription is up (readiness).
    pub fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Slot>>> {
        // A panic while holding the lock cannot leave the map half-changed: recover it.
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(self: &Arc<Self>, user: UserId) -> Result<Registration, TooManySockets> {
        let user = user.to_string();
        let (tx, frames) = mpsc::channel(self.send_buffer);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut sockets = self.lock();
        let slots = sockets.entry(user.clone()).or_default();
        if slots.len() >= self.max_per_user {
            return Err(TooManySockets(slots.len()));
        }
        slots.push(Slot { id, tx });
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(Registration {
            hub: self.clone(),
            user,
            id,
            frames,
        })
    }

    fn remove(&self, user: &str, id: u64) {
        let mut sockets = self.lock();
        if let Some(slots) = sockets.get_mut(user) {
            let before = slots.len();
            slots.retain(|s| s.id != id);
            if slots.len() < before {
                self.open.fetch_sub(1, Ordering::Relaxed);
            }
            if slots.is_empty() {
                sockets.remove(user);
            }
        }
    }

    /// Hands `frame` to this replica's sockets for `to`; drops the sockets that cannot take it.
    pub fn deliver(&self, to: &str, frame: &Frame) {
        let mut sockets = self.lock();
        let mut dropped = 0;
        let mut offer = |slots: &mut Vec<Slot>| {
            slots.retain(|slot| match slot.tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped += 1;
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    dropped += 1;
                    false
                }
            });
        };
        if to == EVERYONE {
            for slots in sockets.values_mut() {
                offer(slots);
            }
            sockets.retain(|_, slots| !slots.is_empty());
        } else if let Some(slots) = sockets.get_mut(to) {
            offer(slots);
            if slots.is_empty() {
                sockets.remove(to);
            }
        }
        if dropped > 0 {
            self.open.fetch_sub(dropped, Ordering::Relaxed);
            tracing::info!(
                dropped,
                "sockets too far behind were dropped; they reconnect with their cursor"
            );
        }
    }

    /// Closes every socket (their clients reconnect and catch up from the database; product
    /// watchers reconnect too).
    fn close_all(&self) {
        let mut sockets = self.lock();
        let count: usize = sockets.values().map(Vec::len).sum();
        sockets.clear();
        self.open.fetch_sub(count as u64, Ordering::Relaxed);
        drop(sockets);
        let mut watchers = self.watchers();
        watchers.by_product.clear();
        watchers.open = 0;
    }

    /// Publishes stored notifications to every replica. Failures are logged, not fatal: the
    /// notifications are stored, and clients get them on their next reconnect or list.
    pub async fn publish(&self, docs: &[NotificationDoc]) {
        let mut redis = self.redis.clone();
        for doc in docs {
            let message = Published {
                to: doc.to.clone(),
                notification: Notification::of(doc, false),
            };
            let Ok(payload) = serde_json::to_string(&message) else {
                continue;
            };
            if let Err(e) = storefront_kit::fanout::send(&mut redis, &self.channel, &payload).await
            {
                tracing::warn!(error = %e, id = doc.id, "cannot publish a notification; clients get it when they reconnect");
            }
        }
    }

    /// Subscribes to the channel and delivers what arrives, until `stop`; resubscribes after a
    /// broken connection (and then closes every socket, see the module docs).
    pub async fn subscribe(
        self: Arc<Self>,
        client: redis::Client,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut first = true;
        let mut pause = Duration::from_millis(100);
        loop {
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub
                    .subscribe(&[
                        self.channel.as_str(),
                        self.stock_channel.as_str(),
                        self.cart_channel.as_str(),
                    ])
                    .await
                {
                    Ok(()) => {
                        if !first {
                            tracing::warn!(
                                "fan-out resubscribed; closing sockets so they catch up"
                            );
                            self.close_all();
                        }
                        first = false;
                        pause = Duration::from_millis(100);
                        self.subscribed.store(true, Ordering::Relaxed);
                        let mut messages = pubsub.on_message();
                        loop {
                            let message = tokio::select! {
                                _ = stop.changed() => return,
                                message = messages.next() => message,
                            };
                            let Some(message) = message else { break };
                            let payload: String = match message.get_payload() {
                                Ok(payload) => payload,
                                Err(e) => {
                                    tracing::warn!(error = %e, "unreadable fan-out message");
                                    continue;
                                }
                            };
                            if message.get_channel_name() == self.stock_channel {
                                match serde_json::from_str::<StockNews>(&payload) {
                                    Ok(news) => self.deliver_stock(&news),
                                    Err(e) => tracing::warn!(error = %e, "malformed stock message"),
                                }
                                continue;
                            }
                            if message.get_channel_name() == self.cart_channel {
                                match serde_json::from_str::<CartCount>(&payload) {
                                    Ok(cart) => {
                                        self.deliver(&cart.user.to_string(), &cart_frame(&cart))
                                    }
                                    Err(e) => tracing::warn!(error = %e, "malformed cart message"),
                                }
                                continue;
                            }
                            match serde_json::from_str::<Published>(&payload) {
                                Ok(published) => {
                                    self.deliver(&published.to, &Frame::of(&published.notification))
                                }
                                Err(e) => tracing::warn!(error = %e, "malformed fan-out message"),
                            }
                        }
                        tracing::warn!("fan-out subscription lost");
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot subscribe to the fan-out channel"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot connect the fan-out subscriber"),
            }
            self.subscribed.store(false, Ordering::Relaxed);
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}
