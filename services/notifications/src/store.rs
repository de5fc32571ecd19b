//! The notifications database.
//!
//! - `notifications`: one document per user-facing message. `_id` is a shop-wide sequence taken
//!   from `counters` inside the consumer's transaction, so ids rise in commit order: a client that
//!   saw id N has seen everything of its own up to N, which is what makes "send me what I missed
//!   after N" exact. `to` is a user id, or `*` for everyone (a new product).
//! - `reads`: which notifications a user opened (`POST /{id}/read`), and `cursors`: the id up to
//!   which a user marked everything read (`POST /read-all`). A broadcast is stored once, so "read"
//!   cannot live on the notification itself.

use std::collections::HashSet;
use storefront_events::UserId;

use chrono::{DateTime, Utc};
use mongodb::{
    ClientSession, Collection, IndexModel,
    bson::{self, Document, doc},
    options::{IndexOptions, ReturnDocument},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::domain::{Draft, EVERYONE, Kind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationDoc {
    #[serde(rename = "_id")]
    pub id: i64,
    /// The user id it is for, or [`EVERYONE`].
    pub to: String,
    pub kind: Kind,
    pub title: String,
    pub body: String,
    /// The shop page it points at, e.g. `/orders/{id}`.
    pub link: Option<String>,
    pub order_id: Option<String>,
    /// The order's state after the event, for pages that show it live.
    pub order_status: Option<String>,
    pub product_id: Option<String>,
    /// The event it was made from.
    pub event_id: String,
    pub created_at: bson::DateTime,
}

impl NotificationDoc {
    pub fn is_broadcast(&self) -> bool {
        self.to == EVERYONE
    }

    /// The user it is for; `None` for a broadcast.
    pub fn user(&self) -> Option<UserId> {
        self.to.parse().ok()
    }
}

/// A notification as clients see it (HTTP and WebSocket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Notification {
    /// A shop-wide sequence, rising in the order notifications were stored (the socket's
    /// cursor, and the list's `before`).
    pub id: i64,
    pub kind: Kind,
    pub title: String,
    pub body: String,
    /// The shop page it points at, e.g. `/orders/{id}`; null when none.
    pub link: Option<String>,
    /// The order it is about; null when none.
    pub order_id: Option<String>,
    /// The order's state after the event (e.g. `awaiting_payment`, `completed`, `cancelled`);
    /// null when not about an order.
    pub order_status: Option<String>,
    /// The product it is about (`new-product`); null otherwise.
    pub product_id: Option<String>,
    /// Whether it went to everyone rather than to this user alone.
    pub broadcast: bool,
    /// Whether this user has read it (one by one or with read-all).
    pub read: bool,
    pub created_at: DateTime<Utc>,
}

impl Notification {
    pub fn of(doc: &NotificationDoc, read: bool) -> Self {
        Notification {
            id: doc.id,
            kind: doc.kind,
            title: doc.title.clone(),
            body: doc.body.clone(),
            link: doc.link.clone(),
            order_id: doc.order_id.clone(),
            order_status: doc.order_status.clone(),
            product_id: doc.product_id.clone(),
            broadcast: doc.is_broadcast(),
            read,
            created_at: doc.created_at.to_chrono(),
        }
    }
}

impl Draft {
    /// The notification as stored under `id`, for the event `event_id`.
    fn stored(self, id: i64, event_id: Uuid) -> NotificationDoc {
        NotificationDoc {
            id,
            to: self.to,
            kind: self.kind,
            title: self.title,
            body: self.body,
            link: self.link,
            order_id: self.order_id,
            order_status: self.order_status,
            product_id: self.product_id,
            event_id: event_id.to_string(),
            created_at: bson::DateTime::now(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ReadDoc {
    #[serde(rename = "_id")]
    id: String,
    user_id: String,
    notification_id: i64,
    read_at: bson::DateTime,
}

#[derive(Debug, Serialize, Deserialize)]
struct CursorDoc {
    #[serde(rename = "_id")]
    user_id: String,
    read_through: i64,
}

#[derive(Clone)]
pub struct Store {
    notifications: Collection<NotificationDoc>,
    counters: Collection<Document>,
    reads: Collection<ReadDoc>,
    cursors: Collection<CursorDoc>,
}

fn visible_to(user: UserId) -> Document {
    doc! { "to": { "$in": [user.to_string(), EVERYONE] } }
}

impl Store {
    pub fn new(db: &mongodb::Database) -> Self {
        Store {
            notifications: db.collection("notifications"),
            counters: db.collection("counters"),
            reads: db.collection("reads"),
            cursors: db.collection("cursors"),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        self.notifications
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "to": 1, "_id": -1 })
                    .build(),
            )
            .await?;
        self.reads
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "user_id": 1, "notification_id": 1 })
                    .build(),
            )
            .await?;
        // One notification per event: a redelivered event runs into it, which is what makes the
        // consumer's processed-event record unnecessary ([`Store::insert`]).
        self.notifications
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "event_id": 1 })
                    .options(IndexOptions::builder().unique(true).build())
                    .build(),
            )
            .await?;
        Ok(())
    }

    /// Stores `draft` under the next id, in the consumer's transaction. Concurrent consumers
    /// conflict on the counter, so ids are handed out in commit order. `Ok(None)` when the
    /// event's notification exists already (a redelivery: `event_id` is unique); the transaction
    /// is spent then, and the caller aborts it.
    pub async fn insert(
        &self,
        session: &mut ClientSession,
        draft: Draft,
        event_id: Uuid,
    ) -> Result<Option<NotificationDoc>, mongodb::error::Error> {
        let counter = self
            .counters
            .find_one_and_update(
                doc! { "_id": "notifications" },
                doc! { "$inc": { "seq": 1_i64 } },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .session(&mut *session)
            .await?
            .unwrap_or_default();
        let id = counter.get_i64("seq").unwrap_or(1);
        let doc = draft.stored(id, event_id);
        match self
            .notifications
            .insert_one(&doc)
            .session(&mut *session)
            .await
        {
            Ok(_) => Ok(Some(doc)),
            // A clash on `event_id` is a redelivery; one on the id from the counter is not, and
            // stays an error. (The transaction is aborted, so the check reads outside it.)
            Err(e) if storefront_kit::mongo::is_duplicate_key(&e) => {
                match self
                    .notifications
                    .find_one(doc! { "event_id": event_id.to_string() })
                    .await?
                {
                    Some(_) => Ok(None),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Stores every draft (with the id of the event it came from) under the next ids, in their
    /// order, in the consumer's transaction: one counter increment and one insert for all. A
    /// redelivered event among them fails the insert (`event_id` is unique), and the consumer
    /// applies the events one by one ([`Store::insert`]).
    pub async fn insert_all(
        &self,
        session: &mut ClientSession,
        drafts: Vec<(Draft, Uuid)>,
    ) -> Result<Vec<NotificationDoc>, mongodb::error::Error> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let n = drafts.len() as i64;
        let counter = self
            .counters
            .find_one_and_update(
                doc! { "_id": "notifications" },
                doc! { "$inc": { "seq": n } },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .session(&mut *session)
            .await?
            .unwrap_or_default();
        let last = counter.get_i64("seq").unwrap_or(n);
        let docs: Vec<NotificationDoc> = drafts
            .into_iter()
            .zip(last - n + 1..)
            .map(|((draft, event_id), id)| draft.stored(id, event_id))
            .collect();
        self.notifications
            .insert_many(&docs)
            .session(&mut *session)
            .await?;
        Ok(docs)
    }

    /// The user's notifications, newest first, with ids below `before`.
    pub async fn page(
        &self,
        user: UserId,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<NotificationDoc>, mongodb::error::Error> {
        let mut filter = visible_to(user);
        if let Some(before) = before {
            filter.insert("_id", doc! { "$lt": before });
        }
        collect(
            self.notifications
                .find(filter)
                .sort(doc! { "_id": -1 })
                .limit(limit)
                .await?,
        )
        .await
    }

    /// The user's notifications after `after`, oldest first (what a reconnecting socket missed).
    pub async fn since(
        &self,
        user: UserId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<NotificationDoc>, mongodb::error::Error> {
        let mut filter = visible_to(user);
        filter.insert("_id", doc! { "$gt": after });
        collect(
            self.notifications
                .find(filter)
                .sort(doc! { "_id": 1 })
                .limit(limit)
                .await?,
        )
        .await
    }

    /// The newest id the user can see (0 when none).
    pub async fn latest(&self, user: UserId) -> Result<i64, mongodb::error::Error> {
        Ok(self
            .notifications
            .find_one(visible_to(user))
            .sort(doc! { "_id": -1 })
            .await?
            .map_or(0, |n| n.id))
    }

    /// How far the user marked everything read; `None` until the account's cursor exists
    /// ([`Store::welcome`] makes it when `user.created` arrives, a moment after sign-up).
    async fn read_through(&self, user: UserId) -> Result<Option<i64>, mongodb::error::Error> {
        Ok(self
            .cursors
            .find_one(doc! { "_id": user.to_string() })
            .await?
            .map(|c| c.read_through))
    }

    /// Of `docs` (what the user sees), the ids the user has read. Before the account's cursor
    /// exists the shop's announcements count as read, as [`Store::unread`] counts them.
    pub async fn read_among(
        &self,
        user: UserId,
        docs: &[NotificationDoc],
    ) -> Result<HashSet<i64>, mongodb::error::Error> {
        let cursor = self.read_through(user).await?;
        let through = cursor.unwrap_or(0);
        let mut read: HashSet<i64> = docs
            .iter()
            .filter(|d| d.id <= through || (cursor.is_none() && d.is_broadcast()))
            .map(|d| d.id)
            .collect();
        let rest: Vec<i64> = docs
            .iter()
            .map(|d| d.id)
            .filter(|id| !read.contains(id))
            .collect();
        if !rest.is_empty() {
            let mut cursor = self
                .reads
                .find(doc! { "user_id": user.to_string(), "notification_id": { "$in": rest } })
                .await?;
            while cursor.advance().await? {
                read.insert(cursor.deserialize_current()?.notification_id);
            }
        }
        Ok(read)
    }

    /// How many of the user's notifications are unread. Until the account's cursor exists
    /// ([`Store::welcome`] makes it when `user.created` arrives, a moment after sign-up) only the
    /// user's own count: the shop's earlier announcements are not news to a new customer, and the
    /// bell on the first page after sign-up showed every one of them.
    pub async fn unread(&self, user: UserId) -> Result<u64, mongodb::error::Error> {
        let cursor = self.read_through(user).await?;
        let through = cursor.unwrap_or(0);
        let mut filter = match cursor {
            Some(_) => visible_to(user),
            None => doc! { "to": user.to_string() },
        };
        filter.insert("_id", doc! { "$gt": through });
        let newer = self.notifications.count_documents(filter).await?;
        let opened = self
            .reads
            .count_documents(
                doc! { "user_id": user.to_string(), "notification_id": { "$gt": through } },
            )
            .await?;
        Ok(newer.saturating_sub(opened))
    }

    /// Marks one notification read. `false` when the user cannot see it.
    pub async fn mark_read(&self, user: UserId, id: i64) -> Result<bool, mongodb::error::Error> {
        let mut filter = visible_to(user);
        filter.insert("_id", id);
        if self.notifications.find_one(filter).await?.is_none() {
            return Ok(false);
        }
        self.reads
            .update_one(
                doc! { "_id": format!("{user}:{id}") },
                doc! { "$setOnInsert": {
                    "user_id": user.to_string(),
                    "notification_id": id,
                    "read_at": bson::DateTime::now(),
                } },
            )
            .upsert(true)
            .await?;
        Ok(true)
    }

    /// A new account starts with the announcements made before it existed marked read: they are
    /// the shop's history, not news to this customer. Uses the account's creation time, not the
    /// time the event arrives, so a late event marks no later announcement.
    pub async fn welcome(
        &self,
        session: &mut ClientSession,
        user: UserId,
        created_at: DateTime<Utc>,
    ) -> Result<(), mongodb::error::Error> {
        let before = self
            .notifications
            .find_one(doc! {
                "to": EVERYONE,
                "created_at": { "$lte": bson::DateTime::from_chrono(created_at) },
            })
            .sort(doc! { "_id": -1 })
            .session(&mut *session)
            .await?;
        // Always a cursor, at 0 when nothing came before: its existence is what tells
        // [`Store::unread`] that announcements count for this account from now on.
        self.cursors
            .update_one(
                doc! { "_id": user.to_string() },
                doc! { "$max": { "read_through": before.map_or(0, |last| last.id) } },
            )
            .upsert(true)
            .session(&mut *session)
            .await?;
        Ok(())
    }

    /// Marks everything the user can see now as read; returns that newest id.
    pub async fn mark_all_read(&self, user: UserId) -> Result<i64, mongodb::error::Error> {
        let latest = self.latest(user).await?;
        self.cursors
            .update_one(
                doc! { "_id": user.to_string() },
                doc! { "$max": { "read_through": latest } },
            )
            .upsert(true)
            .await?;
        Ok(latest)
    }
}

async fn collect(
    mut cursor: mongodb::Cursor<NotificationDoc>,
) -> Result<Vec<NotificationDoc>, mongodb::error::Error> {
    let mut out = Vec::new();
    while cursor.advance().await? {
        out.push(cursor.deserialize_current()?);
    }
    Ok(out)
}
