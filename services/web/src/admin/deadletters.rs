//! The consuming services' dead letters: listing, replaying, discarding.

use askama::Template;
use axum::{
    Extension,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};

use super::{PageQuery, PageResult};
use crate::{
    AppState,
    api::{ApiError, CONSUMERS, DeadLetterList},
    pages::{Layout, PageError, admin_token, render, with_status},
    session::Visitor,
};

/// One consuming service's part of the dead-letter page.
struct Group {
    service: &'static str,
    /// Its dead letters, or why they could not be read.
    letters: Result<DeadLetterList, String>,
}

impl Group {
    /// `Products`, `Cart`, …
    fn title(&self) -> String {
        crate::pages::capitalised(self.service)
    }
}

#[derive(Template)]
#[template(path = "admin/dead_letters.html")]
struct DeadLettersPage {
    layout: Layout,
    groups: Vec<Group>,
    /// What was just done, or why it could not be.
    done: Option<String>,
    problem: Option<String>,
}

async fn dead_letters_page(
    state: &AppState,
    visitor: &Visitor,
    token: &str,
    done: Option<String>,
    problem: Option<String>,
) -> Response {
    let groups = futures::future::join_all(CONSUMERS.into_iter().map(|service| async move {
        Group {
            service,
            letters: state
                .api
                .dead_letters(token, service)
                .await
                .map_err(|e| e.to_string()),
        }
    }))
    .await;
    let layout = Layout::of(state, visitor, "Admin · Dead letters").await;
    render(&DeadLettersPage {
        layout,
        groups,
        done,
        problem,
    })
}

/// `GET /admin/dead-letters`: every consumer group's dead letters, with replay and discard.
pub async fn dead_letters(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let token = admin_token(&visitor, "/admin/dead-letters")?;
    let done = match query.saved.as_deref() {
        Some("replay") => Some("Replayed: the event was applied.".to_owned()),
        Some("replay-duplicate") => {
            Some("Replayed: it had been applied already, so nothing changed.".to_owned())
        }
        Some("discard") => Some("Discarded.".to_owned()),
        _ => None,
    };
    Ok(dead_letters_page(&state, &visitor, token, done, None).await)
}

/// `POST /admin/dead-letters/{service}/{id}/{replay|discard}`.
pub async fn handle_dead_letter(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path((service, id, action)): Path<(String, String, String)>,
) -> PageResult {
    let token = admin_token(&visitor, "/admin/dead-letters")?;
    if !CONSUMERS.contains(&service.as_str()) || !["replay", "discard"].contains(&action.as_str()) {
        return Err(PageError::NotFound);
    }
    match state
        .api
        .handle_dead_letter(token, &service, &id, &action)
        .await
    {
        Ok(letter) => {
            let said = match letter.outcome.as_deref() {
                Some("duplicate") => "replay-duplicate",
                _ => action.as_str(),
            };
            Ok(Redirect::to(&format!("/admin/dead-letters?saved={said}")).into_response())
        }
        Err(ApiError::Problem(p)) if p.status == 404 => Err(PageError::NotFound),
        Err(ApiError::Problem(p)) if p.status == 409 => {
            let page = dead_letters_page(&state, &visitor, token, None, Some(p.detail)).await;
            Ok(with_status(page, StatusCode::CONFLICT))
        }
        Err(e) => Err(e.into()),
    }
}
