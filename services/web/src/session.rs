//! Who is visiting, and the guards every request passes.
//!
//! - The access token lives in the `sf_access` cookie (the same one every service reads, so the
//!   page's socket and API calls are authenticated by it too). The refresh token lives in web's own
//!   `sf_web_refresh` cookie: when the access token has expired, web refreshes it with auth before
//!   rendering, so a visitor stays signed in for the refresh token's 7 days.
//! - CSRF: a random token in the `sf_csrf` cookie (HttpOnly, SameSite=Strict) that every form
//!   repeats in a hidden `csrf` field (a file upload's multipart form too; never in a URL, where it
//!   would reach logs and `Referer`s). A POST whose field does not match, or whose `Origin` is
//!   another site, is refused with 403 before any handler runs. Signing in and out gives a new
//!   token, so one seen before a sign-in is worth nothing after it.

use axum::{
    body::{Body, Bytes, to_bytes},
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::Response,
};
use axum_extra::extract::cookie::CookieJar;
use storefront_kit::{
    Error,
    auth::{ACCESS_COOKIE, Claims},
    config::MAX_UPLOAD_BYTES,
};

use crate::{AppState, api::Session, pages};

pub const REFRESH_COOKIE: &str = "sf_web_refresh";
pub const CSRF_COOKIE: &str = "sf_csrf";

/// The visitor of this request.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub claims: Option<Claims>,
    pub token: Option<String>,
    pub csrf: String,
}

impl Visitor {
    pub fn is_admin(&self) -> bool {
        self.claims.as_ref().is_some_and(Claims::is_admin)
    }
}

/// A `Set-Cookie` value: HttpOnly, path `/`, SameSite Lax (Strict for the CSRF cookie). Token
/// values are base64url/hex/JWT characters only, so they need no quoting.
fn cookie(name: &'static str, value: String, max_age_secs: i64, secure: bool) -> String {
    let same_site = if name == CSRF_COOKIE { "Strict" } else { "Lax" };
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{name}={value}; Path=/; Max-Age={}; HttpOnly; SameSite={same_site}{secure}",
        max_age_secs.max(0)
    )
}

/// The cookies of a new session (sign-in, sign-up, refresh).
pub fn session_cookies(session: &Session, secure: bool) -> Vec<String> {
    vec![
        cookie(
            ACCESS_COOKIE,
            session.access_token.clone(),
            session.expires_in,
            secure,
        ),
        cookie(
            REFRESH_COOKIE,
            session.refresh_token.clone(),
            session.refresh_expires_in,
            secure,
        ),
    ]
}

/// Cookies that end the session in the browser.
pub fn cleared_cookies(secure: bool) -> Vec<String> {
    vec![
        cookie(ACCESS_COOKIE, String::new(), 0, secure),
        cookie(REFRESH_COOKIE, String::new(), 0, secure),
    ]
}

/// Cookies a handler wants set, carried in the response's extensions to the middleware.
#[derive(Clone, Default)]
pub struct SetCookies(pub Vec<String>);

fn new_csrf() -> String {
    uuid::Uuid::new_v4().simple().to_string() + &uuid::Uuid::new_v4().simple().to_string()
}

fn valid_csrf(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a POST's `Origin` (when the browser sent one) is this site.
fn same_origin(request: &Request) -> bool {
    let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    let host = request
        .headers()
        .get("x-forwarded-host")
        .or_else(|| request.headers().get(header::HOST))
        .and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    host.is_some_and(|h| h.eq_ignore_ascii_case(origin_host))
}

/// Uploads read into memory at once (each up to `MAX_UPLOAD_BYTES`).
static UPLOADS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// A new CSRF token's cookie, for the handlers that start or end a session.
pub fn fresh_csrf_cookie(secure: bool) -> String {
    cookie(CSRF_COOKIE, new_csrf(), 7 * 24 * 3600, secure)
}

/// The `csrf` field of a multipart form (the upload form puts it before the file), read from the
/// body already in memory: no size limit but the field's own.
async fn csrf_in_multipart(headers: &header::HeaderMap, bytes: Bytes) -> Option<String> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let boundary = multer::parse_boundary(content_type).ok()?;
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().for_field("csrf", 1024));
    let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(bytes) });
    let mut form = multer::Multipart::with_constraints(stream, boundary, constraints);
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("csrf") {
            return field.text().await.ok();
        }
    }
    None
}

pub async fn middleware(
    State(state): State<AppState>,
    jar: CookieJar,
    request: Request,
    next: Next,
) -> Response {
    let secure = state.config.http.cookie_secure;
    let mut set: Vec<String> = Vec::new();
    let csrf = match jar.get(CSRF_COOKIE).map(|c| c.value().to_owned()) {
        Some(value) if valid_csrf(&value) => value,
        _ => {
            let value = new_csrf();
            set.push(cookie(CSRF_COOKIE, value.clone(), 7 * 24 * 3600, secure));
            value
        }
    };

    let mut request = request;
    // Held until the answer is made: at most two large uploads in memory at once.
    let mut _upload = None;
    if request.method() == Method::POST {
        if !same_origin(&request) {
            return pages::forbidden("This form was sent from another site.");
        }
        let form = form_kind(&request);
        let sent = match form {
            Some(multipart) => {
                // Only the image upload form carries a large body.
                let limit = if multipart && request.uri().path().ends_with("/images") {
                    _upload = Some(UPLOADS.acquire().await);
                    MAX_UPLOAD_BYTES
                } else {
                    state.config.http.max_body_bytes
                };
                let (parts, body) = request.into_parts();
                let Ok(bytes) = to_bytes(body, limit).await else {
                    return pages::status_page(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "Too much",
                        "The form is too large.",
                    );
                };
                let field = if multipart {
                    csrf_in_multipart(&parts.headers, bytes.clone()).await
                } else {
                    serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
                        .ok()
                        .and_then(|f| f.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v))
                };
                request = Request::from_parts(parts, Body::from(bytes));
                field
            }
            None => None,
        };
        if sent.as_deref() != Some(csrf.as_str()) {
            return pages::forbidden(
                "This form has expired or did not come from this site. Go back, reload the page and try again.",
            );
        }
    }

    let (claims, token) = identify(&state, &jar, &mut set).await;
    let visitor = Visitor {
        claims,
        token,
        csrf,
    };
    request.extensions_mut().insert(visitor.clone());
    let response = next.run(request).await;
    let mut response = pages::with_layout(&state, &visitor, response).await;
    if let Some(SetCookies(more)) = response.extensions_mut().remove::<SetCookies>() {
        set.extend(more);
    }
    for cookie in set {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// A form's body: `Some(false)` urlencoded, `Some(true)` multipart, `None` anything else.
fn form_kind(request: &Request) -> Option<bool> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())?
        .to_ascii_lowercase();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        Some(false)
    } else if content_type.starts_with("multipart/form-data") {
        Some(true)
    } else {
        None
    }
}

/// The visitor's claims and token: the access cookie if it is valid, else a refresh.
async fn identify(
    state: &AppState,
    jar: &CookieJar,
    set: &mut Vec<String>,
) -> (Option<Claims>, Option<String>) {
    let secure = state.config.http.cookie_secure;
    if let Some(token) = jar.get(ACCESS_COOKIE).map(|c| c.value().to_owned())
        && !token.is_empty()
    {
        match state.authenticator.verify(&token).await {
            Ok(claims) => return (Some(claims), Some(token)),
            Err(Error::Unauthorized { kind, .. }) if kind != "token-expired" => {
                // Revoked or invalid: the session is over.
                set.extend(cleared_cookies(secure));
                return (None, None);
            }
            Err(_) => {}
        }
    }
    let Some(refresh) = jar
        .get(REFRESH_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|r| !r.is_empty())
    else {
        return (None, None);
    };
    match state.api.refresh(&refresh).await {
        Ok(session) => match state.authenticator.verify(&session.access_token).await {
            Ok(claims) => {
                set.extend(session_cookies(&session, secure));
                (Some(claims), Some(session.access_token))
            }
            Err(_) => (None, None),
        },
        Err(e) if e.status() == 401 || e.status() == 403 => {
            set.extend(cleared_cookies(secure));
            (None, None)
        }
        Err(_) => (None, None),
    }
}
