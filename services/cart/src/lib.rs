//! The cart service: one cart per signed-in customer, shown from cart's own product replica, and
//! checked out into an order by calling orders with the customer's own token (docs/architecture.md
//! §6). Checked-out lines are held out of the cart until their order ends: bought on
//! `order.completed`, back in the cart on `order.cancelled`. See `docs/api/cart.md`.

pub mod app;
pub mod config;
pub mod domain;
pub mod events;
mod http;
pub use http::openapi;
pub mod orders;
pub mod store;

use std::sync::Arc;

use axum::Router;
use storefront_events::Topic;
use storefront_kit::{
    auth::Authenticator,
    kafka::ConsumerRunner,
    server::{self, Shared},
};

pub use config::Config;
pub use storefront_kit::server::StartError;

use crate::{events::Carts, orders::Orders, store::Store};

pub const SERVICE: &str = "cart";

/// What handlers are given: the token verifier and [`Inner`].
pub type AppState = Shared<Inner>;

pub struct Inner {
    pub store: Store,
    pub orders: Orders,
}

pub struct Cart {
    pub app: Router,
    pub state: AppState,
    pub consumer: Option<ConsumerRunner<Carts>>,
}

pub async fn build(config: &Config) -> Result<Cart, StartError> {
    build_with(config, config.common.authenticator().await?).await
}

/// [`build`] with the token verifier given (tests pass one holding their own keys).
pub async fn build_with(
    config: &Config,
    authenticator: Arc<Authenticator>,
) -> Result<Cart, StartError> {
    let service = config
        .common
        .start(SERVICE, &[Topic::Products, Topic::Orders], authenticator)
        .await?;
    let store = Store::new(&service.mongo.db).with_news(
        service.authenticator.revocations().redis(),
        service.prefix(),
    );
    let consumer = service
        .consumer(
            config.consume_events,
            events::settings(service.prefix()),
            || Carts {
                store: store.clone(),
            },
        )
        .await?;
    let state = service.state(Inner {
        store,
        orders: Orders::new(&config.orders_url),
    });
    let app = service.app_consuming(http::routes(state.clone()), consumer.as_ref());
    Ok(Cart {
        app,
        state,
        consumer,
    })
}

/// Runs cart until SIGTERM/Ctrl-C, then drains.
pub async fn run(config: Config) -> Result<(), StartError> {
    let Cart { app, consumer, .. } = build(&config).await?;
    let background = server::Background::new().with_some(consumer, |c, stop| c.run(stop));
    Ok(server::run(&config.common.http, app, background).await?)
}
