//! The notifications service against the real backends: events produced to Kafka become stored
//! notifications, listed over HTTP and pushed over WebSocket through Redis fan-out, with two
//! replicas sharing one database and channel as in a cluster.

mod helpers;

mod history;
mod sockets;
mod stock;
