//! The users, and blocking one.

use askama::Template;
use axum::{
    Extension,
    extract::{Path, Query, State},
    response::{IntoResponse, Redirect},
};

use super::{PageQuery, PageResult, search_text};
use crate::{
    AppState,
    api::{Page, User},
    pages::{Layout, PageError, Pager, admin_token, render},
    session::Visitor,
};

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    layout: Layout,
    users: Page<User>,
    me: String,
    q: String,
    note: Option<String>,
    pager: Pager,
}

pub async fn users(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let token = admin_token(&visitor, "/admin/users")?;
    let (q, note) = search_text(&query.q);
    let q = q.as_str();
    let users = state.api.users(token, query.page(), q).await?;
    let layout = Layout::of(&state, &visitor, "Admin · Users").await;
    let me = visitor
        .claims
        .as_ref()
        .map(|c| c.sub.to_string())
        .unwrap_or_default();
    let pager = Pager::of("/admin/users", &[("q", q)], &users);
    Ok(render(&UsersPage {
        layout,
        users,
        me,
        q: q.to_owned(),
        note,
        pager,
    }))
}

pub async fn block(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path((id, action)): Path<(String, String)>,
) -> PageResult {
    let token = admin_token(&visitor, "/admin/users")?;
    let blocked = match action.as_str() {
        "block" => true,
        "unblock" => false,
        _ => return Err(PageError::NotFound),
    };
    state.api.set_blocked(token, &id, blocked).await?;
    Ok(Redirect::to("/admin/users").into_response())
}
