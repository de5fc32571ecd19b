//! Events of the `users` aggregate, published by auth.
//!
//! They carry what other services may replicate about a user (id, email, name, role, blocked) and
//! never a secret: no password hash, no token, no phone or address (those stay in auth).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Event, Topic, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Admin,
}

/// A user signed up (or was created as the bootstrap admin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreated {
    pub user_id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

impl Event for UserCreated {
    const TYPE: &'static str = "user.created";
    const TOPIC: Topic = Topic::Users;
}

/// A user's public profile changed; the full public snapshot after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdated {
    pub user_id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub blocked: bool,
    pub updated_at: DateTime<Utc>,
}

impl Event for UserUpdated {
    const TYPE: &'static str = "user.updated";
    const TOPIC: Topic = Topic::Users;
}

/// An admin blocked a user: their sessions are revoked and they cannot sign in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBlocked {
    pub user_id: UserId,
    /// The admin who blocked them.
    pub blocked_by: UserId,
    pub blocked_at: DateTime<Utc>,
}

impl Event for UserBlocked {
    const TYPE: &'static str = "user.blocked";
    const TOPIC: Topic = Topic::Users;
}

/// An admin lifted a block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUnblocked {
    pub user_id: UserId,
    pub unblocked_by: UserId,
    pub unblocked_at: DateTime<Utc>,
}

impl Event for UserUnblocked {
    const TYPE: &'static str = "user.unblocked";
    const TOPIC: Topic = Topic::Users;
}
