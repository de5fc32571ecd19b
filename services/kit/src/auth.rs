//! Who is calling: access tokens verified against auth's public keys, and the revocation list.
//!
//! auth signs short-lived EdDSA access tokens; every other service verifies them with the public
//! keys auth publishes at `/api/users/.well-known/jwks.json` — no shared secret. Keys are cached and
//! fetched again when a token names a `kid` we do not know (key rotation), at most once per
//! [`JWKS_MIN_REFRESH`] so garbage `kid`s cannot make us hammer auth.
//!
//! Signout and blocking put a token's `jti` into Redis until the token would expire anyway; every
//! check consults that list. If Redis does not answer, we fail closed (503): a revoked token must
//! never pass because a dependency blinked.
//!
//! Handlers never parse tokens: they take [`CurrentUser`] or [`RequireAdmin`] as an argument; the
//! token comes from `Authorization: Bearer …` (API clients) or the `sf_access` cookie (browsers).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::{FromRef, FromRequestParts, OptionalFromRequestParts},
    http::{HeaderMap, Method, header, request::Parts},
};
use axum_extra::extract::CookieJar;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind, jwk::JwkSet};
use redis::{AsyncCommands, aio::ConnectionManager};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};
use uuid::Uuid;

pub use storefront_events::{UserId, users::Role};

use crate::Error;

/// The cookie carrying the access token for browsers.
pub const ACCESS_COOKIE: &str = "sf_access";
/// The cookie carrying the refresh token (path-scoped to `/api/users`).
pub const REFRESH_COOKIE: &str = "sf_refresh";
/// The `iss` of every access token.
pub const ISSUER: &str = "storefront-auth";
/// Unknown `kid`s trigger a JWKS fetch at most this often.
pub const JWKS_MIN_REFRESH: Duration = Duration::from_secs(10);
/// Clock skew tolerated on `exp`/`iat`.
const LEEWAY_SECS: u64 = 5;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user id.
    pub sub: UserId,
    pub email: String,
    pub role: Role,
    /// This token's id: what revocation lists.
    pub jti: Uuid,
    /// The session (refresh-token family) this token belongs to.
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
}

impl Claims {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// The revocation list in Redis, namespaced per shop (`{namespace}:revoked:{jti}`).
#[derive(Clone)]
pub struct Revocations {
    redis: ConnectionManager,
    namespace: String,
}

impl Revocations {
    pub async fn connect(redis_url: &str, namespace: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(redis_url)?;
        let redis = client.get_connection_manager().await?;
        Ok(Revocations {
            redis,
            namespace: namespace.to_owned(),
        })
    }

    /// A handle on the same connection, for other Redis work of the service.
    pub fn redis(&self) -> ConnectionManager {
        self.redis.clone()
    }

    fn key(&self, jti: Uuid) -> String {
        format!("{}:revoked:{jti}", self.namespace)
    }

    /// Revokes `jti` until `expires_at` (unix seconds) plus the leeway; after that the token is
    /// dead anyway and the entry disappears by itself.
    pub async fn revoke(&self, jti: Uuid, expires_at: i64) -> Result<(), Error> {
        let ttl = (expires_at - chrono::Utc::now().timestamp() + LEEWAY_SECS as i64).max(1) as u64;
        let key = self.key(jti);
        let mut redis = self.redis.clone();
        let first: Result<(), _> = redis.set_ex(&key, 1u8, ttl).await;
        if first.is_err() {
            // The first command after a dropped connection fails once; the manager reconnects.
            let _: () = redis
                .set_ex(&key, 1u8, ttl)
                .await
                .map_err(|e| Error::Unavailable(format!("revocation list unreachable: {e}")))?;
        }
        Ok(())
    }

    pub async fn is_revoked(&self, jti: Uuid) -> Result<bool, Error> {
        let key = self.key(jti);
        let mut redis = self.redis.clone();
        match redis.exists::<_, bool>(&key).await {
            Ok(revoked) => Ok(revoked),
            Err(_) => redis
                .exists::<_, bool>(&key)
                .await
                .map_err(|e| Error::Unavailable(format!("revocation list unreachable: {e}"))),
        }
    }

    pub async fn ping(&self) -> Result<(), String> {
        let mut redis = self.redis.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut redis)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

enum Keys {
    /// Keys known up front (auth verifying its own tokens).
    Static(HashMap<String, DecodingKey>),
    /// Keys fetched from auth's JWKS endpoint.
    Jwks {
        url: String,
        client: reqwest::Client,
        cache: RwLock<Arc<HashMap<String, DecodingKey>>>,
        last_fetch: Mutex<Option<Instant>>,
    },
}

/// Verifies access tokens: signature, issuer, expiry, revocation.
pub struct Authenticator {
    keys: Keys,
    revocations: Revocations,
    validation: Validation,
}

impl Authenticator {
    fn validation() -> Validation {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation
    }

    /// The verifier of every service but auth: auth's public keys from `jwks_url`, the
    /// revocation list in the Redis at `redis_url` under the shop's `namespace`.
    pub async fn connect(
        jwks_url: &str,
        redis_url: &str,
        namespace: &str,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let revocations = Revocations::connect(redis_url, namespace).await?;
        Ok(Arc::new(Authenticator::from_jwks(jwks_url, revocations)))
    }

    /// For every service but auth: keys from auth's JWKS at `jwks_url`.
    pub fn from_jwks(jwks_url: &str, revocations: Revocations) -> Self {
        Authenticator {
            keys: Keys::Jwks {
                url: jwks_url.to_owned(),
                client: crate::server::http_client(Duration::from_secs(5)),
                cache: RwLock::new(Arc::default()),
                last_fetch: Mutex::new(None),
            },
            revocations,
            validation: Self::validation(),
        }
    }

    /// For auth itself: its own public keys by `kid`.
    pub fn from_keys(keys: HashMap<String, DecodingKey>, revocations: Revocations) -> Self {
        Authenticator {
            keys: Keys::Static(keys),
            revocations,
            validation: Self::validation(),
        }
    }

    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// The claims of a valid, unrevoked token.
    pub async fn verify(&self, token: &str) -> Result<Claims, Error> {
        let claims = self.verify_signature(token).await?;
        if self.revocations.is_revoked(claims.jti).await? {
            return Err(Error::Unauthorized {
                kind: "token-revoked",
                detail: "the access token has been revoked; sign in again".into(),
            });
        }
        Ok(claims)
    }

    /// The claims of a token signed by auth and not expired, without asking the revocation list:
    /// only for what a revoked token could not misuse (products telling an admin's read from a
    /// customer's, so as not to count it as a view), where a Redis round trip would cost more
    /// than the answer is worth. Anything that grants access uses [`Authenticator::verify`].
    pub async fn verify_signature(&self, token: &str) -> Result<Claims, Error> {
        let invalid = |detail: &str| Error::Unauthorized {
            kind: "invalid-token",
            detail: detail.to_owned(),
        };
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("the access token is malformed"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(invalid("the access token is not signed with EdDSA"));
        }
        let kid = header
            .kid
            .ok_or_else(|| invalid("the access token names no key id"))?;
        let key = self
            .key(&kid)
            .await?
            .ok_or_else(|| invalid("the access token is signed with an unknown key"))?;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(|e| {
            match e.kind() {
                ErrorKind::ExpiredSignature => Error::Unauthorized {
                    kind: "token-expired",
                    detail: "the access token has expired; refresh it".into(),
                },
                _ => invalid("the access token is invalid"),
            }
        })?;
        Ok(data.claims)
    }

    async fn key(&self, kid: &str) -> Result<Option<DecodingKey>, Error> {
        match &self.keys {
            Keys::Static(keys) => Ok(keys.get(kid).cloned()),
            Keys::Jwks {
                url,
                client,
                cache,
                last_fetch,
            } => {
                if let Some(key) = cache.read().await.get(kid) {
                    return Ok(Some(key.clone()));
                }
                let mut last = last_fetch.lock().await;
                // Another request may have refreshed while we waited for the lock.
                if let Some(key) = cache.read().await.get(kid) {
                    return Ok(Some(key.clone()));
                }
                if last.is_some_and(|at| at.elapsed() < JWKS_MIN_REFRESH) {
                    return Ok(None);
                }
                let fetched = fetch_jwks(client, url).await;
                *last = Some(Instant::now());
                let keys = match fetched {
                    Ok(keys) => keys,
                    Err(e) if cache.read().await.is_empty() => {
                        return Err(Error::Unavailable(format!(
                            "cannot fetch JWKS from {url}: {e}"
                        )));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "JWKS refresh failed; keeping cached keys");
                        return Ok(None);
                    }
                };
                let found = keys.get(kid).cloned();
                *cache.write().await = Arc::new(keys);
                Ok(found)
            }
        }
    }
}

async fn fetch_jwks(
    client: &reqwest::Client,
    url: &str,
) -> Result<HashMap<String, DecodingKey>, String> {
    let set: JwkSet = client
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    Ok(set
        .keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
        })
        .collect())
}

/// The raw access token of a request: `Authorization: Bearer …` first, else the cookie.
pub fn access_token(parts: &Parts) -> Option<String> {
    token_and_source(parts).map(|(token, _)| token)
}

/// The access token and whether it came from the cookie (`true`) or the header.
fn token_and_source(parts: &Parts) -> Option<(String, bool)> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION)
        && let Ok(value) = value.to_str()
        && let Some((scheme, token)) = value.split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
    {
        return Some((token.trim().to_owned(), false));
    }
    CookieJar::from_headers(&parts.headers)
        .get(ACCESS_COOKIE)
        .map(|c| (c.value().to_owned(), true))
}

/// Other origins whose pages may write with the cookie: the `CORS_ALLOWED_ORIGINS` of the services
/// in this process (`server::build` adds them), which browsers already let read the answers.
static TRUSTED_ORIGINS: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Adds `origins` (such as `https://admin.example.com`) to those [`check_cookie_write`] accepts.
pub fn trust_origins(origins: &[String]) {
    let mut trusted = TRUSTED_ORIGINS.write().unwrap_or_else(|e| e.into_inner());
    for origin in origins {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if !trusted.contains(&origin) {
            trusted.push(origin);
        }
    }
}

fn trusted(origin: &str) -> bool {
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    TRUSTED_ORIGINS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&origin)
}

/// A request that changes something and is authenticated by a cookie must come from this site's
/// own pages: its `Origin` names this host (or one of the `CORS_ALLOWED_ORIGINS`), or, without
/// one, `Sec-Fetch-Site` says `same-origin`. SameSite=Lax cookies stop other sites, not other origins of the same site
/// (another port, a subdomain), and the API has no CSRF token; API clients send
/// `Authorization: Bearer`, which no other page can make a browser send. 403 `cross-origin`.
pub fn check_cookie_write(method: &Method, headers: &HeaderMap) -> Result<(), Error> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text("x-forwarded-host")
        .and_then(|h| h.split(',').next())
        .or_else(|| text(header::HOST.as_str()))
        .map(str::trim);
    let same = match text(header::ORIGIN.as_str()) {
        Some(origin) => {
            let origin_host = origin.split_once("://").map(|(_, rest)| rest);
            origin_host.is_some_and(|o| host.is_some_and(|h| h.eq_ignore_ascii_case(o)))
                || trusted(origin)
        }
        None => text("sec-fetch-site") == Some("same-origin"),
    };
    if same {
        Ok(())
    } else {
        Err(Error::Forbidden {
            kind: "cross-origin",
            detail:
                "a write signed in by the sf_access cookie must come from this site's own pages \
                     (its Origin header is missing or names another site); API clients send \
                     Authorization: Bearer"
                    .into(),
        })
    }
}

/// The token of a request, with the cookie's origin check for writes.
fn checked_token(parts: &Parts) -> Result<Option<String>, Error> {
    match token_and_source(parts) {
        None => Ok(None),
        Some((token, false)) => Ok(Some(token)),
        Some((token, true)) => {
            check_cookie_write(&parts.method, &parts.headers)?;
            Ok(Some(token))
        }
    }
}

/// The signed-in user; 401 problem when there is no valid token.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Claims);

impl<S> FromRequestParts<S> for CurrentUser
where
    Arc<Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = checked_token(parts)?.ok_or_else(|| {
            Error::unauthenticated(
                "sign in first: no access token in the Authorization header or the sf_access cookie",
            )
        })?;
        let authenticator = Arc::<Authenticator>::from_ref(state);
        authenticator.verify(&token).await.map(CurrentUser)
    }
}

/// A signed-in user with their own access token, for a service that calls another one on the
/// user's behalf (cart and payments call orders): the callee checks the same token again.
/// `Debug` leaves the token out.
#[derive(Clone)]
pub struct ActingUser {
    pub claims: Claims,
    pub token: String,
}

impl std::fmt::Debug for ActingUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActingUser")
            .field("claims", &self.claims)
            .field("token", &"[REDACTED]")
            .finish()
    }
}

impl<S> FromRequestParts<S> for ActingUser
where
    Arc<Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let CurrentUser(claims) =
            <CurrentUser as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        let token = access_token(parts).unwrap_or_default();
        Ok(ActingUser { claims, token })
    }
}

/// `Option<CurrentUser>`: `None` without a token; a bad token is still an error.
impl<S> OptionalFromRequestParts<S> for CurrentUser
where
    Arc<Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match checked_token(parts)? {
            None => Ok(None),
            Some(token) => {
                let authenticator = Arc::<Authenticator>::from_ref(state);
                authenticator
                    .verify(&token)
                    .await
                    .map(|c| Some(CurrentUser(c)))
            }
        }
    }
}

/// A signed-in admin; 401 without a valid token, 403 for a customer.
#[derive(Debug, Clone)]
pub struct RequireAdmin(pub Claims);

impl<S> FromRequestParts<S> for RequireAdmin
where
    Arc<Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let CurrentUser(claims) =
            <CurrentUser as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        if !claims.is_admin() {
            return Err(Error::Forbidden {
                kind: "admin-only",
                detail: "this needs an admin account".into(),
            });
        }
        Ok(RequireAdmin(claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acting_users_token_never_shows_in_debug_output() {
        let acting = ActingUser {
            claims: crate::testing::claims(storefront_events::UserId::new(), Role::Customer, 900),
            token: "eyJhbGciOiJFZERTQSJ9.do-not-print".into(),
        };
        let printed = format!("{acting:?}");
        assert!(!printed.contains("do-not-print"), "{printed}");
        assert!(printed.contains("someone@example.com"), "{printed}");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn cookie_writes_must_come_from_this_origin() {
        let host = ("host", "shop.example:8080");
        let ok =
            |pairs: &[(&'static str, &str)]| check_cookie_write(&Method::POST, &headers(pairs));
        assert!(ok(&[host, ("origin", "http://shop.example:8080")]).is_ok());
        assert!(ok(&[host, ("origin", "https://SHOP.example:8080")]).is_ok());
        assert!(ok(&[host, ("sec-fetch-site", "same-origin")]).is_ok());
        assert!(
            ok(&[
                host,
                ("x-forwarded-host", "shop.example"),
                ("origin", "https://shop.example")
            ])
            .is_ok()
        );
        for refused in [
            vec![host],
            vec![host, ("origin", "http://shop.example:9000")],
            vec![host, ("origin", "http://s3.shop.example:8080")],
            vec![host, ("origin", "null")],
            vec![host, ("sec-fetch-site", "same-site")],
            vec![("origin", "http://shop.example:8080")],
        ] {
            let error = ok(&refused).unwrap_err();
            assert!(
                matches!(
                    error,
                    Error::Forbidden {
                        kind: "cross-origin",
                        ..
                    }
                ),
                "{refused:?}"
            );
        }
        // Reads need no origin.
        assert!(check_cookie_write(&Method::GET, &headers(&[host])).is_ok());
        // An origin the services allow cross-origin (CORS_ALLOWED_ORIGINS) may write too.
        let admin = [host, ("origin", "https://admin.example")];
        assert!(ok(&admin).is_err());
        trust_origins(&["https://Admin.example/".to_owned()]);
        assert!(ok(&admin).is_ok());
    }
}
