//! The session cookies: HTTP-only, SameSite=Lax, Secure unless the local stack turned it off. The
//! refresh cookie is scoped to `/api/users`, so it only travels to auth.

use axum::http::HeaderValue;
use storefront_kit::auth::{ACCESS_COOKIE, REFRESH_COOKIE};

fn cookie(name: &str, value: &str, path: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .expect("tokens are base64url/JWT, always valid in a header")
}

pub fn session(
    access: &str,
    access_ttl: u64,
    refresh: &str,
    refresh_ttl: u64,
    secure: bool,
) -> [HeaderValue; 2] {
    [
        cookie(ACCESS_COOKIE, access, "/", access_ttl, secure),
        cookie(REFRESH_COOKIE, refresh, "/api/users", refresh_ttl, secure),
    ]
}

pub fn cleared(secure: bool) -> [HeaderValue; 2] {
    [
        cookie(ACCESS_COOKIE, "", "/", 0, secure),
        cookie(REFRESH_COOKIE, "", "/api/users", 0, secure),
    ]
}
