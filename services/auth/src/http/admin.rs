//! `/api/users/admin/*`: list users, block and unblock. Admins only.

use axum::extract::State;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use storefront_events::UserId;
use storefront_kit::{
    Error, Json,
    auth::RequireAdmin,
    error::{Path, Query},
    validate::{Fields, paging, search},
};
use uuid::Uuid;

use super::{
    account::revoke_access,
    views::{self, UserView},
};
use crate::{AppState, store::UserFilter};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "UserListQuery", transform = views::without_defaults)]
pub struct ListQuery {
    /// The page, a whole number from 1 to 1000 (default 1).
    #[serde(default)]
    #[schemars(with = "String")]
    page: Option<String>,
    /// Users per page, a whole number from 1 to 100 (default 20).
    #[serde(default)]
    #[schemars(with = "String")]
    per_page: Option<String>,
    /// Only blocked (`true`) or only unblocked (`false`) users; all without it.
    #[serde(default)]
    #[schemars(with = "bool")]
    blocked: Option<bool>,
    /// Text in the email or name, case-insensitive, matched literally; at most 100 characters.
    #[serde(default)]
    q: Option<String>,
    /// Only these users: ids separated by commas, at most 100 (the admin's order list names
    /// its customers with one request).
    #[serde(default)]
    ids: Option<String>,
}

/// The most ids one `?ids=` may name: a page of the largest size.
const MAX_IDS: usize = 100;

/// `?ids=a,b,c`: each a user id, at most [`MAX_IDS`]; an error on `ids` otherwise.
fn ids(raw: Option<&str>, fields: &mut Fields) -> Option<Vec<Uuid>> {
    let raw = raw?;
    let parsed: Result<Vec<Uuid>, String> = raw
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| {
            Uuid::try_parse(id).map_err(|_| "user ids (UUIDs) separated by commas".to_owned())
        })
        .collect();
    let parsed = parsed.and_then(|ids| {
        if ids.len() > MAX_IDS {
            Err(format!("at most {MAX_IDS} ids"))
        } else {
            Ok(ids)
        }
    });
    fields.check("ids", parsed)
}

/// A page of users, oldest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct UserList {
    items: Vec<UserView>,
    page: u64,
    per_page: u64,
    /// How many users match, on every page.
    total: u64,
}

pub async fn list(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    Query(query): Query<ListQuery>,
) -> Result<Json<UserList>, Error> {
    let mut fields = Fields::default();
    let (page, per_page) = paging(
        query.page.as_deref(),
        query.per_page.as_deref(),
        &mut fields,
    );
    let filter = UserFilter {
        blocked: query.blocked,
        text: search(query.q.as_deref(), &mut fields),
        ids: ids(query.ids.as_deref(), &mut fields),
    };
    fields.finish()?;
    let found = state.store.list_users(page, per_page, &filter).await?;
    Ok(Json(UserList {
        items: found.items.into_iter().map(UserView::from).collect(),
        page,
        per_page,
        total: found.total,
    }))
}

fn user_id(raw: &str) -> Result<UserId, Error> {
    raw.parse()
        .map_err(|_| Error::NotFound(format!("no user {raw:?}")))
}

/// Blocks a user: they cannot sign in or refresh, and every session they have ends now.
pub async fn block(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    Path(id): Path<String>,
) -> Result<Json<UserView>, Error> {
    let id = user_id(&id)?;
    if id == admin.sub {
        return Err(Error::Conflict {
            kind: "cannot-block-self",
            detail: "an admin cannot block their own account".into(),
        });
    }
    let (user, changed) = state
        .store
        .set_blocked(id, true, admin.sub)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no user {id}")))?;
    // Even when already blocked: end any session that might have slipped through.
    for session in state.store.revoke_user_sessions(id).await? {
        revoke_access(&state, &session).await?;
    }
    if changed {
        tracing::info!(user_id = %id, admin = %admin.sub, "user blocked");
    }
    Ok(Json(user.into()))
}

pub async fn unblock(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    Path(id): Path<String>,
) -> Result<Json<UserView>, Error> {
    let id = user_id(&id)?;
    let (user, changed) = state
        .store
        .set_blocked(id, false, admin.sub)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no user {id}")))?;
    if changed {
        tracing::info!(user_id = %id, admin = %admin.sub, "user unblocked");
    }
    Ok(Json(user.into()))
}
