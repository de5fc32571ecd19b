//! What the API returns: users without secrets, and token bundles.

use chrono::{DateTime, Utc};
use serde::Serialize;
use storefront_events::users::Role;
use uuid::Uuid;

use crate::{domain::Address, store::UserDoc};

#[derive(Debug, Serialize)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
    pub address: Option<Address>,
    pub role: Role,
    pub blocked: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<UserDoc> for UserView {
    fn from(user: UserDoc) -> Self {
        UserView {
            id: user.uuid(),
            email: user.email,
            name: user.name,
            phone: user.phone,
            address: user.address,
            role: user.role,
            blocked: user.blocked,
            created_at: user.created_at.to_chrono(),
            updated_at: user.updated_at.to_chrono(),
        }
    }
}

/// A signed-in session: the tokens for API clients (browsers get the same as cookies).
#[derive(Debug, Serialize)]
pub struct SessionView {
    pub user: UserView,
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: u64,
    pub refresh_token: String,
    /// Seconds.
    pub refresh_expires_in: u64,
}
