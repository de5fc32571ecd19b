//! Where a consumer's partitions end, asked of the broker: whether a dozing consumer has something
//! to read, and the request that makes librdkafka fetch a resumed partition at once.

use super::*;

/// The ends (high watermarks) of `partitions`, in one list-offsets request to each leader
/// (timestamp -1 asks for the latest offset) rather than two a partition (`fetch_watermarks` asks
/// for both ends). `None` for no partition: librdkafka refuses such a request.
pub(super) fn ends_of(
    consumer: &StreamConsumer,
    partitions: &TopicPartitionList,
) -> Option<KafkaResult<TopicPartitionList>> {
    if partitions.count() == 0 {
        return None;
    }
    let mut ends = partitions.clone();
    if let Err(e) = ends.set_all_offsets(Offset::End) {
        return Some(Err(e));
    }
    Some(consumer.offsets_for_times(ends, Duration::from_secs(1)))
}

/// Makes librdkafka fetch the resumed `partitions` now. A resume clears their pause at once, but
/// the thread that fetches from their leader notices only when something wakes it — else after up
/// to a second (a resumed consumer took ~490 ms to fetch against tansu, every time). A request to
/// that leader wakes it: one list-offsets, whose answer does not matter.
pub(super) fn wake_fetcher(consumer: &StreamConsumer, partitions: &TopicPartitionList) {
    let _ = ends_of(consumer, partitions);
}

/// Whether a paused consumer has events to read: a partition whose end (high watermark) is past
/// where the consumer stands (its position, else its group's committed offset, else the start).
/// The group's committed offsets are asked only for a partition with no position yet. An error
/// counts as "yes" (waking costs little).
pub(super) fn has_unread(consumer: &StreamConsumer, partitions: &TopicPartitionList) -> bool {
    let timeout = Duration::from_secs(1);
    // A member with no partitions (more replicas than partitions) has nothing to read.
    let Some(ends) = ends_of(consumer, partitions) else {
        return false;
    };
    let Ok(ends) = ends else {
        return true;
    };
    let at = |list: &TopicPartitionList, topic: &str, partition: i32| match list
        .find_partition(topic, partition)?
        .offset()
    {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    };
    let positions = consumer.position().unwrap_or_default();
    let mut committed: Option<TopicPartitionList> = None;
    for end in ends.elements() {
        let (topic, partition) = (end.topic(), end.partition());
        let (Ok(()), Offset::Offset(high)) = (end.error(), end.offset()) else {
            return true;
        };
        let standing = at(&positions, topic, partition).or_else(|| {
            let committed = committed.get_or_insert_with(|| {
                consumer
                    .committed_offsets(partitions.clone(), timeout)
                    .unwrap_or_default()
            });
            at(committed, topic, partition)
        });
        // Neither a position nor a commit: the group starts at the log's start, which retention
        // may have moved past 0 (asked for only then).
        let standing = match standing {
            Some(offset) => offset,
            None => match consumer.fetch_watermarks(topic, partition, timeout) {
                Ok((low, _)) => low,
                Err(_) => return true,
            },
        };
        if high > standing {
            return true;
        }
    }
    false
}
