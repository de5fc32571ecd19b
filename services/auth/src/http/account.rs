//! Sign up, sign in, refresh, sign out, who am I, and the public keys.

use std::net::IpAddr;

use axum::{
    body::Bytes,
    extract::{FromRequestParts, State},
    http::{HeaderMap, Method, StatusCode, header, request::Parts},
    response::{AppendHeaders, IntoResponse},
};
use axum_extra::extract::CookieJar;
use chrono::Utc;
use schemars::JsonSchema;
use serde::Deserialize;
use storefront_events::users::Role;
use storefront_kit::{
    Error, Json,
    auth::{CurrentUser, REFRESH_COOKIE, check_cookie_write},
    server::client_ip,
};
use uuid::Uuid;

use super::{
    cookies,
    views::{CurrentUserView, SessionView, TokenUserView, UserView},
};
use crate::{
    AppState,
    domain::{DisplayName, Email, Fields, Password},
    keys::{TokenSubject, new_refresh_token, refresh_token_hash},
    passwords,
    store::{RefreshLookup, SessionDoc, UserDoc},
};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// Case-insensitive; one account per address.
    email: String,
    /// 10 to 128 characters: letters and at least one digit or symbol, not the email.
    password: String,
    /// The display name: 1 to 100 characters.
    name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SigninRequest {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The `refresh_token` of the last session answer.
    refresh_token: String,
}

/// The client's address, for per-address rate limits.
pub struct ClientIp(IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        client_ip(parts, state.trust_proxy_headers)
            .map(ClientIp)
            .ok_or_else(|| Error::BadRequest("cannot tell the client's address".into()))
    }
}

/// Signs `user` in: a new session, its tokens in the body and as cookies.
pub(crate) async fn issue_session(
    state: &AppState,
    user: UserDoc,
    status: StatusCode,
) -> Result<impl IntoResponse + use<>, Error> {
    let now = Utc::now();
    let sid = Uuid::new_v4();
    let (access, claims) = state
        .keys
        .access_token(&subject(&user), sid, now, state.access_ttl);
    let refresh = new_refresh_token();
    let expires_at = now + state.refresh_ttl;
    state
        .store
        .start_session(
            &SessionDoc {
                id: sid.to_string(),
                user_id: user.id.to_string(),
                revoked: false,
                access_jti: claims.jti.to_string(),
                access_exp: claims.exp,
                created_at: bson::DateTime::from_millis(now.timestamp_millis()),
                expires_at: bson::DateTime::from_millis(expires_at.timestamp_millis()),
            },
            &refresh_token_hash(&refresh),
        )
        .await?;
    Ok(session_response(
        state,
        status,
        user.into(),
        access,
        refresh,
    ))
}

fn session_response(
    state: &AppState,
    status: StatusCode,
    user: UserView,
    access: String,
    refresh: String,
) -> impl IntoResponse + use<> {
    let access_ttl = state.access_ttl.num_seconds() as u64;
    let refresh_ttl = state.refresh_ttl.num_seconds() as u64;
    let [a, r] = cookies::session(
        &access,
        access_ttl,
        &refresh,
        refresh_ttl,
        state.cookie_secure,
    );
    (
        status,
        AppendHeaders([(header::SET_COOKIE, a), (header::SET_COOKIE, r)]),
        Json(SessionView {
            user,
            access_token: access,
            token_type: "Bearer",
            expires_in: access_ttl,
            refresh_token: refresh,
            refresh_expires_in: refresh_ttl,
        }),
    )
}

fn subject(user: &UserDoc) -> TokenSubject {
    TokenSubject {
        id: user.id,
        email: user.email.clone(),
        role: user.role,
    }
}

fn blocked() -> Error {
    Error::Forbidden {
        kind: "account-blocked",
        detail: "this account is blocked; contact support".into(),
    }
}

/// `POST /api/users/signup`: 201 with a session; 409 when the email is taken.
pub async fn signup(
    State(state): State<AppState>,
    Json(req): Json<SignupRequest>,
) -> Result<impl IntoResponse, Error> {
    let mut fields = Fields::default();
    let email = fields.check("email", Email::parse(&req.email));
    let password = fields.check("password", Password::parse(&req.password, email.as_ref()));
    let name = fields.check("name", DisplayName::parse(&req.name));
    fields.finish()?;
    let (Some(email), Some(password), Some(name)) = (email, password, name) else {
        unreachable!("finish() returned Ok, so every field parsed");
    };
    let user = crate::new_user(email, name, Role::Customer, password).await?;
    state.store.create_user(&user).await?;
    tracing::info!(user_id = %user.id, "user signed up");
    issue_session(&state, user, StatusCode::CREATED).await
}

/// `POST /api/users/signin`: 200 with a session; 401 for any wrong email/password pair (never
/// which), 403 when blocked, 429 over the rate limits.
pub async fn signin(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(req): Json<SigninRequest>,
) -> Result<impl IntoResponse, Error> {
    state.limiter.attempt_from(ip).await?;
    let wrong = || Error::Unauthorized {
        kind: "invalid-credentials",
        detail: "wrong email or password".into(),
    };
    let Ok(email) = Email::parse(&req.email) else {
        return Err(wrong());
    };
    state.limiter.check_email(email.as_str()).await?;
    let user = state.store.user_by_email(email.as_str()).await?;
    let matches =
        passwords::verify(req.password, user.as_ref().map(|u| u.password_hash.clone())).await?;
    let Some(user) = user.filter(|_| matches) else {
        state.limiter.failed(email.as_str()).await?;
        return Err(wrong());
    };
    state.limiter.succeeded(email.as_str()).await?;
    if user.blocked {
        return Err(blocked());
    }
    issue_session(&state, user, StatusCode::OK).await
}

/// `POST /api/users/refresh`: rotates the refresh token (cookie, or `{"refresh_token"}`); a spent
/// token used again revokes its whole session.
pub async fn refresh(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    jar: CookieJar,
    body: Bytes,
) -> Result<impl IntoResponse, Error> {
    let token = if body.is_empty() {
        let token = jar
            .get(REFRESH_COOKIE)
            .map(|c| c.value().to_owned())
            .ok_or_else(|| {
                Error::unauthenticated("no refresh token in the body or the sf_refresh cookie")
            })?;
        check_cookie_write(&method, &headers)?;
        token
    } else {
        serde_json::from_slice::<RefreshRequest>(&body)
            .map_err(|e| Error::BadRequest(format!("invalid body: {e}")))?
            .refresh_token
    };
    match state
        .store
        .spend_refresh_token(&refresh_token_hash(&token))
        .await?
    {
        RefreshLookup::Invalid => Err(Error::Unauthorized {
            kind: "invalid-refresh-token",
            detail: "the refresh token is unknown, expired or its session ended; sign in again"
                .into(),
        }),
        RefreshLookup::Reused { session } => {
            if let Some(session) = session {
                revoke_access(&state, &session).await?;
                tracing::warn!(session_id = %session.id, user_id = %session.user_id, "refresh token reused: session revoked");
            }
            Err(Error::Unauthorized {
                kind: "refresh-token-reused",
                detail:
                    "this refresh token was already used; the session has been ended, sign in again"
                        .into(),
            })
        }
        RefreshLookup::Fresh { session, user } => {
            if user.blocked {
                state.store.revoke_session(&session.id).await?;
                return Err(blocked());
            }
            let now = Utc::now();
            let sid = session.id.parse().map_err(Error::internal)?;
            let (access, claims) =
                state
                    .keys
                    .access_token(&subject(&user), sid, now, state.access_ttl);
            let refresh = new_refresh_token();
            state
                .store
                .rotate(
                    &session.id,
                    &refresh_token_hash(&refresh),
                    &user.id.to_string(),
                    claims.jti,
                    claims.exp,
                    now + state.refresh_ttl,
                )
                .await?;
            Ok(session_response(
                &state,
                StatusCode::OK,
                (*user).into(),
                access,
                refresh,
            ))
        }
    }
}

pub(crate) async fn revoke_access(state: &AppState, session: &SessionDoc) -> Result<(), Error> {
    if let Ok(jti) = session.access_jti.parse()
        && session.access_exp > Utc::now().timestamp()
    {
        state
            .authenticator
            .revocations()
            .revoke(jti, session.access_exp)
            .await?;
    }
    Ok(())
}

/// `POST /api/users/signout`: revokes this access token and ends its session; clears cookies.
pub async fn signout(
    State(state): State<AppState>,
    CurrentUser(claims): CurrentUser,
) -> Result<impl IntoResponse, Error> {
    state
        .authenticator
        .revocations()
        .revoke(claims.jti, claims.exp)
        .await?;
    state.store.revoke_session(&claims.sid.to_string()).await?;
    let [a, r] = cookies::cleared(state.cookie_secure);
    Ok((
        StatusCode::NO_CONTENT,
        AppendHeaders([(header::SET_COOKIE, a), (header::SET_COOKIE, r)]),
    ))
}

/// `GET /api/users/currentuser`: who the token says you are (no database read).
pub async fn current_user(CurrentUser(claims): CurrentUser) -> Json<CurrentUserView> {
    Json(CurrentUserView {
        user: TokenUserView {
            id: claims.sub,
            email: claims.email,
            role: claims.role,
        },
        session_id: claims.sid,
        expires_at: claims.exp,
    })
}

/// `GET /api/users/.well-known/jwks.json`: the public keys every service verifies tokens with.
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.keys.jwks()),
    )
}
