//! A consumer that its group left without the partitions it should hold joins again
//! ([`watch_assignment`]).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    error::{KafkaError, KafkaResult, RDKafkaErrorCode},
};
use tokio::sync::watch;

use crate::metrics;

/// How often a consumer looks whether it holds no partition; the second look in a row that finds
/// none asks the broker whether it should ([`watch_assignment`]).
const ASSIGNMENT_CHECK: Duration = Duration::from_secs(5);
/// After the broker said a member with no partition is rightly so, how long before asking again.
const ASSIGNMENT_QUIET: Duration = Duration::from_secs(60);

/// Rejoins the group when it left this member without the partitions it should hold: the member
/// held none at two looks in a row, and the broker says the group is stable with no more members
/// than any subscribed topic has partitions (so the range assignor gives each member some of
/// every topic).
///
/// tansu 0.6 can end a rebalance that way, for good: a member that joins while the group's
/// previous leader is dead but not yet expired is told in the JoinGroup answer that the dead member
/// leads, so it syncs as a follower with no assignment; tansu then expires the dead leader, makes
/// the new member leader and keeps that empty assignment as the group's. Nothing changes after
/// that, so nothing rebalances. `xtask/tests/faults.rs` met it about once in four runs, after
/// orders was SIGKILLed and started again right after the broker: orders applied nothing until the
/// test gave up. A Kafka broker elects a live leader, so there this can fire only on a member
/// that lost its partitions in a rebalance and found none in the next, with the broker's view
/// taken in between; a member with no partition because the group has more members than
/// partitions is left alone, and asks the broker once a minute.
pub(super) async fn watch_assignment(
    consumer: Arc<StreamConsumer>,
    group: String,
    topics: Vec<String>,
    mut stop: watch::Receiver<bool>,
) {
    let mut empty_looks = 0u32;
    let mut quiet_until = Instant::now();
    let mut subscribed = true;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(ASSIGNMENT_CHECK) => {}
        }
        // librdkafka's calls wait on its own thread: off the runtime, and awaited (not detached),
        // so the consumer's last handle is `run`'s when it stops.
        let probe = consumer.clone();
        if !subscribed {
            let names = topics.clone();
            subscribed = tokio::task::spawn_blocking(move || rejoin(&probe, &names))
                .await
                .unwrap_or(false);
            continue;
        }
        let empty = consumer.assignment().is_ok_and(|a| a.count() == 0);
        empty_looks = if empty { empty_looks + 1 } else { 0 };
        if empty_looks < 2 || Instant::now() < quiet_until {
            continue;
        }
        let (name, names) = (group.clone(), topics.clone());
        let verdict = tokio::task::spawn_blocking(move || {
            let view = group_view(&probe, &name, &names)?;
            // Looked at again once the broker has answered: a join that ended meanwhile may have
            // brought partitions.
            let still_empty = probe.assignment().is_ok_and(|a| a.count() == 0);
            KafkaResult::Ok(still_empty && view.leaves_out_a_member())
                .map(|left_out| (left_out, view))
        })
        .await;
        match verdict {
            Ok(Ok((true, view))) => {
                tracing::warn!(
                    %group,
                    members = view.members,
                    partitions = ?view.partitions,
                    "the group gave this member no partition although it should hold some: rejoining"
                );
                metrics::backends()
                    .kafka_rejoins
                    .with_label_values(&[group.as_str()])
                    .inc();
                let (probe, names) = (consumer.clone(), topics.clone());
                subscribed = tokio::task::spawn_blocking(move || rejoin(&probe, &names))
                    .await
                    .unwrap_or(false);
                empty_looks = 0;
            }
            // Rightly empty (more members than partitions), or a join that just ended: asked
            // again only after a while, so a spare replica does not query the broker all the time.
            Ok(Ok((false, _))) => quiet_until = Instant::now() + ASSIGNMENT_QUIET,
            // The broker did not answer (or, the in-memory tansu, does not list a group that never
            // committed): asked again at the next look.
            _ => {}
        }
    }
}

/// Leaves the group and joins it again, as a new member; false when subscribing failed (tried
/// again at the next look: a consumer left unsubscribed would never consume again).
fn rejoin(consumer: &StreamConsumer, topics: &[String]) -> bool {
    consumer.unsubscribe();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    match consumer.subscribe(&names) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "subscribing again failed; trying again");
            false
        }
    }
}

/// What the broker says of a group, for [`watch_assignment`].
#[derive(Debug)]
struct GroupView {
    state: String,
    members: usize,
    /// The partition count of each subscribed topic.
    partitions: Vec<usize>,
}

impl GroupView {
    /// Whether a member that holds no partition was left out: with members ≤ partitions of every
    /// topic, the range assignor gives each member at least one of each.
    fn leaves_out_a_member(&self) -> bool {
        self.state == "Stable"
            && self.members >= 1
            && !self.partitions.is_empty()
            && self.partitions.iter().all(|&p| p >= self.members)
    }
}

/// The group's state and member count (librdkafka lists the groups of every broker, then describes
/// the one asked for) and the subscribed topics' partition counts (a metadata request each).
/// Blocking. tansu in memory lists only groups that have committed offsets: a group that never
/// committed is "not found".
fn group_view(consumer: &StreamConsumer, group: &str, topics: &[String]) -> KafkaResult<GroupView> {
    let timeout = Duration::from_secs(2);
    let list = consumer.fetch_group_list(Some(group), timeout)?;
    let Some(found) = list.groups().iter().find(|g| g.name() == group) else {
        return Err(KafkaError::GroupListFetch(
            RDKafkaErrorCode::GroupIdNotFound,
        ));
    };
    let mut partitions = Vec::with_capacity(topics.len());
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() => partitions.push(t.partitions().len()),
            _ => return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopic)),
        }
    }
    Ok(GroupView {
        state: found.state().to_string(),
        members: found.members().len(),
        partitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_without_partitions_is_left_out_only_when_it_should_hold_some() {
        let view = |state: &str, members, partitions: &[usize]| GroupView {
            state: state.into(),
            members,
            partitions: partitions.to_vec(),
        };
        // tansu's stuck group: one member, three partitions a topic, nothing assigned.
        assert!(view("Stable", 1, &[3, 3]).leaves_out_a_member());
        assert!(view("Stable", 3, &[3, 6]).leaves_out_a_member());
        // More replicas than some topic has partitions: an empty member is expected.
        assert!(!view("Stable", 4, &[3, 6]).leaves_out_a_member());
        // A rebalance under way, an unknown group or topic: wait.
        assert!(!view("PreparingRebalance", 1, &[3]).leaves_out_a_member());
        assert!(!view("Stable", 0, &[3]).leaves_out_a_member());
        assert!(!view("Stable", 1, &[]).leaves_out_a_member());
    }
}
