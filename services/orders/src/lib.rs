//! The orders service: orders and their state machine (docs/architecture.md §6), priced from
//! orders' own product replica, moved by inventory's and payments' events, and expired by a task
//! that survives restarts. It is the one owner of an order's fate: payments holds an order here
//! before it charges, and money that arrives for an order that ended unpaid becomes a refund due
//! (docs/saga.md). See `docs/services/orders.md` and `docs/api/orders.md`.

pub mod app;
pub mod changes;
pub mod config;
pub mod domain;
pub mod events;
pub mod expiry;
mod http;
pub mod pricing;
pub mod stats;
pub mod store;

use std::{sync::Arc, time::Duration};

use axum::Router;
use storefront_events::Topic;
use storefront_kit::{
    auth::Authenticator,
    kafka::ConsumerRunner,
    outbox::Relay,
    server::{self, Shared},
};

pub use config::Config;
pub use http::openapi;
pub use storefront_kit::server::StartError;

use crate::{changes::Changes, events::Saga, expiry::Expiry, pricing::Pricing, store::Store};

pub const SERVICE: &str = "orders";

/// What handlers are given: the token verifier and [`Inner`].
pub type AppState = Shared<Inner>;

pub struct Inner {
    pub store: Store,
    pub payment_window: Duration,
    pub payment_hold: Duration,
    pub pricing: Pricing,
}

/// A ready-to-serve orders service and the tasks to run beside it.
pub struct Orders {
    pub app: Router,
    pub state: AppState,
    pub relay: Relay,
    pub consumer: Option<ConsumerRunner<Saga>>,
    pub expiry: Expiry,
}

pub async fn build(config: &Config) -> Result<Orders, StartError> {
    build_with(config, config.common.authenticator().await?).await
}

/// [`build`] with the token verifier given (tests pass one holding their own keys).
pub async fn build_with(
    config: &Config,
    authenticator: Arc<Authenticator>,
) -> Result<Orders, StartError> {
    let mut service = config
        .common
        .start(
            SERVICE,
            &[Topic::Orders, Topic::Products, Topic::Payments],
            authenticator,
        )
        .await?;
    let (outbox, relay) = service.outbox()?;
    let store = Store::new(
        service.mongo.clone(),
        outbox,
        Changes::new(config.wait_recheck),
    );
    store.ensure_indexes().await?;
    let consumer = service
        .consumer(
            config.consume_events,
            events::settings(service.prefix()),
            || Saga::new(store.clone()),
        )
        .await?;
    let expiry = Expiry {
        store: store.clone(),
        poll: config.expiry_poll,
    };
    let pricing_url = match &config.pricing_url {
        Some(url) => url.clone(),
        None => pricing::serve_builtin().await?,
    };
    let state = service.state(Inner {
        pricing: Pricing::new(pricing_url, config.pricing_timeout),
        store,
        payment_window: config.payment_window,
        payment_hold: config.payment_hold,
    });
    let app = service.app_consuming(http::routes(state.clone()), consumer.as_ref());
    Ok(Orders {
        app,
        state,
        relay,
        consumer,
        expiry,
    })
}

/// Runs orders until SIGTERM/Ctrl-C: HTTP, the outbox relay, the consumer and the expiry task;
/// then drains them.
pub async fn run(config: Config) -> Result<(), StartError> {
    let Orders {
        app,
        relay,
        consumer,
        expiry,
        ..
    } = build(&config).await?;
    let background = server::Background::new()
        .with(|stop| relay.run(stop))
        .with(|stop| expiry.run(stop))
        .with_some(consumer, |c, stop| c.run(stop));
    Ok(server::run(&config.common.http, app, background).await?)
}
