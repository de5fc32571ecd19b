//! The outbox relay against real MongoDB and Kafka: a backlog goes out in order in batches, each
//! marked sent with one update, and a commit in this process wakes the relay without any polling;
//! an append that meets a concurrent transaction fails transiently, so the transaction is run
//! again rather than failing its request or its event. (Events a broker lost are published again:
//! the fault test, `xtask/tests/faults.rs`, restarts the broker.)

use std::time::Duration;

use mongodb::bson::{Document, doc};
use storefront_events::{Envelope, Topic, users::UserUpdated};
use storefront_kit::{
    config::KafkaConfig,
    kafka, metrics,
    mongo::{Mongo, Transient},
    outbox::{MARK_AT, Outbox},
    testing::{TestStack, consume, unique},
};
use tokio::sync::watch;
use uuid::Uuid;

fn updated(version: u64) -> Envelope<UserUpdated> {
    let data = UserUpdated {
        user_id: Uuid::new_v4().into(),
        email: "a@b.co".into(),
        name: "A".into(),
        role: storefront_events::users::Role::Customer,
        blocked: false,
        updated_at: chrono::Utc::now(),
    };
    Envelope::new("test", "user-1", version, data)
}

async fn append(mongo: &Mongo, outbox: &Outbox, version: u64) {
    let mut session = mongo.begin().await.unwrap();
    outbox.append(&mut session, updated(version)).await.unwrap();
    outbox.commit(session).await.unwrap();
}

async fn unsent(mongo: &Mongo) -> u64 {
    mongo
        .db
        .collection::<Document>("outbox")
        .count_documents(doc! { "sent": false })
        .await
        .unwrap()
}

/// A topic and an outbox database of their own, on the test stack.
struct Shop {
    stack: TestStack,
    kafka: KafkaConfig,
    topic: String,
    mongo: Mongo,
    outbox: Outbox,
}

async fn shop() -> Shop {
    let stack = TestStack::from_env();
    let kafka = stack.kafka(&unique("t"));
    let topic = Topic::Users.name(&kafka.topic_prefix);
    kafka::ensure_topics(&kafka, std::slice::from_ref(&topic))
        .await
        .unwrap();
    let mongo = Mongo::connect(&stack.mongo(&unique("outbox")), "test")
        .await
        .unwrap();
    let outbox = Outbox::new(&mongo.db, &kafka.topic_prefix);
    outbox.ensure_indexes().await.unwrap();
    Shop {
        stack,
        kafka,
        topic,
        mongo,
        outbox,
    }
}

/// A relay on its own task whose recovery read, after the first, never comes: what it publishes
/// later, it was handed.
struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(outbox: &Outbox, mongo: &Mongo, kafka: &KafkaConfig) -> Running {
        let relay = outbox
            .relay(&mongo.db, kafka::producer(kafka).unwrap())
            .recovery_poll(Duration::from_secs(3600));
        let (stop, stopped) = watch::channel(false);
        Running {
            stop,
            task: tokio::spawn(relay.run(stopped)),
        }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }
}

#[tokio::test]
async fn a_backlog_goes_out_in_order_in_batches_and_a_commit_wakes_the_relay() {
    let Shop {
        stack,
        kafka,
        topic,
        mongo,
        outbox,
    } = shop().await;
    for version in 1..=150 {
        append(&mongo, &outbox, version).await;
    }
    let updates = metrics::backends()
        .mongodb_commands
        .with_label_values(&["update", "outbox"]);
    let updates_before = updates.get();
    // No recovery poll to speak of: only the hand-off can make it publish the last event.
    let relay = Running::start(&outbox, &mongo, &kafka);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while unsent(&mongo).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backlog was never marked sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        updates.get() - updates_before,
        2,
        "one update marks each batch of up to 100 sent"
    );
    append(&mongo, &outbox, 151).await;

    let events = consume(&stack.kafka_bootstrap, &topic, 151).await;
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert_eq!(
        versions,
        (1..=151).collect::<Vec<_>>(),
        "in order, once each"
    );
    relay.stop().await;
}

#[tokio::test]
async fn an_append_that_meets_a_concurrent_transaction_fails_transiently() {
    let stack = TestStack::from_env();
    let mongo = Mongo::connect(&stack.mongo(&unique("outbox")), "test")
        .await
        .unwrap();
    let outbox = Outbox::new(&mongo.db, "t");
    outbox.ensure_indexes().await.unwrap();
    let event = updated(1);
    let mut first = mongo.begin().await.unwrap();
    outbox.append(&mut first, event.clone()).await.unwrap();
    // A second transaction writes the same record while the first is open: a write conflict.
    let mut second = mongo.begin().await.unwrap();
    let error = outbox
        .append(&mut second, event)
        .await
        .expect_err("the record is being written by the first transaction");
    assert!(
        error.is_transient(),
        "a write conflict is worth running the transaction again: {error}"
    );
    let _ = second.abort_transaction().await;
    first.commit_transaction().await.unwrap();
}

#[tokio::test]
async fn committed_records_go_out_without_reading_the_outbox_and_are_marked_together() {
    let Shop {
        stack,
        kafka,
        topic,
        mongo,
        outbox,
    } = shop().await;
    let commands = |command: &str| {
        metrics::backends()
            .mongodb_commands
            .with_label_values(&[command, "outbox"])
    };
    let relay = Running::start(&outbox, &mongo, &kafka);
    // The relay's first round reads the (empty) outbox; nothing reads it after that.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while commands("find").get() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no first read");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (finds, updates) = (commands("find").get(), commands("update").get());

    // An append whose transaction aborts is never sent, though its session is used again.
    let mut aborted = mongo.begin().await.unwrap();
    outbox.append(&mut aborted, updated(1_000)).await.unwrap();
    aborted.abort_transaction().await.unwrap();
    drop(aborted);
    for version in 1..=20 {
        append(&mongo, &outbox, version).await;
        // Paced a little, so the relay is not 13 records behind at once (then one mark could
        // hold them all).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let events = consume(&stack.kafka_bootstrap, &topic, 20).await;
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert_eq!(
        versions,
        (1..=20).collect::<Vec<_>>(),
        "in order, once each"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while unsent(&mongo).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the records were never marked sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let checks = commands("find").get() - finds;
    assert!(
        checks <= 20,
        "handed-off records are not read back: at most a check for older unsent ones a batch, not {checks}"
    );
    // Marked together, and at least every MARK_AT records (20 appends take well under
    // MARK_EVERY): the check before each hand-off reads every record sent and not yet marked.
    let marks = commands("update").get() - updates;
    assert_eq!(MARK_AT, 8, "the bounds below are for marks every 8 records");
    assert!(
        (2..=4).contains(&marks),
        "20 transactions' records are marked sent in 2 to 4 updates, not {marks}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_handed_off_record_waits_for_an_older_unsent_one() {
    let Shop {
        stack,
        kafka,
        topic,
        mongo,
        outbox,
    } = shop().await;
    let relay = Running::start(&outbox, &mongo, &kafka);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Version 1 is committed where this relay is not told (another replica, a commit whose
    // answer was lost); version 2, of the same key, is handed to it.
    let elsewhere = Outbox::new(&mongo.db, &kafka.topic_prefix);
    let mut session = mongo.begin().await.unwrap();
    elsewhere.append(&mut session, updated(1)).await.unwrap();
    session.commit_transaction().await.unwrap();
    append(&mongo, &outbox, 2).await;

    let events = consume(&stack.kafka_bootstrap, &topic, 2).await;
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert_eq!(versions, vec![1, 2], "the older record goes first");
    relay.stop().await;
}
