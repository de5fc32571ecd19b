//! The history: a page of mine (newest first), mark one read, mark all read.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use storefront_kit::{
    Error, Json,
    auth::CurrentUser,
    error::{Path, Query},
};

use crate::{AppState, store::Notification};

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NotificationListQuery")]
pub struct PageQuery {
    /// Only notifications older than this id (the previous page's `next_before`).
    // The schemas (only) say what a client may send: a number, or nothing; not null.
    #[schemars(
        default,
        skip_serializing_if = "Option::is_none",
        with = "i64",
        range(min = 1, max = i64::MAX)
    )]
    before: Option<i64>,
    /// How many, newest first: 1 to 100 (20 when absent).
    #[schemars(
        default,
        skip_serializing_if = "Option::is_none",
        with = "i64",
        range(min = 1, max = MAX_LIMIT),
        extend("default" = DEFAULT_LIMIT)
    )]
    limit: Option<i64>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "NotificationPage")]
pub struct Page {
    /// Newest first.
    items: Vec<Notification>,
    /// Unread notifications in all (for a bell).
    unread: u64,
    /// Pass as `before` for the next page; null on the last.
    next_before: Option<i64>,
}

pub async fn page(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page>, Error> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    if query.before.is_some_and(|b| b < 1) {
        return Err(Error::field(
            "before",
            "must be a notification id (1 or more)",
        ));
    }
    let docs = state.store.page(user.sub, query.before, limit).await?;
    let read = state.store.read_among(user.sub, &docs).await?;
    let unread = state.store.unread(user.sub).await?;
    let next_before = (docs.len() as i64 == limit)
        .then(|| docs.last().map(|d| d.id))
        .flatten();
    Ok(Json(Page {
        items: docs
            .iter()
            .map(|d| Notification::of(d, read.contains(&d.id)))
            .collect(),
        unread,
        next_before,
    }))
}

pub async fn read(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<i64>,
) -> Result<Response, Error> {
    if id < 1 || !state.store.mark_read(user.sub, id).await? {
        return Err(Error::NotFound(format!("you have no notification {id}")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "NotificationsReadAll")]
pub struct ReadAll {
    /// Everything up to this id is read (the newest the user can see; 0 when there is none).
    read_through: i64,
}

pub async fn read_all(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<ReadAll>, Error> {
    let read_through = state.store.mark_all_read(user.sub).await?;
    Ok(Json(ReadAll { read_through }))
}
