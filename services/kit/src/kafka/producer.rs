//! [`KafkaProducer`]: rdkafka's `FutureProducer` interface without its idle cost.
//!
//! rdkafka 0.39's `FutureProducer` serves delivery reports from a thread that calls
//! `poll(100 ms)` in a loop, and every such poll ends in a busy wait: it turns what is left of its
//! deadline into whole milliseconds, so its last wait (under 1 ms) becomes `poll(0)`, asked again
//! and again until the deadline passes. That is up to a millisecond of spinning every 100 ms: an
//! idle service with two producers spent 1.7 % of a core in them (`perf`: `clock_gettime` and the
//! deadline arithmetic on top), about half of the whole idle shop's CPU (docs/saga.md,
//! "Benchmark"). This producer's thread polls a second at a time: the same spin once a second,
//! and the same latency (a delivery report ends the wait for it at once).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures::channel::oneshot;
use rdkafka::{
    ClientConfig, Message, Timestamp,
    client::{Client, ClientContext},
    error::{KafkaError, RDKafkaErrorCode},
    message::{DeliveryResult, OwnedMessage, ToBytes},
    producer::{
        BaseProducer, BaseRecord, FutureRecord, Producer, ProducerContext,
        future_producer::{Delivery, OwnedDeliveryResult},
    },
};

/// How long one poll of the delivery reports waits (see the module's comment).
const POLL: Duration = Duration::from_secs(1);
/// How long [`KafkaProducer::send`] waits between tries while librdkafka's queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(100);

/// A producer whose sends answer with a future of their delivery. Clones share one librdkafka
/// producer; its thread stops within a second of the last clone's drop and destroys it there,
/// off the async runtime. As with `FutureProducer`, what is still queued then is purged, not
/// sent: the outbox relay sends again what it has not seen delivered.
#[derive(Clone)]
pub struct KafkaProducer {
    inner: Arc<Handle>,
}

struct Handle {
    base: Arc<BaseProducer<Reports>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Not joined: the thread notices within a second and drops the producer itself.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The delivery of one record, once the broker (or the message timeout) has decided it.
pub type DeliveryFuture = oneshot::Receiver<OwnedDeliveryResult>;

/// Passes each delivery report to the future its send returned.
pub struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<oneshot::Sender<OwnedDeliveryResult>>;

    fn delivery(&self, result: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        let owned = match result {
            Ok(message) => Ok(Delivery {
                partition: message.partition(),
                offset: message.offset(),
                timestamp: message.timestamp(),
            }),
            Err((error, message)) => Err((error.clone(), message.detach())),
        };
        // The sender gave up waiting: nobody to tell.
        let _ = tx.send(owned);
    }
}

impl KafkaProducer {
    /// A producer of `config`, with its delivery-report thread started.
    pub fn from_config(config: &ClientConfig) -> Result<Self, KafkaError> {
        let base: Arc<BaseProducer<Reports>> = Arc::new(config.create_with_context(Reports)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (polled, stopped) = (base.clone(), stop.clone());
        std::thread::Builder::new()
            .name("kafka-reports".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    polled.poll(POLL);
                }
            })
            .map_err(|_| KafkaError::ClientCreation("cannot start a thread".into()))?;
        Ok(KafkaProducer {
            inner: Arc::new(Handle { base, stop }),
        })
    }

    /// Queues `record`; the future answers with its delivery. Fails at once when librdkafka
    /// refuses it (its queue full, a record too large), handing the record back.
    #[allow(clippy::result_large_err)] // rdkafka's own shape, which callers match on
    pub fn send_result<'a, K, P>(
        &self,
        record: FutureRecord<'a, K, P>,
    ) -> Result<DeliveryFuture, (KafkaError, FutureRecord<'a, K, P>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let (tx, rx) = oneshot::channel();
        let FutureRecord {
            topic,
            partition,
            payload,
            key,
            timestamp,
            headers,
        } = record;
        let base = BaseRecord {
            topic,
            partition,
            payload,
            key,
            timestamp,
            headers,
            delivery_opaque: Box::new(tx),
        };
        match self.inner.base.send(base) {
            Ok(()) => Ok(rx),
            Err((e, back)) => Err((
                e,
                FutureRecord {
                    topic: back.topic,
                    partition: back.partition,
                    payload: back.payload,
                    key: back.key,
                    timestamp: back.timestamp,
                    headers: back.headers,
                },
            )),
        }
    }

    /// Sends `record` and waits for its delivery; while librdkafka's queue is full it tries again
    /// for up to `queue_timeout`.
    #[allow(clippy::result_large_err)] // rdkafka's `OwnedDeliveryResult`
    pub async fn send<K, P>(
        &self,
        record: FutureRecord<'_, K, P>,
        queue_timeout: Duration,
    ) -> OwnedDeliveryResult
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let started = Instant::now();
        let mut record = record;
        loop {
            match self.send_result(record) {
                Ok(delivery) => {
                    // librdkafka reports every queued record (at the latest when
                    // `message.timeout.ms` passes); a dropped sender would be its bug, answered
                    // as a cancelled send rather than a panic.
                    return delivery.await.unwrap_or_else(|_| {
                        Err((
                            KafkaError::Canceled,
                            unsent(String::new(), None, None, None, None),
                        ))
                    });
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if started.elapsed() < queue_timeout =>
                {
                    record = back;
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((e, back)) => {
                    let message = unsent(
                        back.topic.to_owned(),
                        back.payload.map(|p| p.to_bytes().to_vec()),
                        back.key.map(|k| k.to_bytes().to_vec()),
                        back.partition,
                        back.headers,
                    );
                    return Err((e, message));
                }
            }
        }
    }

    /// The librdkafka client (metadata requests, readiness).
    pub(crate) fn client(&self) -> &Client<Reports> {
        self.inner.base.client()
    }

    /// Waits until every queued record is delivered or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner.base.flush(timeout)
    }
}

/// A record that never reached the broker, as a delivery report would hand it back.
fn unsent(
    topic: String,
    payload: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
    partition: Option<i32>,
    headers: Option<rdkafka::message::OwnedHeaders>,
) -> OwnedMessage {
    OwnedMessage::new(
        payload,
        key,
        topic,
        Timestamp::NotAvailable,
        partition.unwrap_or(-1),
        -1,
        headers,
    )
}
