//! A short-lived read cache of rendered responses: a product by id, and list pages by query.
//!
//! Safe because it is short and honest: entries live `PRODUCT_CACHE_TTL_MS` (1 s by default), this
//! replica's own writes clear them at once, and nothing that decides anything reads from it —
//! `If-Match` checks, stock reservations and every write go to MongoDB. What a shopper may see is
//! a product page up to one TTL older than another replica's write.

use std::{
    collections::HashMap,
    sync::RwLock,
    time::{Duration, Instant},
};
use storefront_events::ProductId;

use bytes::Bytes;

/// A rendered product: its JSON body and its `ETag`.
#[derive(Clone)]
pub struct Rendered {
    pub body: Bytes,
    pub etag: String,
}

/// Entries per map before the map is emptied (a bound on memory, not an eviction policy).
const MAX_ENTRIES: usize = 10_000;

pub struct Cache {
    ttl: Duration,
    products: RwLock<HashMap<ProductId, (Instant, Rendered)>>,
    lists: RwLock<HashMap<String, (Instant, Bytes)>>,
}

fn fresh<K: std::hash::Hash + Eq, V: Clone>(
    map: &RwLock<HashMap<K, (Instant, V)>>,
    key: &K,
) -> Option<V> {
    let map = map.read().unwrap_or_else(|e| e.into_inner());
    match map.get(key) {
        Some((until, value)) if *until > Instant::now() => Some(value.clone()),
        _ => None,
    }
}

fn keep<K: std::hash::Hash + Eq, V>(
    map: &RwLock<HashMap<K, (Instant, V)>>,
    ttl: Duration,
    key: K,
    value: V,
) {
    let mut map = map.write().unwrap_or_else(|e| e.into_inner());
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(key, (Instant::now() + ttl, value));
}

impl Cache {
    pub fn new(ttl: Duration) -> Self {
        Cache {
            ttl,
            products: RwLock::default(),
            lists: RwLock::default(),
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    pub fn product(&self, id: ProductId) -> Option<Rendered> {
        self.enabled().then(|| fresh(&self.products, &id)).flatten()
    }

    pub fn keep_product(&self, id: ProductId, rendered: Rendered) {
        if self.enabled() {
            keep(&self.products, self.ttl, id, rendered);
        }
    }

    pub fn list(&self, query: &str) -> Option<Bytes> {
        self.enabled()
            .then(|| fresh(&self.lists, &query.to_owned()))
            .flatten()
    }

    pub fn keep_list(&self, query: String, body: Bytes) {
        if self.enabled() {
            keep(&self.lists, self.ttl, query, body);
        }
    }

    /// After a write to `id`: its entry and every list page go.
    pub fn invalidate(&self, id: ProductId) {
        self.products
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        self.lists
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(body: &'static str) -> Rendered {
        Rendered {
            body: Bytes::from_static(body.as_bytes()),
            etag: "\"v1\"".into(),
        }
    }

    #[test]
    fn entries_expire_and_writes_clear_them() {
        let cache = Cache::new(Duration::from_millis(50));
        let id = ProductId::new();
        cache.keep_product(id, rendered("a"));
        cache.keep_list("page=1".into(), Bytes::from_static(b"[]"));
        assert!(cache.product(id).is_some());
        assert!(cache.list("page=1").is_some());
        cache.invalidate(id);
        assert!(cache.product(id).is_none());
        assert!(cache.list("page=1").is_none());
        cache.keep_product(id, rendered("b"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.product(id).is_none());
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let cache = Cache::new(Duration::ZERO);
        let id = ProductId::new();
        cache.keep_product(id, rendered("a"));
        assert!(cache.product(id).is_none());
    }
}
