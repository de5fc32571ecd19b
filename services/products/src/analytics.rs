//! How often customers look at each product: counted in memory as products are read, published
//! as `product.viewed` in batches, and consumed into counters (docs/services/products.md, "Views").
//!
//! - `GET /api/products/{id}` calls [`ViewCounter::saw`] for a product it found, unless the caller
//!   is an admin: a lock and a map entry, nothing on the request's path touches MongoDB or Kafka.
//! - Every `VIEWS_FLUSH_MS` [`Analytics::flush`] takes the batch and appends one `product.viewed`
//!   per product to the outbox in one transaction (the relay sends them). A batch that cannot be
//!   written is put back and tried again at the next flush.
//! - The inventory consumer applies each event with [`Analytics::count_in`]: the product's
//!   all-time `views` (the shop's "Popular" order) and the `product_views` document of its day.
//! - [`Analytics::stats`] reads the days back for the admin's dashboard.
//!
//! Views are analytics, not money: what a replica counted since its last flush is lost if it is
//! killed (a clean stop flushes).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};
use storefront_events::ProductId;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use futures::TryStreamExt;
use mongodb::{
    ClientSession, Collection, IndexModel,
    bson::{Document, doc},
    error::UNKNOWN_TRANSACTION_COMMIT_RESULT,
};
use serde::{Deserialize, Serialize};
use storefront_events::{Envelope, products::ProductViewed};
use storefront_kit::{
    mongo::{Mongo, is_duplicate_key, summed},
    outbox::Outbox,
    retry_transient,
};
use tokio::sync::watch;

use crate::store::{ProductDoc, SOURCE, StoreError};

/// A product on a UTC day: views are counted per day they happened, so a batch that spans
/// midnight (or waited through an outage) dates every view right.
type Seen = (ProductId, NaiveDate);

/// The views seen since the last flush.
struct Batch {
    since: DateTime<Utc>,
    counts: HashMap<Seen, u64>,
}

/// Counts reads of products in memory until the next flush.
pub struct ViewCounter(Mutex<Batch>);

impl Default for ViewCounter {
    fn default() -> Self {
        ViewCounter(Mutex::new(Batch {
            since: Utc::now(),
            counts: HashMap::new(),
        }))
    }
}

impl ViewCounter {
    fn batch(&self) -> std::sync::MutexGuard<'_, Batch> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One read of `product` (an existing one: the map holds at most the catalog per day).
    pub fn saw(&self, product: ProductId) {
        self.saw_on(product, Utc::now().date_naive());
    }

    fn saw_on(&self, product: ProductId, day: NaiveDate) {
        *self.batch().counts.entry((product, day)).or_default() += 1;
    }

    /// Takes what was counted: the window and the counts by product and day (sorted, so a
    /// batch's events are written in a stable order).
    fn take(&self) -> (DateTime<Utc>, DateTime<Utc>, BTreeMap<Seen, u64>) {
        let mut batch = self.batch();
        let until = Utc::now();
        let since = std::mem::replace(&mut batch.since, until);
        let counts = std::mem::take(&mut batch.counts);
        (since, until, counts.into_iter().collect())
    }

    /// Puts back counts that could not be written; they join the next batch (whose window then
    /// starts at the older `since`).
    fn put_back(&self, since: DateTime<Utc>, counts: BTreeMap<Seen, u64>) {
        let mut batch = self.batch();
        batch.since = batch.since.min(since);
        for (seen, count) in counts {
            *batch.counts.entry(seen).or_default() += count;
        }
    }
}

/// The events of one batch: one per product and day, its window cut to that day.
fn events(
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    counts: &BTreeMap<Seen, u64>,
) -> Vec<Envelope<ProductViewed>> {
    counts
        .iter()
        .map(|(&(product_id, day), &count)| {
            let start = day.and_time(NaiveTime::MIN).and_utc();
            let end = start + chrono::Duration::days(1);
            Envelope::new(
                SOURCE,
                product_id.to_string(),
                0,
                ProductViewed {
                    product_id,
                    count,
                    from: since.clamp(start, end),
                    until: until.clamp(start, end),
                },
            )
        })
        .collect()
}

/// One product's views on one day (UTC), as stored in `product_views`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DailyViews {
    /// `{product_id}:{day}`.
    #[serde(rename = "_id")]
    pub id: String,
    pub product_id: String,
    /// `YYYY-MM-DD`.
    pub day: String,
    pub views: i64,
}

/// Views of the catalog over some days, for the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewStats {
    /// Every day of the window, oldest first, with its views (0 included).
    pub days: Vec<(NaiveDate, i64)>,
    /// The most viewed products of the window: id, views.
    pub top: Vec<(ProductId, i64)>,
    /// Views of the whole catalog in the window.
    pub total: i64,
}

#[derive(Clone)]
pub struct Analytics {
    mongo: Mongo,
    outbox: Outbox,
    products: Collection<ProductDoc>,
    daily: Collection<DailyViews>,
    pub counter: Arc<ViewCounter>,
}

impl Analytics {
    pub fn new(mongo: Mongo, outbox: Outbox) -> Self {
        Analytics {
            products: mongo.db.collection("products"),
            daily: mongo.db.collection("product_views"),
            mongo,
            outbox,
            counter: Arc::default(),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        self.daily
            .create_index(IndexModel::builder().keys(doc! { "day": 1 }).build())
            .await?;
        Ok(())
    }

    /// Publishes what was counted since the last flush: one `product.viewed` per product and
    /// day, all in one transaction. Returns how many events; on failure the counts wait for the
    /// next flush — unless the commit's outcome is unknown (it may have gone through: counting
    /// again could count twice; views are analytics, so a rare loss is the better mistake).
    pub async fn flush(&self) -> Result<usize, StoreError> {
        let (since, until, counts) = self.counter.take();
        if counts.is_empty() {
            return Ok(0);
        }
        // Made once: a transaction run again writes the same event ids, so a commit that went
        // through before is refused by the outbox's key, never published twice.
        let events = events(since, until, &counts);
        match retry_transient!(self.publish(&events).await) {
            Ok(()) => Ok(events.len()),
            Err(StoreError::Mongo(e)) if is_duplicate_key(&e) => Ok(events.len()),
            Err(StoreError::Mongo(e)) if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) => {
                Err(StoreError::Mongo(e))
            }
            Err(e) => {
                self.counter.put_back(since, counts);
                Err(e)
            }
        }
    }

    async fn publish(&self, events: &[Envelope<ProductViewed>]) -> Result<(), StoreError> {
        let mut session = self.mongo.begin().await?;
        for event in events {
            self.outbox.append(&mut session, event.clone()).await?;
        }
        self.outbox.commit(session).await?;
        Ok(())
    }

    /// Flushes every `every` until `stop`, then once more.
    pub async fn run(self, every: Duration, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
            if let Err(e) = self.flush().await {
                tracing::warn!(error = %e, "product views not published yet; kept for the next flush");
            }
        }
        if let Err(e) = self.flush().await {
            tracing::warn!(error = %e, "the last product views were not published");
        }
    }

    /// Applies one `product.viewed` in the consumer's transaction: the product's all-time count
    /// and its day's. A product deleted since is counted all the same (its past views stay true).
    pub async fn count_in(
        &self,
        session: &mut ClientSession,
        viewed: &ProductViewed,
    ) -> Result<(), StoreError> {
        let count = i64::try_from(viewed.count).unwrap_or(i64::MAX);
        let product = viewed.product_id.to_string();
        let day = viewed.from.date_naive().format("%Y-%m-%d").to_string();
        self.products
            .update_one(
                doc! { "_id": &product },
                doc! { "$inc": { "views": count } },
            )
            .session(&mut *session)
            .await?;
        self.daily
            .update_one(
                doc! { "_id": format!("{product}:{day}") },
                doc! {
                    "$inc": { "views": count },
                    "$setOnInsert": { "product_id": &product, "day": &day },
                },
            )
            .upsert(true)
            .session(&mut *session)
            .await?;
        Ok(())
    }

    /// The views of the `days` days up to and including `today`, and the `top` most viewed
    /// products in them: summed by the database (a dashboard's 90 days of a large catalog are
    /// many documents), the days filled in here.
    pub async fn stats(
        &self,
        today: NaiveDate,
        days: u32,
        top: usize,
    ) -> Result<ViewStats, StoreError> {
        let first = storefront_kit::validate::first_day(today, days);
        let window = doc! { "$match": { "day": {
            "$gte": first.format("%Y-%m-%d").to_string(),
            "$lte": today.format("%Y-%m-%d").to_string(),
        } } };
        let mut by_day: BTreeMap<NaiveDate, i64> = BTreeMap::new();
        let mut cursor = self
            .daily
            .aggregate([
                window.clone(),
                doc! { "$group": { "_id": "$day", "views": { "$sum": "$views" } } },
            ])
            .await?;
        while let Some(sum) = cursor.try_next().await? {
            if let Some(day) = sum
                .get_str("_id")
                .ok()
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            {
                by_day.insert(day, summed(&sum, "views"));
            }
        }
        let mut by_product: HashMap<ProductId, i64> = HashMap::new();
        let mut cursor = self
            .daily
            .aggregate([
                window,
                doc! { "$group": { "_id": "$product_id", "views": { "$sum": "$views" } } },
                doc! { "$sort": { "views": -1, "_id": 1 } },
                doc! { "$limit": i64::try_from(top).unwrap_or(i64::MAX) },
            ])
            .await?;
        while let Some(sum) = cursor.try_next().await? {
            if let Some(product) = sum.get_str("_id").ok().and_then(|id| id.parse().ok()) {
                by_product.insert(product, summed(&sum, "views"));
            }
        }
        Ok(summarise(first, today, &by_day, by_product, top))
    }

    /// The titles of `ids`, deleted products included, by id.
    pub async fn titles(
        &self,
        ids: &[ProductId],
    ) -> Result<HashMap<ProductId, String>, StoreError> {
        let ids: Vec<String> = ids.iter().map(ProductId::to_string).collect();
        let mut cursor = self
            .products
            .clone_with_type::<Document>()
            .find(doc! { "_id": { "$in": ids } })
            .projection(doc! { "title": 1 })
            .await?;
        let mut found = HashMap::new();
        while let Some(product) = cursor.try_next().await? {
            if let (Ok(id), Ok(title)) = (product.get_str("_id"), product.get_str("title"))
                && let Ok(id) = id.parse()
            {
                found.insert(id, title.to_owned());
            }
        }
        Ok(found)
    }
}

/// Every day from `first` to `last` with its views, and the `top` products by views (ties by id).
fn summarise(
    first: NaiveDate,
    last: NaiveDate,
    by_day: &BTreeMap<NaiveDate, i64>,
    by_product: HashMap<ProductId, i64>,
    top: usize,
) -> ViewStats {
    let days: Vec<(NaiveDate, i64)> = first
        .iter_days()
        .take_while(|d| *d <= last)
        .map(|d| (d, by_day.get(&d).copied().unwrap_or(0)))
        .collect();
    let total = days.iter().map(|(_, v)| v).sum();
    let mut ranked: Vec<(ProductId, i64)> =
        by_product.into_iter().filter(|(_, v)| *v > 0).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(top);
    ViewStats {
        days,
        top: ranked,
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn a_counter_hands_over_its_batch_once_and_takes_back_what_failed() {
        let counter = ViewCounter::default();
        let (a, b) = (ProductId::new(), ProductId::new());
        let today = Utc::now().date_naive();
        counter.saw(a);
        counter.saw(a);
        counter.saw(b);
        let (since, until, counts) = counter.take();
        assert!(since <= until);
        assert_eq!(counts.get(&(a, today)), Some(&2));
        assert_eq!(counts.get(&(b, today)), Some(&1));
        assert!(counter.take().2.is_empty(), "taken once");
        counter.saw(a);
        counter.put_back(since, counts);
        let (again_since, _, counts) = counter.take();
        assert_eq!(
            counts.get(&(a, today)),
            Some(&3),
            "the failed batch joins the next one"
        );
        assert_eq!(
            again_since, since,
            "and its window starts where the failed one did"
        );
    }

    #[test]
    fn a_batch_across_midnight_dates_each_view_by_its_day() {
        let counter = ViewCounter::default();
        let product = ProductId::new();
        counter.saw_on(product, day("2026-11-30"));
        counter.saw_on(product, day("2026-11-30"));
        counter.saw_on(product, day("2026-12-01"));
        let (_, _, counts) = counter.take();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let batch = events(
            at("2026-11-30T23:59:50Z"),
            at("2026-12-01T00:00:05Z"),
            &counts,
        );
        let windows: Vec<(u64, String, String)> = batch
            .iter()
            .map(|e| {
                (
                    e.data.count,
                    e.data.from.to_rfc3339(),
                    e.data.until.to_rfc3339(),
                )
            })
            .collect();
        assert_eq!(
            windows,
            [
                (
                    2,
                    "2026-11-30T23:59:50+00:00".into(),
                    "2026-12-01T00:00:00+00:00".into()
                ),
                (
                    1,
                    "2026-12-01T00:00:00+00:00".into(),
                    "2026-12-01T00:00:05+00:00".into()
                ),
            ]
        );
        assert!(
            batch
                .iter()
                .all(|e| e.key == product.to_string() && e.version == 0)
        );
    }

    #[test]
    fn every_day_of_the_window_is_there_and_the_top_is_by_views() {
        let (a, b, c) = (ProductId::new(), ProductId::new(), ProductId::new());
        let by_day = BTreeMap::from([(day("2026-11-29"), 5), (day("2026-12-01"), 2)]);
        let by_product = HashMap::from([(a, 1), (b, 4), (c, 2)]);
        let stats = summarise(day("2026-11-28"), day("2026-12-01"), &by_day, by_product, 2);
        assert_eq!(
            stats.days,
            vec![
                (day("2026-11-28"), 0),
                (day("2026-11-29"), 5),
                (day("2026-11-30"), 0),
                (day("2026-12-01"), 2)
            ]
        );
        assert_eq!(stats.total, 7);
        assert_eq!(stats.top, vec![(b, 4), (c, 2)]);
    }
}
