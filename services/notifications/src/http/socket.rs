//! `GET /ws/notifications[?after=ID]`: the live feed of the signed-in user.
//!
//! The socket is authenticated before the upgrade, by the same access token as HTTP: the
//! `sf_access` cookie (browsers), `Authorization: Bearer` (API clients), or the subprotocols
//! `bearer, <token>` (browser code that holds a token: `new WebSocket(url, ["bearer", token])`).
//! A socket opened with the cookie must come from an allowed origin, so another site cannot open
//! one in a visitor's name. The user is the token's subject — nothing the client says.
//!
//! Messages to the client are JSON text:
//! - `{"type":"hello","unread":N,"latest_id":ID}` first;
//! - `{"type":"notification","notification":{…}}` for each notification, first the ones after
//!   `after` (oldest first, at most `WS_BACKLOG_MAX`), then live ones;
//! - `{"type":"cart","count":N,"version":V}` right after the hello (the count cart announced
//!   last, when it did within a day) and whenever the user's cart changes (a line added in
//!   another tab, an order's lines put back): the item count for the cart badge; keep the
//!   highest `version`.
//!
//! The server pings every `WS_PING_SECS` and drops a socket that did not answer the last ping; at
//! each ping the token is checked again, and a revoked or expired one closes the socket with
//! 4001. A client too slow to keep up is closed with 1013 and should reconnect with `after`.

use std::{future::Future, time::Duration};

use axum::{
    extract::{
        State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket, rejection::WebSocketUpgradeRejection},
    },
    http::{HeaderMap, header, request::Parts},
    response::Response,
};
use serde::Deserialize;
use serde_json::json;
use storefront_kit::{
    Error,
    auth::{Claims, access_token},
    error::Query,
};

use tokio::sync::mpsc;

use crate::{
    AppState,
    hub::{Frame, Registration},
    store::Notification,
};

/// Close code: the token was revoked or expired (an application code, 4000–4999).
pub const CLOSE_UNAUTHORIZED: u16 = 4001;
/// Close code: the client fell too far behind ("try again later").
pub const CLOSE_TOO_SLOW: u16 = 1013;
/// How long one send to a client may take before the socket counts as dead.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const BACKLOG_PAGE: i64 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectQuery {
    /// The last notification id the client saw; what came after it is sent first.
    after: Option<i64>,
}

/// Where the token came from: the cookie needs an origin check, the others do not (a page on
/// another site cannot read them).
enum Credential {
    Protocol(String),
    Header(String),
    Cookie(String),
}

fn credential(parts: &Parts) -> Option<Credential> {
    if let Some(offered) = parts
        .headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
    {
        let mut protocols = offered.split(',').map(str::trim);
        while let Some(protocol) = protocols.next() {
            if protocol.eq_ignore_ascii_case("bearer") {
                return protocols
                    .next()
                    .filter(|t| !t.is_empty())
                    .map(|t| Credential::Protocol(t.to_owned()));
            }
        }
    }
    let from_header = parts.headers.contains_key(header::AUTHORIZATION);
    access_token(parts).map(|token| {
        if from_header {
            Credential::Header(token)
        } else {
            Credential::Cookie(token)
        }
    })
}

/// A cookie-authenticated socket must come from this host or an allowed origin.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        // Not a browser: it had to have the cookie itself.
        return true;
    };
    if allowed.iter().any(|a| a == origin) {
        return true;
    }
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin);
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok());
    host.is_some_and(|host| host.eq_ignore_ascii_case(origin_host))
}

pub async fn connect(
    State(state): State<AppState>,
    Query(query): Query<ConnectQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    parts: Parts,
) -> Result<Response, Error> {
    let credential = credential(&parts).ok_or_else(|| {
        Error::unauthenticated(
            "sign in first: no access token in the sf_access cookie, the Authorization header or the `bearer, <token>` subprotocols",
        )
    })?;
    let (token, by_protocol) = match credential {
        Credential::Protocol(token) => (token, true),
        Credential::Header(token) => (token, false),
        Credential::Cookie(token) => {
            if !origin_allowed(&parts.headers, &state.allowed_origins) {
                return Err(Error::Forbidden {
                    kind: "origin-not-allowed",
                    detail: "this origin may not open a socket with the session cookie".into(),
                });
            }
            (token, false)
        }
    };
    let claims = state.authenticator.verify(&token).await?;
    if query.after.is_some_and(|a| a < 0) {
        return Err(Error::field(
            "after",
            "must be a notification id (0 or more)",
        ));
    }
    let upgrade = upgrade.map_err(|rejection| {
        Error::BadRequest(format!(
            "this endpoint speaks WebSocket only: {}",
            rejection.body_text()
        ))
    })?;
    let registration = state.hub.register(claims.sub).map_err(|e| {
        tracing::info!(user = %claims.sub, "{e}");
        Error::RateLimited {
            retry_after: Duration::from_secs(5),
        }
    })?;
    let upgrade = if by_protocol {
        upgrade.protocols(["bearer"])
    } else {
        upgrade
    };
    // Clients only answer pings: small buffers keep 10,000 idle sockets cheap (tungstenite's
    // default is 128 KiB of read buffer per socket).
    Ok(upgrade
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .max_message_size(4096)
        .max_frame_size(4096)
        .on_upgrade(move |socket| session(socket, state, claims, registration, query.after)))
}

pub(super) async fn send(socket: &mut WebSocket, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await,
        Ok(Ok(()))
    )
}

pub(super) async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let _ = send(
        socket,
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })),
    )
    .await;
}

/// Why the token no longer holds, if it does not.
async fn still_valid(state: &AppState, claims: &Claims) -> Result<(), &'static str> {
    if chrono::Utc::now().timestamp() >= claims.exp {
        return Err("the access token expired; reconnect with a fresh one");
    }
    match state
        .authenticator
        .revocations()
        .is_revoked(claims.jti)
        .await
    {
        Ok(true) => Err("the access token was revoked"),
        // Redis blinked: keep the socket; the next ping checks again.
        Ok(false) | Err(_) => Ok(()),
    }
}

/// The notifications after `after`, oldest first, as frames (with this user's read marks).
async fn backlog(state: &AppState, claims: &Claims, after: i64) -> Result<Vec<Frame>, Error> {
    let mut frames = Vec::new();
    let mut cursor = after;
    let max = state.sockets.backlog_max;
    while frames.len() < max {
        let want = BACKLOG_PAGE.min((max - frames.len()) as i64);
        let docs = state.store.since(claims.sub, cursor, want).await?;
        let read = state.store.read_among(claims.sub, &docs).await?;
        for doc in &docs {
            frames.push(Frame::of(&Notification::of(doc, read.contains(&doc.id))));
        }
        match docs.last() {
            Some(last) if docs.len() as i64 == want => cursor = last.id,
            _ => break,
        }
    }
    Ok(frames)
}

async fn session(
    mut socket: WebSocket,
    state: AppState,
    claims: Claims,
    mut registration: Registration,
    after: Option<i64>,
) {
    let user = claims.sub;
    // Registered before the backlog is read: anything committed from here on arrives live, and
    // what arrives live that the backlog already sent is skipped by id.
    let hello = async {
        let unread = state.store.unread(user).await?;
        let latest = state.store.latest(user).await?;
        let backlog = match after {
            Some(after) => backlog(&state, &claims, after).await?,
            None => Vec::new(),
        };
        Ok::<_, Error>((unread, latest, backlog))
    };
    let (unread, latest, backlog) = match hello.await {
        Ok(hello) => hello,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the user's notifications; closing the socket");
            close(
                &mut socket,
                1011,
                "notifications are unavailable; try again",
            )
            .await;
            return;
        }
    };
    let hello = json!({ "type": "hello", "unread": unread, "latest_id": latest }).to_string();
    if !send(&mut socket, Message::Text(hello.into())).await {
        return;
    }
    if let Some(cart) = state.hub.latest_cart(user).await
        && !send(&mut socket, Message::Text(cart.text)).await
    {
        return;
    }
    let replayed_through = backlog.last().map(|f| f.id);
    for frame in backlog {
        if !send(&mut socket, Message::Text(frame.text)).await {
            return;
        }
    }
    keep(
        &mut socket,
        &mut registration.frames,
        state.sockets.ping_interval,
        "fell behind; reconnect with ?after=<last id>",
        // Live news that is not a notification (a cart's count, id 0) is never a replay.
        |frame| frame.id > 0 && replayed_through.is_some_and(|through| frame.id <= through),
        || async {
            still_valid(&state, &claims)
                .await
                .map_err(|reason| (CLOSE_UNAUTHORIZED, reason))
        },
    )
    .await;
}

/// What a socket's loop hears at each ping: go on, or close with this code and reason.
pub(super) type Verdict = Result<(), (u16, &'static str)>;

/// Keeps `socket` open for `frames`: sends each one (unless `skip` says it was sent already),
/// pings every `every` and drops a socket that did not answer the last ping, asks `at_ping`
/// whether to go on, and closes with 1013 (`behind`) when the hub dropped it for falling behind.
/// Messages from the client other than pongs and a close are ignored.
pub(super) async fn keep<F: Future<Output = Verdict>>(
    socket: &mut WebSocket,
    frames: &mut mpsc::Receiver<Frame>,
    every: Duration,
    behind: &str,
    skip: impl Fn(&Frame) -> bool,
    at_ping: impl Fn() -> F,
) {
    let mut ping = tokio::time::interval(every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut awaiting_pong = false;
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(frame) => {
                    if skip(&frame) {
                        continue;
                    }
                    if !send(socket, Message::Text(frame.text)).await {
                        return;
                    }
                }
                None => {
                    close(socket, CLOSE_TOO_SLOW, behind).await;
                    return;
                }
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Pong(_))) => awaiting_pong = false,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                // Pings are answered by the WebSocket layer; nothing else is expected.
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if awaiting_pong {
                    tracing::debug!("no pong; dropping the socket");
                    return;
                }
                if let Err((code, reason)) = at_ping().await {
                    close(socket, code, reason).await;
                    return;
                }
                if !send(socket, Message::Ping(Default::default())).await {
                    return;
                }
                awaiting_pong = true;
            }
        }
    }
}
