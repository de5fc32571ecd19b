//! Which offsets are done, so that only a prefix of done messages is committed to Kafka.

use super::*;

/// Commits, for every partition still ours, the offset below which every message is done.
pub(super) fn commit(consumer: &StreamConsumer, progress: &mut Progress) {
    let ready = progress.ready();
    if ready.is_empty() {
        return;
    }
    let assigned = consumer.assignment().unwrap_or_default();
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in ready {
        if assigned.find_partition(&topic, partition).is_some() {
            let _ = list.add_partition_offset(&topic, partition, Offset::Offset(offset));
        }
    }
    if list.count() == 0 {
        return;
    }
    if let Err(e) = consumer.commit(&list, CommitMode::Async) {
        tracing::warn!(error = %e, "offset commit failed; messages may be redelivered");
    }
}

/// Which offsets of each partition are done, so only a prefix of done messages is committed.
#[derive(Default)]
pub(super) struct Progress {
    partitions: HashMap<(String, i32), Partition>,
    generations: u64,
}

pub(super) struct Partition {
    /// Bumped when the partition starts over at an earlier offset (a rebalance gave it back):
    /// lanes' reports for the earlier run no longer count.
    generation: u64,
    /// Taken, not yet done.
    pending: BTreeSet<i64>,
    /// One past the last offset taken.
    next: i64,
    /// The last offset committed (the next one to read).
    committed: i64,
}

impl Progress {
    /// Records that `offset` was taken; answers its generation.
    pub(super) fn dispatched(&mut self, topic: &str, partition: i32, offset: i64) -> u64 {
        let generations = &mut self.generations;
        let entry = self
            .partitions
            .entry((topic.to_owned(), partition))
            .or_insert_with(|| {
                *generations += 1;
                Partition {
                    generation: *generations,
                    pending: BTreeSet::new(),
                    next: offset,
                    committed: offset,
                }
            });
        if offset < entry.next {
            *generations += 1;
            *entry = Partition {
                generation: *generations,
                pending: BTreeSet::new(),
                next: offset,
                committed: offset,
            };
        }
        entry.pending.insert(offset);
        entry.next = offset + 1;
        entry.generation
    }

    pub(super) fn done(&mut self, done: &Done) {
        if let Some(entry) = self
            .partitions
            .get_mut(&(done.topic.clone(), done.partition))
            && entry.generation == done.generation
        {
            entry.pending.remove(&done.offset);
        }
    }

    /// Partitions whose committable offset moved, with that offset.
    pub(super) fn ready(&mut self) -> Vec<(String, i32, i64)> {
        let mut ready = Vec::new();
        for ((topic, partition), entry) in &mut self.partitions {
            let position = entry.pending.first().copied().unwrap_or(entry.next);
            if position > entry.committed {
                entry.committed = position;
                ready.push((topic.clone(), *partition, position));
            }
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(offset: i64, generation: u64) -> Done {
        Done {
            topic: "t".into(),
            partition: 0,
            offset,
            generation,
        }
    }

    #[test]
    fn only_a_prefix_of_done_offsets_is_committed() {
        let mut progress = Progress::default();
        let g = progress.dispatched("t", 0, 10);
        progress.dispatched("t", 0, 11);
        progress.dispatched("t", 0, 12);
        progress.done(&done(11, g));
        progress.done(&done(12, g));
        assert!(progress.ready().is_empty(), "10 is still in flight");
        progress.done(&done(10, g));
        assert_eq!(progress.ready(), vec![("t".to_owned(), 0, 13)]);
        assert!(progress.ready().is_empty(), "nothing new");
    }

    #[test]
    fn a_partition_that_starts_over_ignores_the_earlier_run() {
        let mut progress = Progress::default();
        let first = progress.dispatched("t", 0, 10);
        progress.dispatched("t", 0, 11);
        // A rebalance handed the partition back from offset 10.
        let second = progress.dispatched("t", 0, 10);
        assert_ne!(first, second);
        progress.done(&done(11, first));
        progress.done(&done(10, first));
        assert!(progress.ready().is_empty(), "10 of the new run is not done");
        progress.done(&done(10, second));
        assert_eq!(progress.ready(), vec![("t".to_owned(), 0, 11)]);
    }
}
