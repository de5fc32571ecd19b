//! The auth service: accounts, sessions and the tokens every other Storefront service trusts.
//!
//! Access tokens are EdDSA JWTs valid 15 minutes; refresh tokens are opaque, valid 7 days, stored
//! only as hashes and rotated on every use (a reused one ends its session). Other services verify
//! access tokens with the public key from `/api/users/.well-known/jwks.json`; signout and blocking
//! revoke token ids in Redis, which the kit checks on every request. See `docs/services/auth.md`.

pub mod config;
pub mod domain;
mod http;
pub use http::openapi;
use storefront_events::UserId;
pub mod keys;
mod limits;
mod passwords;
pub mod store;

use std::sync::Arc;

use axum::Router;
use chrono::Duration;
use storefront_events::Topic;
use storefront_kit::{
    ExposeSecret,
    auth::{Authenticator, Revocations, Role},
    outbox::Relay,
    server::{self, Backends, Service, Shared},
};

pub use config::Config;
pub use storefront_kit::server::StartError;

use crate::{
    domain::{DisplayName, Email, Password},
    keys::SigningKey,
    limits::SigninLimiter,
    store::{Store, UserDoc},
};

pub const SERVICE: &str = "auth";

/// What handlers are given: the token verifier and [`Inner`].
pub type AppState = Shared<Inner>;

pub struct Inner {
    pub store: Store,
    pub keys: SigningKey,
    limiter: SigninLimiter,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub cookie_secure: bool,
    pub trust_proxy_headers: bool,
}

/// A ready-to-serve auth: the app, and the outbox relay to run beside it.
pub struct Auth {
    pub app: Router,
    pub state: AppState,
    pub relay: Relay,
}

/// Connects everything, creates indexes (and topics when configured) and the bootstrap admin.
pub async fn build(config: &Config) -> Result<Auth, StartError> {
    let keys = SigningKey::from_pem(config.signing_key_pem.expose_secret())
        .map_err(|e| StartError::other("signing key", e))?;
    let namespace = &config.kafka.topic_prefix;
    let revocations = Revocations::connect(config.redis.url.expose_secret(), namespace).await?;
    let authenticator = Arc::new(Authenticator::from_keys(
        keys.decoding_keys(),
        revocations.clone(),
    ));
    let backends = Backends {
        http: &config.http,
        mongo: &config.mongo,
        kafka: &config.kafka,
        redis: &config.redis,
    };
    let mut service = Service::start(SERVICE, backends, &[Topic::Users], authenticator).await?;
    let (outbox, relay) = service.outbox()?;
    let store = Store::new(service.mongo.clone(), outbox);
    store.ensure_indexes().await?;

    if let Some((email, password)) = &config.bootstrap_admin {
        ensure_admin(&store, email, password.expose_secret()).await?;
    }

    let limiter = SigninLimiter::new(revocations.redis(), namespace, config.rate_limits.clone());
    let state = service.state(Inner {
        store,
        keys,
        limiter,
        access_ttl: Duration::from_std(config.access_ttl).unwrap_or(Duration::minutes(15)),
        refresh_ttl: Duration::from_std(config.refresh_ttl).unwrap_or(Duration::days(7)),
        cookie_secure: config.http.cookie_secure,
        trust_proxy_headers: config.http.trust_proxy_headers,
    });
    let app = service.app(http::routes(state.clone()));
    Ok(Auth { app, state, relay })
}

/// Runs auth until SIGTERM/Ctrl-C: serves HTTP and relays the outbox, then drains both.
pub async fn run(config: Config) -> Result<(), StartError> {
    let Auth { app, relay, .. } = build(&config).await?;
    let background = server::Background::new().with(|stop| relay.run(stop));
    Ok(server::run(&config.http, app, background).await?)
}

/// A new user document with a freshly hashed password.
pub(crate) async fn new_user(
    email: Email,
    name: DisplayName,
    role: Role,
    password: Password,
) -> Result<UserDoc, storefront_kit::Error> {
    let password_hash = passwords::hash(password.expose().to_owned()).await?;
    let now = mongodb::bson::DateTime::now();
    Ok(UserDoc {
        // Random (v4), as user ids always were: a v7 id would tell anyone who sees it (a token's
        // `sub`, an order view) when the account was made.
        id: UserId::from(uuid::Uuid::new_v4()),
        email: email.as_str().to_owned(),
        password_hash,
        name: name.into_inner(),
        phone: None,
        address: None,
        role,
        blocked: false,
        version: 1,
        created_at: now,
        updated_at: now,
    })
}

/// Creates the admin named by `ADMIN_EMAIL` unless an account with that email exists.
async fn ensure_admin(store: &Store, email: &str, password: &str) -> Result<(), StartError> {
    let email = Email::parse(email).map_err(|e| StartError::other("bootstrap admin", e))?;
    let password = Password::parse(password, Some(&email))
        .map_err(|e| StartError::other("bootstrap admin", e))?;
    if let Some(existing) = store
        .user_by_email(email.as_str())
        .await
        .map_err(|e| StartError::other("bootstrap admin", e))?
    {
        if existing.role != Role::Admin {
            tracing::warn!(email = %email, "ADMIN_EMAIL belongs to a customer account; not promoting it");
        }
        return Ok(());
    }
    let name =
        DisplayName::parse("Administrator").map_err(|e| StartError::other("bootstrap admin", e))?;
    let user = new_user(email, name, Role::Admin, password)
        .await
        .map_err(|e| StartError::other("bootstrap admin", e))?;
    match store.create_user(&user).await {
        Ok(()) | Err(store::StoreError::DuplicateEmail) => Ok(()),
        Err(e) => Err(StartError::other("bootstrap admin", e)),
    }
}
