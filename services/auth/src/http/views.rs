//! What the API returns: users without secrets, and token bundles.

use chrono::{DateTime, Utc};
use schemars::{JsonSchema, Schema};
use serde::Serialize;
use storefront_events::UserId;
use storefront_events::users::Role;
use uuid::Uuid;

use crate::{domain::Address, store::UserDoc};

/// An account as its owner and admins see it (never a password or a token).
#[derive(Debug, Serialize, JsonSchema)]
pub struct UserView {
    pub id: UserId,
    /// Lower-cased; unique.
    pub email: String,
    /// The display name.
    pub name: String,
    /// `+` and digits (E.164 shape), or `null` when not given.
    pub phone: Option<String>,
    /// `null` when not given.
    pub address: Option<Address>,
    pub role: Role,
    /// A blocked account cannot sign in or refresh.
    pub blocked: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<UserDoc> for UserView {
    fn from(user: UserDoc) -> Self {
        UserView {
            id: user.id,
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
#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionView {
    pub user: UserView,
    /// An EdDSA JWT: send it as `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    #[schemars(extend("const" = "Bearer"))]
    pub token_type: &'static str,
    /// Seconds the access token is valid for.
    pub expires_in: u64,
    /// Opaque; spent by its one use at `POST /api/users/refresh`.
    pub refresh_token: String,
    /// Seconds the refresh token is valid for.
    pub refresh_expires_in: u64,
}

/// Who the access token says the caller is, read from the token alone.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CurrentUserView {
    pub user: TokenUserView,
    /// The session (refresh-token family) the token belongs to.
    pub session_id: Uuid,
    /// When the access token expires, in Unix seconds.
    pub expires_at: i64,
}

/// The user an access token names.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TokenUserView {
    pub id: UserId,
    pub email: String,
    pub role: Role,
}

/// Drops the `"default": null` schemars gives an optional field the handler reads as absent: for
/// a query parameter it is not a valid value, and in a patch absent and `null` differ.
pub fn without_defaults(schema: &mut Schema) {
    if let Some(properties) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        for property in properties.values_mut() {
            if let Some(property) = property.as_object_mut() {
                property.remove("default");
            }
        }
    }
}
