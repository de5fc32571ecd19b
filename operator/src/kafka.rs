//! A shop's Kafka topics — `{prefix}.{users,products,carts,orders,payments,product-views}`,
//! the prefix being the shop's name — made with the admin API: missing topics are created, topics
//! with fewer partitions than the spec are grown, and topics with more are left alone (Kafka
//! cannot shrink a topic). The services' consumers make their own dead-letter topics.

use std::time::Duration;

use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::KafkaError,
    types::RDKafkaErrorCode,
};
use storefront_events::Topic;

const TIMEOUT: Duration = Duration::from_secs(10);

/// What the topics look like after [`ensure`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Topics {
    pub created: Vec<String>,
    pub grown: Vec<String>,
    /// Topics with more partitions than asked (kept).
    pub larger: Vec<String>,
    pub total: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("broker unreachable: {0}")]
    Unreachable(String),
    #[error("the broker refused: {0}")]
    Refused(String),
    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
}

pub fn names(prefix: &str) -> Vec<String> {
    Topic::ALL.iter().map(|t| t.name(prefix)).collect()
}

fn admin(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>, TopicError> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "10000")
        .create()
        .map_err(|e| TopicError::Unreachable(e.to_string()))
}

/// Partition counts of the topics that exist, by name (the metadata call blocks, so it runs on
/// the blocking pool and hands the client back).
async fn partitions(
    admin: AdminClient<DefaultClientContext>,
    topics: &[String],
) -> Result<
    (
        AdminClient<DefaultClientContext>,
        Vec<(String, Option<usize>)>,
    ),
    TopicError,
> {
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let metadata = admin
            .inner()
            .fetch_metadata(None, TIMEOUT)
            .map_err(|e| TopicError::Unreachable(e.to_string()))?;
        let counts = topics
            .into_iter()
            .map(|name| {
                let count = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == name && t.error().is_none())
                    .map(|t| t.partitions().len());
                (name, count)
            })
            .collect();
        Ok((admin, counts))
    })
    .await
    .map_err(|e| TopicError::Unreachable(e.to_string()))?
}

/// A failed admin call: the broker said no (`Refused`), or could not be asked (`Unreachable`).
fn failed(error: KafkaError) -> TopicError {
    match error {
        KafkaError::AdminOp(code) => TopicError::Refused(code.to_string()),
        other => TopicError::Unreachable(other.to_string()),
    }
}

/// Collects the topics an admin call changed; `tolerated` is the answer that means "already so".
fn check(
    results: Vec<Result<String, (String, RDKafkaErrorCode)>>,
    tolerated: RDKafkaErrorCode,
    done: &mut Vec<String>,
) -> Result<(), TopicError> {
    for result in results {
        match result {
            Ok(topic) => done.push(topic),
            Err((_, code)) if code == tolerated => {}
            Err((topic, code)) => {
                return Err(TopicError::Topic {
                    topic,
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Makes the shop's topics exist with at least `partitions` partitions.
pub async fn ensure(
    bootstrap: &str,
    prefix: &str,
    partitions_wanted: i32,
    replication: i16,
) -> Result<Topics, TopicError> {
    let names = names(prefix);
    let (admin, live) = partitions(admin(bootstrap)?, &names).await?;
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let wanted = usize::try_from(partitions_wanted.max(1)).unwrap_or(1);
    let mut report = Topics {
        total: names.len(),
        ..Topics::default()
    };

    let missing: Vec<NewTopic> = live
        .iter()
        .filter(|(_, count)| count.is_none())
        .map(|(name, _)| {
            NewTopic::new(
                name,
                partitions_wanted.max(1),
                TopicReplication::Fixed(i32::from(replication)),
            )
        })
        .collect();
    if !missing.is_empty() {
        let results = admin
            .create_topics(&missing, &options)
            .await
            .map_err(failed)?;
        // Made meanwhile by someone else: fine.
        check(
            results,
            RDKafkaErrorCode::TopicAlreadyExists,
            &mut report.created,
        )?;
    }

    let small: Vec<NewPartitions> = live
        .iter()
        .filter_map(|(name, count)| match count {
            Some(n) if *n < wanted => Some(NewPartitions::new(name, wanted)),
            _ => None,
        })
        .collect();
    if !small.is_empty() {
        let results = admin
            .create_partitions(&small, &options)
            .await
            .map_err(failed)?;
        check(
            results,
            RDKafkaErrorCode::InvalidPartitions,
            &mut report.grown,
        )?;
    }
    report.larger = live
        .iter()
        .filter(|(_, count)| count.is_some_and(|n| n > wanted))
        .map(|(name, _)| name.clone())
        .collect();
    Ok(report)
}

/// Deletes the shop's topics (`deletionPolicy: Delete`). Topics already gone are fine.
pub async fn delete(bootstrap: &str, prefix: &str) -> Result<(), TopicError> {
    let admin = admin(bootstrap)?;
    let names = names(prefix);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let results = admin.delete_topics(&refs, &options).await.map_err(failed)?;
    check(
        results,
        RDKafkaErrorCode::UnknownTopicOrPartition,
        &mut Vec::new(),
    )?;
    Ok(())
}
