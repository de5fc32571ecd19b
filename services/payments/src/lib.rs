//! The payments service: pays an order through Stripe exactly once (docs/saga.md),
//! once orders has held it for payment, and records each outcome once — from the confirmation or
//! from Stripe's signed webhook, whichever comes first. Money is kept or given back as orders
//! decides: a refund orders asks for is retried until Stripe confirms it (docs/saga.md). See
//! `docs/services/orders.md`.

pub mod app;
pub mod config;
pub mod domain;
pub mod events;
pub mod gateway;
mod http;
pub mod orders;
pub mod refunds;
pub mod store;

use std::sync::Arc;

use axum::Router;
use storefront_events::Topic;
use storefront_kit::{
    ExposeSecret, SecretString,
    auth::Authenticator,
    kafka::ConsumerRunner,
    outbox::Relay,
    server::{self, Shared},
};

pub use config::Config;
pub use http::openapi;
pub use storefront_kit::server::StartError;

use crate::{
    events::RefundRequests,
    gateway::Gateway,
    orders::Orders,
    refunds::{Refunds, Wake},
    store::Store,
};

pub const SERVICE: &str = "payments";

/// What handlers are given: the token verifier and [`Inner`].
pub type AppState = Shared<Inner>;

pub struct Inner {
    pub store: Store,
    pub gateway: Gateway,
    pub orders: Orders,
    pub webhook_secret: SecretString,
}

pub struct Payments {
    pub app: Router,
    pub state: AppState,
    pub relay: Relay,
    pub consumer: Option<ConsumerRunner<RefundRequests>>,
    /// The refund task: run it beside the service (every replica may).
    pub refunds: Refunds,
}

pub async fn build(config: &Config) -> Result<Payments, StartError> {
    build_with(config, config.common.authenticator().await?).await
}

/// [`build`] with the token verifier given (tests pass one holding their own keys).
pub async fn build_with(
    config: &Config,
    authenticator: Arc<Authenticator>,
) -> Result<Payments, StartError> {
    let mut service = config
        .common
        .start(SERVICE, &[Topic::Payments, Topic::Orders], authenticator)
        .await?;
    let gateway = Gateway::new(
        config.stripe_secret_key.expose_secret(),
        config.stripe_api_base.as_deref(),
    )
    .map_err(|e| StartError::other("stripe", e))?;
    let (outbox, relay) = service.outbox()?;
    let store = Store::new(service.mongo.clone(), outbox);
    store.ensure_indexes().await?;
    let wake = Wake::default();
    let consumer = service
        .consumer(
            config.consume_events,
            events::settings(service.prefix()),
            || RefundRequests {
                store: store.clone(),
                wake: wake.clone(),
            },
        )
        .await?;
    let refunds = Refunds {
        store: store.clone(),
        gateway: gateway.clone(),
        poll: config.refund_poll,
        wake,
    };
    let state = service.state(Inner {
        store,
        gateway,
        orders: Orders::new(&config.orders_url, config.order_wait),
        webhook_secret: config.stripe_webhook_secret.clone(),
    });
    let app = service.app_consuming(http::routes(state.clone()), consumer.as_ref());
    Ok(Payments {
        app,
        state,
        relay,
        consumer,
        refunds,
    })
}

/// Runs payments until SIGTERM/Ctrl-C (HTTP, the outbox relay, the consumer, the refund task),
/// then drains.
pub async fn run(config: Config) -> Result<(), StartError> {
    let Payments {
        app,
        relay,
        consumer,
        refunds,
        ..
    } = build(&config).await?;
    let background = server::Background::new()
        .with(|stop| relay.run(stop))
        .with(|stop| refunds.run(stop))
        .with_some(consumer, |c, stop| c.run(stop));
    Ok(server::run(&config.common.http, app, background).await?)
}
