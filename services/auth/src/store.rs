//! Auth's MongoDB: `users`, `sessions` (one per sign-in: a refresh-token family) and
//! `refresh_tokens` (only SHA-256 hashes). Every user change writes its event to the outbox in the
//! same transaction.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::{
    Collection, IndexModel,
    bson::{self, Bson, Document, doc},
    options::{IndexOptions, ReturnDocument},
};
use serde::{Deserialize, Serialize};
use storefront_events::{
    Envelope, UserId,
    users::{Role, UserBlocked, UserCreated, UserUnblocked, UserUpdated},
};
use storefront_kit::{
    mongo::{self, Mongo, Page, Transient, is_duplicate_key},
    outbox::{AppendError, Outbox},
    retry_transient,
};
use uuid::Uuid;

use crate::domain::Address;

pub const SOURCE: &str = "auth";

/// A user as stored. `email` is unique (lower-cased before it gets here). `Debug` leaves the
/// password hash out.
#[derive(Clone, Serialize, Deserialize)]
pub struct UserDoc {
    #[serde(rename = "_id")]
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub name: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub address: Option<Address>,
    pub role: Role,
    pub blocked: bool,
    pub version: i64,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
}

impl std::fmt::Debug for UserDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserDoc")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("password_hash", &"[REDACTED]")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("blocked", &self.blocked)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl UserDoc {
    fn updated_event(&self) -> Envelope<UserUpdated> {
        Envelope::new(
            SOURCE,
            self.id,
            self.version as u64,
            UserUpdated {
                user_id: self.id,
                email: self.email.clone(),
                name: self.name.clone(),
                role: self.role,
                blocked: self.blocked,
                updated_at: self.updated_at.to_chrono(),
            },
        )
    }
}

/// One sign-in: the family of refresh tokens rotated from it, and its newest access token (so a
/// revoked session also revokes the access token it handed out last).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    pub revoked: bool,
    pub access_jti: String,
    pub access_exp: i64,
    pub created_at: bson::DateTime,
    pub expires_at: bson::DateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshTokenDoc {
    /// SHA-256 of the token.
    #[serde(rename = "_id")]
    pub hash: String,
    pub session_id: String,
    pub user_id: String,
    pub used: bool,
    pub expires_at: bson::DateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("an account with this email already exists")]
    DuplicateEmail,
    #[error(transparent)]
    Mongo(#[from] mongodb::error::Error),
    #[error("outbox: {0}")]
    Outbox(#[source] AppendError),
}

impl From<AppendError> for StoreError {
    fn from(e: AppendError) -> Self {
        e.into_store(StoreError::Outbox)
    }
}

impl From<StoreError> for storefront_kit::Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DuplicateEmail => storefront_kit::Error::Conflict {
                kind: "email-taken",
                detail: e.to_string(),
            },
            // A database that does not answer is a 503 (kit's mapping), not a bug.
            StoreError::Mongo(e) => e.into(),
            other => storefront_kit::Error::internal(other),
        }
    }
}

/// What a refresh token turned out to be.
pub enum RefreshLookup {
    /// Valid and now spent: rotate.
    Fresh {
        session: SessionDoc,
        user: Box<UserDoc>,
    },
    /// Spent before: someone replayed it. The session has been revoked.
    Reused { session: Option<SessionDoc> },
    /// Unknown, expired, or its session is over.
    Invalid,
}

#[derive(Clone)]
pub struct Store {
    mongo: Mongo,
    users: Collection<UserDoc>,
    sessions: Collection<SessionDoc>,
    refresh_tokens: Collection<RefreshTokenDoc>,
    outbox: Outbox,
}

fn now() -> bson::DateTime {
    bson::DateTime::now()
}

fn at(t: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(t.timestamp_millis())
}

impl Transient for StoreError {
    fn is_transient(&self) -> bool {
        matches!(self, StoreError::Mongo(e) if e.is_transient())
    }
}

/// Which users an admin's list shows (every condition given must hold).
#[derive(Debug, Default)]
pub struct UserFilter {
    pub blocked: Option<bool>,
    /// Text in the email or name, matched literally, case-insensitive.
    pub text: Option<String>,
    pub ids: Option<Vec<Uuid>>,
}

impl UserFilter {
    fn filter(&self) -> Document {
        let mut filter = doc! {};
        if let Some(blocked) = self.blocked {
            filter.insert("blocked", blocked);
        }
        if let Some(text) = &self.text {
            let pattern = storefront_kit::validate::literal_pattern(text);
            filter.insert(
                "$or",
                vec![
                    doc! { "email": { "$regex": &pattern, "$options": "i" } },
                    doc! { "name": { "$regex": &pattern, "$options": "i" } },
                ],
            );
        }
        if let Some(ids) = &self.ids {
            let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
            filter.insert("_id", doc! { "$in": ids });
        }
        filter
    }
}

impl Store {
    pub fn new(mongo: Mongo, outbox: Outbox) -> Self {
        Store {
            users: mongo.db.collection("users"),
            sessions: mongo.db.collection("sessions"),
            refresh_tokens: mongo.db.collection("refresh_tokens"),
            mongo,
            outbox,
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        self.users
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "email": 1 })
                    .options(IndexOptions::builder().unique(true).build())
                    .build(),
            )
            .await?;
        self.users
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "created_at": 1, "_id": 1 })
                    .build(),
            )
            .await?;
        self.sessions
            .create_index(IndexModel::builder().keys(doc! { "user_id": 1 }).build())
            .await?;
        for expiring in [
            self.sessions.clone_with_type::<Document>(),
            self.refresh_tokens.clone_with_type(),
        ] {
            expiring
                .create_index(
                    IndexModel::builder()
                        .keys(doc! { "expires_at": 1 })
                        .options(
                            IndexOptions::builder()
                                .expire_after(std::time::Duration::ZERO)
                                .build(),
                        )
                        .build(),
                )
                .await?;
        }
        self.outbox.ensure_indexes().await
    }

    /// Creates a user and publishes `user.created`.
    pub async fn create_user(&self, user: &UserDoc) -> Result<(), StoreError> {
        retry_transient!(self.create_user_once(user).await)
    }

    async fn create_user_once(&self, user: &UserDoc) -> Result<(), StoreError> {
        let mut session = self.mongo.begin().await?;
        match self.users.insert_one(user).session(&mut session).await {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => return Err(StoreError::DuplicateEmail),
            Err(e) => return Err(e.into()),
        }
        let event = Envelope::new(
            SOURCE,
            user.id,
            user.version as u64,
            UserCreated {
                user_id: user.id,
                email: user.email.clone(),
                name: user.name.clone(),
                role: user.role,
                created_at: user.created_at.to_chrono(),
            },
        );
        self.outbox.append(&mut session, event).await?;
        self.outbox.commit(session).await.map_err(StoreError::from)
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserDoc>, StoreError> {
        Ok(self.users.find_one(doc! { "email": email }).await?)
    }

    pub async fn user_by_id(&self, id: UserId) -> Result<Option<UserDoc>, StoreError> {
        Ok(self.users.find_one(doc! { "_id": id.to_string() }).await?)
    }

    /// Applies `$set`/`$unset` changes to a user's profile, bumps its version, publishes
    /// `user.updated`. `None` when the user does not exist.
    pub async fn update_profile(
        &self,
        id: UserId,
        set: Document,
        unset: Document,
    ) -> Result<Option<UserDoc>, StoreError> {
        retry_transient!(
            self.update_profile_once(id, set.clone(), unset.clone())
                .await
        )
    }

    async fn update_profile_once(
        &self,
        id: UserId,
        mut set: Document,
        unset: Document,
    ) -> Result<Option<UserDoc>, StoreError> {
        let mut session = self.mongo.begin().await?;
        set.insert("updated_at", now());
        let mut update = doc! { "$set": set, "$inc": { "version": 1 } };
        if !unset.is_empty() {
            update.insert("$unset", unset);
        }
        let Some(user) = self
            .users
            .find_one_and_update(doc! { "_id": id.to_string() }, update)
            .return_document(ReturnDocument::After)
            .session(&mut session)
            .await?
        else {
            return Ok(None);
        };
        self.outbox
            .append(&mut session, user.updated_event())
            .await?;
        self.outbox.commit(session).await?;
        Ok(Some(user))
    }

    /// Blocks or unblocks; publishes `user.blocked`/`user.unblocked` and `user.updated`. Returns the
    /// user after the change and whether anything changed (blocking a blocked user is a no-op).
    pub async fn set_blocked(
        &self,
        id: UserId,
        blocked: bool,
        by: UserId,
    ) -> Result<Option<(UserDoc, bool)>, StoreError> {
        retry_transient!(self.set_blocked_once(id, blocked, by).await)
    }

    async fn set_blocked_once(
        &self,
        id: UserId,
        blocked: bool,
        by: UserId,
    ) -> Result<Option<(UserDoc, bool)>, StoreError> {
        let mut session = self.mongo.begin().await?;
        let changed = self
            .users
            .find_one_and_update(
                doc! { "_id": id.to_string(), "blocked": !blocked },
                doc! { "$set": { "blocked": blocked, "updated_at": now() }, "$inc": { "version": 1 } },
            )
            .return_document(ReturnDocument::After)
            .session(&mut session)
            .await?;
        let Some(user) = changed else {
            let _ = session.abort_transaction().await;
            return Ok(self.user_by_id(id).await?.map(|u| (u, false)));
        };
        let version = user.version as u64;
        let at = user.updated_at.to_chrono();
        if blocked {
            let event = UserBlocked {
                user_id: id,
                blocked_by: by,
                blocked_at: at,
            };
            self.outbox
                .append(&mut session, Envelope::new(SOURCE, user.id, version, event))
                .await?;
        } else {
            let event = UserUnblocked {
                user_id: id,
                unblocked_by: by,
                unblocked_at: at,
            };
            self.outbox
                .append(&mut session, Envelope::new(SOURCE, user.id, version, event))
                .await?;
        }
        self.outbox.commit(session).await?;
        Ok(Some((user, true)))
    }

    pub async fn list_users(
        &self,
        page: u64,
        per_page: u64,
        wanted: &UserFilter,
    ) -> Result<Page<UserDoc>, StoreError> {
        let sort = doc! { "created_at": 1, "_id": 1 };
        Ok(mongo::page(&self.users, wanted.filter(), sort, page, per_page).await?)
    }

    /// Starts a session with its first refresh token.
    pub async fn start_session(
        &self,
        session: &SessionDoc,
        refresh_hash: &str,
    ) -> Result<(), StoreError> {
        self.sessions.insert_one(session).await?;
        self.refresh_tokens
            .insert_one(RefreshTokenDoc {
                hash: refresh_hash.to_owned(),
                session_id: session.id.clone(),
                user_id: session.user_id.clone(),
                used: false,
                expires_at: session.expires_at,
            })
            .await?;
        Ok(())
    }

    /// Spends a refresh token. A second use of the same token revokes its whole session.
    pub async fn spend_refresh_token(&self, hash: &str) -> Result<RefreshLookup, StoreError> {
        let spent = self
            .refresh_tokens
            .find_one_and_update(
                doc! { "_id": hash, "used": false },
                doc! { "$set": { "used": true } },
            )
            .await?;
        let Some(token) = spent else {
            let Some(old) = self.refresh_tokens.find_one(doc! { "_id": hash }).await? else {
                return Ok(RefreshLookup::Invalid);
            };
            let session = self.revoke_session(&old.session_id).await?;
            return Ok(RefreshLookup::Reused { session });
        };
        if token.expires_at < now() {
            return Ok(RefreshLookup::Invalid);
        }
        let Some(session) = self
            .sessions
            .find_one(doc! { "_id": &token.session_id, "revoked": false })
            .await?
        else {
            return Ok(RefreshLookup::Invalid);
        };
        let Some(user) = self.users.find_one(doc! { "_id": &token.user_id }).await? else {
            return Ok(RefreshLookup::Invalid);
        };
        Ok(RefreshLookup::Fresh {
            session,
            user: Box::new(user),
        })
    }

    /// Records the rotated refresh token and the new access token of a session.
    pub async fn rotate(
        &self,
        session_id: &str,
        refresh_hash: &str,
        user_id: &str,
        access_jti: Uuid,
        access_exp: i64,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.refresh_tokens
            .insert_one(RefreshTokenDoc {
                hash: refresh_hash.to_owned(),
                session_id: session_id.to_owned(),
                user_id: user_id.to_owned(),
                used: false,
                expires_at: at(expires_at),
            })
            .await?;
        self.sessions
            .update_one(
                doc! { "_id": session_id },
                doc! { "$set": { "access_jti": access_jti.to_string(), "access_exp": access_exp, "expires_at": at(expires_at) } },
            )
            .await?;
        Ok(())
    }

    /// Ends one session; returns it as it was (for its access token) if it was live.
    pub async fn revoke_session(&self, session_id: &str) -> Result<Option<SessionDoc>, StoreError> {
        Ok(self
            .sessions
            .find_one_and_update(
                doc! { "_id": session_id, "revoked": false },
                doc! { "$set": { "revoked": true } },
            )
            .await?)
    }

    /// Ends every live session of a user; returns them (for their access tokens).
    pub async fn revoke_user_sessions(
        &self,
        user_id: UserId,
    ) -> Result<Vec<SessionDoc>, StoreError> {
        let filter = doc! { "user_id": user_id.to_string(), "revoked": false };
        let live: Vec<SessionDoc> = self
            .sessions
            .find(filter.clone())
            .await?
            .try_collect()
            .await?;
        let ids: Vec<Bson> = live.iter().map(|s| Bson::String(s.id.clone())).collect();
        self.sessions
            .update_many(
                doc! { "_id": { "$in": ids } },
                doc! { "$set": { "revoked": true } },
            )
            .await?;
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_hash_never_shows_in_debug_output() {
        let now = bson::DateTime::now();
        let user = UserDoc {
            id: UserId::new(),
            email: "ada@example.com".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$do-not-print".into(),
            name: "Ada".into(),
            phone: None,
            address: None,
            role: Role::Customer,
            blocked: false,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let printed = format!("{user:?}");
        assert!(!printed.contains("do-not-print"), "{printed}");
        assert!(printed.contains("ada@example.com"), "{printed}");
    }
}
