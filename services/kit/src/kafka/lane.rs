//! A lane: the messages of its keys applied in order — one at a time, or the batchable ones
//! waiting together — each at most once in effect, retried, and dead-lettered after its last
//! attempt.

use rdkafka::message::Headers as _;
use tracing::Instrument;

use super::*;
use crate::telemetry;

/// A message header's text, if it has one.
fn header<'a>(message: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

pub(super) fn count<H>(shared: &Shared<H>, outcome: Outcome) {
    metrics::backends()
        .kafka_deliveries
        .with_label_values(&[shared.settings.group.as_str(), outcome.label()])
        .inc();
}

/// Most events a lane applies in one transaction ([`EventHandler::batchable`]).
const MAX_BATCH: usize = 32;

/// One lane: its messages in the order they came, one at a time — or, for a handler that applies
/// [`EventHandler::batchable`] events together, the batchable ones of those waiting (up to
/// [`MAX_BATCH`] looked at) in one transaction, then the others in order.
pub(super) async fn lane<H: EventHandler>(
    shared: Arc<Shared<H>>,
    mut deliveries: mpsc::UnboundedReceiver<Delivery>,
    done: mpsc::UnboundedSender<Done>,
    stop: watch::Receiver<bool>,
) {
    let batchable = |delivery: &Delivery| {
        delivery
            .event
            .as_ref()
            .is_ok_and(|event| shared.handler.batchable(event))
    };
    let key = |delivery: &Delivery| delivery.message.key().map(<[u8]>::to_vec);
    // Messages taken from the queue but not batched: applied after the batch, in order.
    let mut deferred: VecDeque<Delivery> = VecDeque::new();
    loop {
        let delivery = match deferred.pop_front() {
            Some(delivery) => delivery,
            None => match deliveries.recv().await {
                Some(delivery) => delivery,
                None => break,
            },
        };
        if *stop.borrow() {
            // Left for redelivery: its offset is not committed.
            continue;
        }
        let mut batch = vec![delivery];
        if batchable(&batch[0]) && deferred.is_empty() {
            // Gathers the batchable messages waiting behind, skipping past others: a key's
            // messages keep their order, since once one of a key is deferred, all later ones of
            // that key are, and the batch is applied before the deferred ones.
            let mut held_keys = Vec::new();
            while batch.len() + deferred.len() < MAX_BATCH {
                let Ok(more) = deliveries.try_recv() else {
                    break;
                };
                let k = key(&more);
                if batchable(&more) && !held_keys.contains(&k) {
                    batch.push(more);
                } else {
                    held_keys.push(k);
                    deferred.push_back(more);
                }
            }
        }
        let outcomes = if let [single] = batch.as_slice() {
            vec![shared.process(single).await]
        } else {
            shared.process_all(&batch).await
        };
        for (delivery, outcome) in batch.iter().zip(outcomes) {
            count(&shared, outcome);
            let message = &delivery.message;
            // How long after it was produced the event was done: a consumer's whole delay.
            let lag_ms = message
                .timestamp()
                .to_millis()
                .map(|at| chrono::Utc::now().timestamp_millis() - at);
            tracing::debug!(
                group = %shared.settings.group,
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                key = ?message.key().map(String::from_utf8_lossy),
                ?lag_ms,
                ?outcome,
                "message done"
            );
            let _ = done.send(Done {
                topic: message.topic().to_owned(),
                partition: message.partition(),
                offset: message.offset(),
                generation: delivery.generation,
            });
        }
    }
}

impl<H: EventHandler> Replay for Shared<H> {
    fn replay<'a>(
        &'a self,
        event: &'a Envelope,
    ) -> Pin<Box<dyn Future<Output = Result<Outcome, HandlerError>> + Send + 'a>> {
        Box::pin(self.apply(event))
    }
}

impl<H: EventHandler> Shared<H> {
    /// Applies one message: at most once in effect, dead-lettered after the last attempt. In a
    /// span naming the event (its id, type and key: the order or product it is about), so what
    /// the handler logs can be followed back to the event, and the event to its aggregate.
    pub(super) async fn process(&self, delivery: &Delivery) -> Outcome {
        let span = self.event_span(delivery);
        self.process_in_span(delivery).instrument(span).await
    }

    /// The span of one event: its group, id, type and key (or offset, when it cannot be read),
    /// continuing the trace of whatever appended it (the relay sent it as a header).
    fn event_span(&self, delivery: &Delivery) -> tracing::Span {
        let group = &self.settings.group;
        let span = match &delivery.event {
            Ok(event) => tracing::info_span!(
                "event",
                %group,
                event_id = %event.id,
                r#type = %event.event_type,
                key = %event.key,
                batch = tracing::field::Empty,
                trace_id = tracing::field::Empty,
            ),
            Err(_) => tracing::info_span!(
                "event",
                %group,
                offset = delivery.message.offset(),
                trace_id = tracing::field::Empty,
            ),
        };
        telemetry::continue_from(&span, |name| header(&delivery.message, name));
        span
    }

    async fn process_in_span(&self, delivery: &Delivery) -> Outcome {
        let event = match &delivery.event {
            Ok(event) => event,
            Err(e) => return self.dead_letter(&delivery.message, e, 1).await,
        };
        let mut attempt = 1;
        let mut conflicts = 0;
        loop {
            match self.apply(event).await {
                Ok(outcome) => return outcome,
                Err(e) if e.is_transient() => {
                    conflicts += 1;
                    self.count_retry("conflict");
                    tracing::debug!(event_id = %event.id, conflicts, error = %e, "handler conflicted; running it again");
                    tokio::time::sleep(crate::mongo::retry_pause(conflicts)).await;
                }
                Err(e) if attempt >= self.settings.max_attempts => {
                    return self
                        .dead_letter(&delivery.message, &e.to_string(), attempt)
                        .await;
                }
                Err(e) => {
                    self.count_retry("failure");
                    tracing::warn!(event_id = %event.id, attempt, error = %e, "handler failed; retrying");
                    tokio::time::sleep(self.settings.backoff * 2u32.pow(attempt - 1)).await;
                    attempt += 1;
                }
            }
        }
    }

    pub(super) fn count_retry(&self, reason: &str) {
        metrics::backends()
            .kafka_retries
            .with_label_values(&[self.settings.group.as_str(), reason])
            .inc();
    }

    pub(super) async fn apply(&self, event: &Envelope) -> Result<Outcome, HandlerError> {
        if self.handler.apply_idempotent(event).await? {
            return Ok(Outcome::Idempotent);
        }
        let mut session = self.mongo.begin().await?;
        if self.handler.records_processed(event) {
            let record = doc! {
                "_id": format!("{}:{}", self.settings.group, event.id),
                "type": &event.event_type,
                "processed_at": bson::DateTime::now(),
            };
            match self
                .processed
                .insert_one(record)
                .session(&mut session)
                .await
            {
                Ok(_) => {}
                Err(e) if is_duplicate_key(&e) => {
                    let _ = session.abort_transaction().await;
                    return Ok(Outcome::Duplicate);
                }
                Err(e) => return Err(e.into()),
            }
        }
        match self.handler.handle(event, &mut session).await {
            Ok(()) => {}
            Err(HandlerError::Duplicate) => {
                let _ = session.abort_transaction().await;
                return Ok(Outcome::Duplicate);
            }
            Err(e) => {
                let _ = session.abort_transaction().await;
                return Err(e);
            }
        }
        session.commit_transaction().await?;
        crate::outbox::handoff(&session);
        self.handler.committed(event);
        Ok(Outcome::Applied)
    }

    /// Applies a run of batchable messages in one transaction; when that fails for any reason
    /// (a conflict, a bad event, a lost connection), each on its own with [`Shared::process`].
    pub(super) async fn process_all(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let events: Vec<&Envelope> = batch.iter().filter_map(|d| d.event.as_ref().ok()).collect();
        if !events.is_empty() && events.len() == batch.len() {
            // A span per event too, each continuing its own trace, and what the batch appends
            // for an order or a product continues the trace of the event about it: one order
            // stays one trace when its events are applied in another order's batch.
            let group = &self.settings.group;
            let count = events.len();
            let each: Vec<(&Envelope, tracing::Span)> = batch
                .iter()
                .zip(&events)
                .map(|(delivery, event)| {
                    let span = self.event_span(delivery);
                    span.record("batch", count);
                    (*event, span)
                })
                .collect();
            let by_key = each
                .iter()
                .filter_map(|(event, span)| {
                    telemetry::traceparent_of(span).map(|t| (event.key.clone(), t))
                })
                .collect();
            // The batch's own trace, linked to each event's; its log lines name it.
            let span = tracing::info_span!(
                "events",
                %group,
                count,
                first_id = %events[0].id,
                trace_id = tracing::field::Empty,
            );
            for (_, event_span) in &each {
                telemetry::link_to(&span, event_span);
            }
            telemetry::record_trace_id(&span);
            let applied =
                telemetry::with_traces_by_key(by_key, self.apply_all(&events).instrument(span))
                    .await;
            drop(each);
            match applied {
                Ok(()) => return vec![Outcome::Applied; batch.len()],
                Err(e) => {
                    self.count_retry("batch");
                    tracing::debug!(events = events.len(), error = %e, "batch failed; applying its events one by one");
                }
            }
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        for delivery in batch {
            outcomes.push(self.process(delivery).await);
        }
        outcomes
    }

    pub(super) async fn apply_all(&self, events: &[&Envelope]) -> Result<(), HandlerError> {
        let mut session = self.mongo.begin().await?;
        if let Err(e) = self.handler.handle_all(events, &mut session).await {
            let _ = session.abort_transaction().await;
            return Err(e);
        }
        session.commit_transaction().await?;
        crate::outbox::handoff(&session);
        for event in events {
            self.handler.committed(event);
        }
        Ok(())
    }

    pub(super) async fn dead_letter(
        &self,
        message: &OwnedMessage,
        error: &str,
        attempts: u32,
    ) -> Outcome {
        let topic = dlq_topic(message.topic(), &self.settings.group);
        tracing::error!(%topic, error, attempts, "dead-lettering event");
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let attempts = attempts.to_string();
        // The message's own headers first (its `traceparent`, `event-type`): a dead letter stays
        // in the trace of what appended its event, and a replay continues it.
        let mut headers = OwnedHeaders::new();
        if let Some(own) = message.headers() {
            for header in own.iter() {
                headers = headers.insert(header);
            }
        }
        let headers = headers
            .insert(Header {
                key: "error",
                value: Some(error),
            })
            .insert(Header {
                key: "source-topic",
                value: Some(message.topic()),
            })
            .insert(Header {
                key: "source-partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "source-offset",
                value: Some(&offset),
            })
            .insert(Header {
                key: "attempts",
                value: Some(&attempts),
            });
        // Keep trying: losing the event is worse than holding the lane.
        loop {
            let mut record = FutureRecord::to(&topic)
                .payload(message.payload().unwrap_or_default())
                .headers(headers.clone());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            match self.producer.send(record, Duration::from_secs(10)).await {
                Ok(_) => break,
                Err((e, _)) => {
                    tracing::error!(error = %e, %topic, "cannot write to the dead-letter topic; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        Outcome::DeadLettered
    }
}
