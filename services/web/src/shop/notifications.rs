//! A customer's notifications.

use askama::Template;
use axum::{
    Extension,
    extract::State,
    response::{IntoResponse, Redirect},
};

use super::PageResult;
use crate::{
    AppState,
    api::Notification,
    pages::{Layout, render, token},
    session::Visitor,
};

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    layout: Layout,
    items: Vec<Notification>,
}

pub async fn notifications(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
) -> PageResult {
    let token = token(&visitor, "/notifications")?;
    let list = state.api.notifications(token, 50).await?;
    let layout = Layout::of(&state, &visitor, "Notifications").await;
    Ok(render(&NotificationsPage {
        layout,
        items: list.items,
    }))
}

pub async fn read_all(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
) -> PageResult {
    let token = token(&visitor, "/notifications")?;
    state.api.read_all(token).await?;
    Ok(Redirect::to("/notifications").into_response())
}
