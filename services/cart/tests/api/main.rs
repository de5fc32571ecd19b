//! The cart API, and the whole checkout saga end to end: products, cart, orders and payments run
//! together on one fresh topic prefix against the real backends and the Stripe stand-in, each on
//! its own port, talking only through HTTP (cart → orders) and Kafka, as in a cluster.

mod helpers;

mod cart;
mod saga;
mod store;
