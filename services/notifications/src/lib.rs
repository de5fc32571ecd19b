//! The notifications service: turns order, payment and product events into each user's
//! notifications (docs/architecture.md §7), keeps them in its database, and pushes them over
//! WebSocket to the user's open sockets, whichever replica holds them (Redis pub/sub). See
//! `docs/api/notifications.md`.

pub mod config;
pub mod domain;
pub mod events;
mod http;
pub use http::openapi;
pub mod hub;
pub mod store;

use std::sync::Arc;

use axum::Router;
use storefront_kit::{
    ExposeSecret,
    auth::Authenticator,
    kafka::ConsumerRunner,
    server::{self, Shared},
};
use tokio::sync::{mpsc, watch};

pub use config::{Config, SocketConfig};
pub use storefront_kit::server::StartError;

use crate::{events::Notifier, hub::Hub, store::Store};

pub const SERVICE: &str = "notifications";

/// What handlers are given: the token verifier and [`Inner`].
pub type AppState = Shared<Inner>;

pub struct Inner {
    pub store: Store,
    pub hub: Arc<Hub>,
    pub sockets: SocketConfig,
    /// Origins allowed to open a socket with the cookie (besides the service's own host).
    pub allowed_origins: Vec<String>,
}

/// The Redis side of fan-out: the subscriber that delivers to this replica's sockets, and the
/// publisher of what this replica's consumer committed.
pub struct Fanout {
    hub: Arc<Hub>,
    client: redis::Client,
    committed: mpsc::UnboundedReceiver<Vec<store::NotificationDoc>>,
}

impl Fanout {
    /// Runs until `stop` turns true.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let publisher = tokio::spawn(events::publish(self.hub.clone(), self.committed));
        self.hub.subscribe(self.client, stop).await;
        publisher.abort();
    }
}

pub struct Notifications {
    pub app: Router,
    pub state: AppState,
    pub consumer: Option<ConsumerRunner<Notifier>>,
    pub fanout: Fanout,
}

pub async fn build(config: &Config) -> Result<Notifications, StartError> {
    build_with(config, config.common.authenticator().await?).await
}

/// [`build`] with the token verifier given (tests pass one holding their own keys).
pub async fn build_with(
    config: &Config,
    authenticator: Arc<Authenticator>,
) -> Result<Notifications, StartError> {
    // The topics it consumes (the owners create them too; whoever starts first does).
    let mut service = config
        .common
        .start(SERVICE, &events::TOPICS, authenticator)
        .await?;
    let store = Store::new(&service.mongo.db);
    if let Err(e) = store.ensure_indexes().await {
        tracing::warn!(error = %e, "cannot create indexes yet; lists are slower until a restart");
    }
    let hub = Hub::new(
        service.authenticator.revocations().redis(),
        service.prefix(),
        config.sockets.send_buffer,
        config.sockets.max_per_user,
        config.sockets.max_product_sockets,
    );
    let (published, committed) = mpsc::unbounded_channel();
    let consumer = service
        .consumer(
            config.consume_events,
            events::settings(service.prefix()),
            || Notifier::new(store.clone(), published, hub.clone()),
        )
        .await?;
    let state = service.state(Inner {
        store,
        hub: hub.clone(),
        sockets: config.sockets.clone(),
        allowed_origins: config.common.http.cors_allowed_origins.clone(),
    });
    let fanout_hub = hub.clone();
    service.ready_when("fanout", move || {
        let subscribed = fanout_hub.subscribed();
        async move {
            if subscribed {
                Ok(())
            } else {
                Err("not subscribed to the Redis fan-out channel".to_owned())
            }
        }
    });
    let app = service.app_consuming(http::routes(state.clone()), consumer.as_ref());
    Ok(Notifications {
        app,
        state,
        consumer,
        fanout: Fanout {
            hub,
            client: redis::Client::open(config.common.redis.url.expose_secret())?,
            committed,
        },
    })
}

/// Runs notifications until SIGTERM/Ctrl-C.
pub async fn run(config: Config) -> Result<(), StartError> {
    let Notifications {
        app,
        consumer,
        fanout,
        ..
    } = build(&config).await?;
    let background = server::Background::new()
        .with_some(consumer, |c, stop| c.run(stop))
        .with(|stop| fanout.run(stop));
    Ok(server::run(&config.common.http, app, background).await?)
}
