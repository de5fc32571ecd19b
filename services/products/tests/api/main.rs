//! The products API against the real backends `cargo xtask test` starts (MongoDB, Kafka, Redis,
//! S3): every test spawns the real router on a random port with its own database, topic prefix,
//! bucket and Redis namespace, and signs its own tokens with a key the service is given.

mod helpers;

mod catalog;
mod images;
mod inventory;
mod views;
mod writes;
