//! The dead-letter routes a consuming service mounts, and their OpenAPI operations.

use std::sync::Arc;

use axum::{
    Router,
    extract::{FromRef, State},
    routing::{get, post},
};

use super::{DeadLetterList, DeadLetterView, DeadLetters};
use crate::{
    Error, Json,
    auth::{Authenticator, RequireAdmin},
    error::Path,
    openapi::Api,
};

#[derive(Clone)]
struct RouteState {
    dead_letters: DeadLetters,
    authenticator: Arc<Authenticator>,
}

impl FromRef<RouteState> for Arc<Authenticator> {
    fn from_ref(state: &RouteState) -> Self {
        state.authenticator.clone()
    }
}

async fn list(
    State(state): State<RouteState>,
    RequireAdmin(_): RequireAdmin,
) -> Result<Json<DeadLetterList>, Error> {
    Ok(Json(state.dead_letters.list().await?))
}

/// `POST …/{id}/replay` and `…/{id}/discard`.
async fn decide(
    State(state): State<RouteState>,
    RequireAdmin(admin): RequireAdmin,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<DeadLetterView>, Error> {
    let admin = admin.sub.to_string();
    let letters = &state.dead_letters;
    Ok(Json(match action.as_str() {
        "replay" => letters.replay(&id, &admin).await?,
        "discard" => letters.discard(&id, &admin).await?,
        _ => {
            return Err(Error::NotFound(format!(
                "no action {action:?}: replay or discard"
            )));
        }
    }))
}

/// The dead-letter routes under `/api/{prefix}/admin/dead-letters`, to merge into a service's
/// router. A service that does not consume (`CONSUME_EVENTS=false`) has none to mount.
pub fn routes(
    prefix: &str,
    dead_letters: DeadLetters,
    authenticator: Arc<Authenticator>,
) -> Router {
    let base = format!("/api/{prefix}/admin/dead-letters");
    Router::new()
        .route(&base, get(list))
        .route(&format!("{base}/{{id}}/{{action}}"), post(decide))
        .with_state(RouteState {
            dead_letters,
            authenticator,
        })
}

/// `routes` with the dead-letter routes of `consumer`'s group under `/api/{prefix}/`, when the
/// service consumes at all.
pub fn mount<H: crate::kafka::EventHandler>(
    routes: Router,
    prefix: &str,
    consumer: Option<&crate::kafka::ConsumerRunner<H>>,
    authenticator: &Arc<Authenticator>,
) -> Router {
    match consumer {
        Some(consumer) => routes.merge(self::routes(
            prefix,
            consumer.dead_letters(),
            authenticator.clone(),
        )),
        None => routes,
    }
}

/// The dead-letter operations in a service's OpenAPI document.
pub fn document(api: &mut Api, prefix: &str) {
    let base = format!("/api/{prefix}/admin/dead-letters");
    api.operation(
        "GET",
        &base,
        &format!("list{}DeadLetters", capitalised(prefix)),
        "Dead letters (admin)",
        |op| {
            op.admin()
                .describe(
                    "The events this service's consumer group could not apply after its last \
                     attempt, newest first, each with the error and whether an admin replayed \
                     or discarded it (docs/events/README.md, \"Dead letters\").",
                )
                .problem(403, "Not an administrator (`admin-only`).")
                .problem(
                    404,
                    "This replica does not consume events (`CONSUME_EVENTS=false`): it has no \
                     dead letters to show.",
                )
                .ok::<DeadLetterList>(200, "The group's dead letters");
        },
    )
    .operation(
        "POST",
        &format!("{base}/{{id}}/replay"),
        &format!("replay{}DeadLetter", capitalised(prefix)),
        "Apply a dead letter again (admin)",
        |op| {
            op.admin()
                .describe(
                    "Runs the group's handler on the event again, as its consumer would (once \
                     in effect), and records the replay. No body.",
                )
                .path("id", "The dead letter: `{topic}:{partition}:{offset}`")
                .ok::<DeadLetterView>(200, "Replayed")
                .problem(403, "Not an administrator (`admin-only`).")
                .problem(404, "No such dead letter in this service.")
                .problem(
                    409,
                    "Replayed, being replayed or discarded already (`already-handled`), not an \
                     event (`not-replayable`), or the handler failed again (`replay-failed`, \
                     with its error).",
                );
        },
    )
    .operation(
        "POST",
        &format!("{base}/{{id}}/discard"),
        &format!("discard{}DeadLetter", capitalised(prefix)),
        "Leave a dead letter alone for good (admin)",
        |op| {
            op.admin()
                .describe("Records that the event is not to be applied. No body.")
                .path("id", "The dead letter: `{topic}:{partition}:{offset}`")
                .ok::<DeadLetterView>(200, "Discarded")
                .problem(403, "Not an administrator (`admin-only`).")
                .problem(404, "No such dead letter in this service.")
                .problem(
                    409,
                    "Replayed, being replayed or discarded already (`already-handled`).",
                );
        },
    );
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_name_the_service() {
        assert_eq!(capitalised("orders"), "Orders");
        assert_eq!(capitalised(""), "");
    }
}
