//! Reading dead letters off their topics: what one look reads, and one letter by its id.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use chrono::DateTime;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::{BorrowedMessage, Headers},
};
use serde_json::Value;
use storefront_events::Envelope;

use super::{DeadLetterView, Decision, Status};
use crate::Error;

/// The newest dead letters read from each partition of a dead-letter topic: what one look costs is
/// bounded. (A group with more has a failure to fix before any replay.)
const MAX_PER_PARTITION: i64 = 200;
/// How long one look may read the topics: with the metadata and offsets before it, within the
/// 15 s a request may take.
const READ_FOR: Duration = Duration::from_secs(8);

/// A dead letter as read from its topic.
pub(super) struct Letter {
    pub(super) id: String,
    pub(super) topic: String,
    pub(super) key: Option<String>,
    pub(super) headers: HashMap<String, String>,
    pub(super) payload: Vec<u8>,
    pub(super) timestamp: Option<i64>,
}

impl Letter {
    pub(super) fn of(message: &BorrowedMessage<'_>) -> Letter {
        let mut headers = HashMap::new();
        if let Some(all) = message.headers() {
            for header in all.iter() {
                if let Some(value) = header.value {
                    headers.insert(
                        header.key.to_owned(),
                        String::from_utf8_lossy(value).into_owned(),
                    );
                }
            }
        }
        Letter {
            id: format!(
                "{}:{}:{}",
                message.topic(),
                message.partition(),
                message.offset()
            ),
            topic: headers
                .get("source-topic")
                .cloned()
                .unwrap_or_else(|| message.topic().to_owned()),
            key: message
                .key()
                .map(|key| String::from_utf8_lossy(key).into_owned()),
            headers,
            payload: message.payload().unwrap_or_default().to_vec(),
            timestamp: message.timestamp().to_millis(),
        }
    }

    pub(super) fn view(&self, decision: Option<&Decision>) -> DeadLetterView {
        let message: Option<Value> = serde_json::from_slice(&self.payload).ok();
        let envelope = Envelope::from_slice(&self.payload).ok();
        DeadLetterView {
            id: self.id.clone(),
            topic: self.topic.clone(),
            event_id: envelope.as_ref().map(|e| e.id.to_string()),
            event_type: envelope.as_ref().map(|e| e.event_type.clone()),
            key: self.key.clone(),
            error: self.headers.get("error").cloned().unwrap_or_default(),
            attempts: self.headers.get("attempts").and_then(|a| a.parse().ok()),
            dead_lettered_at: self.timestamp.and_then(DateTime::from_timestamp_millis),
            status: decision.map_or(Status::Open, |d| d.status),
            handled_by: decision.map(|d| d.by.clone()),
            handled_at: decision
                .and_then(|d| DateTime::from_timestamp_millis(d.at.timestamp_millis())),
            outcome: decision.and_then(|d| d.outcome.clone()),
            message,
        }
    }
}

/// `{topic}:{partition}:{offset}` of one of `topics`, written as the list writes it (so one
/// dead letter has one id: `+5` or `005` name nothing), or nothing this group has.
pub(super) fn parse_id<'a>(id: &'a str, topics: &[String]) -> Option<(&'a str, i32, i64)> {
    let (rest, offset) = id.rsplit_once(':')?;
    let (topic, partition) = rest.rsplit_once(':')?;
    let partition: i32 = partition.parse().ok().filter(|p| *p >= 0)?;
    let offset: i64 = offset.parse().ok().filter(|o| *o >= 0)?;
    let canonical = format!("{topic}:{partition}:{offset}") == id;
    (canonical && topics.iter().any(|t| t == topic)).then_some((topic, partition, offset))
}

pub(super) fn kafka_error(e: KafkaError) -> Error {
    Error::Unavailable(format!("kafka: {e}"))
}

pub(super) fn too_slow() -> Error {
    Error::Unavailable("kafka did not deliver the dead-letter topics in time; try again".into())
}

/// Reads every partition of `topics` from its newest [`MAX_PER_PARTITION`] letters to its end,
/// within [`READ_FOR`]; a topic that does not deliver in time is a 503, not a short list.
pub(super) fn read_all(reader: &BaseConsumer, topics: &[String]) -> Result<Vec<Letter>, Error> {
    let wait = Duration::from_secs(3);
    let mut assignment = TopicPartitionList::new();
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    for topic in topics {
        let metadata = reader
            .fetch_metadata(Some(topic.as_str()), wait)
            .map_err(kafka_error)?;
        for found in metadata.topics() {
            for partition in found.partitions() {
                let (low, high) = reader
                    .fetch_watermarks(topic, partition.id(), wait)
                    .map_err(kafka_error)?;
                if high > low {
                    let from = low.max(high - MAX_PER_PARTITION);
                    assignment
                        .add_partition_offset(topic, partition.id(), Offset::Offset(from))
                        .map_err(kafka_error)?;
                    ends.insert((topic.clone(), partition.id()), high);
                }
            }
        }
    }
    let mut letters = Vec::new();
    if ends.is_empty() {
        return Ok(letters);
    }
    reader.assign(&assignment).map_err(kafka_error)?;
    let until = Instant::now() + READ_FOR;
    // Until every partition's end is reached and a poll then finds nothing more (a broker's
    // watermark can lag what it holds).
    loop {
        if Instant::now() >= until {
            return Err(too_slow());
        }
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let place = (message.topic().to_owned(), message.partition());
                if ends
                    .get(&place)
                    .is_some_and(|end| message.offset() + 1 >= *end)
                {
                    ends.remove(&place);
                }
                letters.push(Letter::of(&message));
            }
            Some(Err(e)) => return Err(kafka_error(e)),
            None if ends.is_empty() => return Ok(letters),
            None => {}
        }
    }
}

/// The letter at `offset` of `topic`'s `partition`; `None` when there is none there.
pub(super) fn read_one(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<Option<Letter>, Error> {
    let (low, high) = reader
        .fetch_watermarks(topic, partition, Duration::from_secs(3))
        .map_err(kafka_error)?;
    if offset < low || offset >= high {
        return Ok(None);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .map_err(kafka_error)?;
    reader.assign(&assignment).map_err(kafka_error)?;
    let until = Instant::now() + READ_FOR;
    while Instant::now() < until {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(message)) if message.offset() == offset => {
                return Ok(Some(Letter::of(&message)));
            }
            Some(Ok(message)) if message.offset() > offset => return Ok(None),
            Some(Err(e)) => return Err(kafka_error(e)),
            _ => {}
        }
    }
    Err(too_slow())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_a_place_in_one_of_the_groups_topics() {
        let topics = vec!["shop.orders.dlq.cart".to_owned()];
        assert_eq!(
            parse_id("shop.orders.dlq.cart:2:17", &topics),
            Some(("shop.orders.dlq.cart", 2, 17))
        );
        for id in [
            "shop.orders.dlq.payments:2:17",
            "shop.orders.dlq.cart:2",
            "shop.orders.dlq.cart:-1:17",
            "shop.orders.dlq.cart:0:x",
            "shop.orders.dlq.cart:0:-3",
            // One letter, one id: what the list wrote, not another spelling of its numbers.
            "shop.orders.dlq.cart:2:+17",
            "shop.orders.dlq.cart:02:17",
            "shop.orders.dlq.cart:2:017",
            "",
        ] {
            assert_eq!(parse_id(id, &topics), None, "{id}");
        }
    }
}
