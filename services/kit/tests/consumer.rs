//! The consumer runner against real Kafka and MongoDB: redelivery is harmless, failures are
//! retried, poison events go to the dead-letter topic and do not stall the partition; events the
//! handler does not act on cost no MongoDB work and are still acknowledged; keys run concurrently,
//! each in order; an idle consumer that stopped fetching wakes for a new event.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
    },
    time::Duration,
};

use mongodb::{
    ClientSession, Collection,
    bson::{Document, doc},
};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer, StreamConsumer},
    message::{Header, Headers, OwnedHeaders},
    producer::FutureRecord,
};
use storefront_events::{
    Envelope, Event, dlq_topic,
    users::{UserCreated, UserUpdated},
};
use storefront_kit::{
    Error,
    config::KafkaConfig,
    deadletters::{DeadLetters, Status},
    kafka::{self, ConsumerRunner, ConsumerSettings, EventHandler, HandlerError, wake::Announcer},
    metrics,
    mongo::Mongo,
    testing::{TestStack, unique},
};
use tokio::sync::watch;
use uuid::Uuid;

/// Applies events by recording their ids; fails the first `fail_first` calls, and always for
/// events keyed `poison` until `cured`.
struct Recorder {
    applied: Collection<Document>,
    fail_first: AtomicU32,
    calls: AtomicU32,
    cured: AtomicBool,
}

impl EventHandler for Recorder {
    fn event_types(&self) -> &[&'static str] {
        &[UserUpdated::TYPE]
    }

    async fn handle(
        &self,
        event: &Envelope,
        session: &mut ClientSession,
    ) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if event.key == "poison" && !self.cured.load(Ordering::SeqCst) {
            return Err(HandlerError::Failed(
                "this event can never be applied".into(),
            ));
        }
        if self.fail_first.load(Ordering::SeqCst) > 0 {
            self.fail_first.fetch_sub(1, Ordering::SeqCst);
            return Err(HandlerError::Failed("transient trouble".into()));
        }
        self.applied
            .insert_one(doc! { "event_id": event.id.to_string() })
            .session(session)
            .await?;
        Ok(())
    }
}

struct Harness {
    kafka: KafkaConfig,
    mongo: Mongo,
    topic: String,
    group: String,
    handler: Arc<Recorder>,
    dead_letters: DeadLetters,
    stop: watch::Sender<bool>,
    runner: tokio::task::JoinHandle<()>,
}

async fn start(fail_first: u32) -> Harness {
    start_with(fail_first, None).await
}

/// [`start`], with a dozing consumer's looks `looks_every` apart and woken by the relays'
/// announcements on the test stack's Redis.
async fn start_with(fail_first: u32, woken: Option<Duration>) -> Harness {
    let stack = TestStack::from_env();
    let mut kafka = stack.kafka(&unique("t"));
    if let Some(every) = woken {
        kafka.idle_fetch_interval = Some(every);
    }
    let topic = format!("{}.users", kafka.topic_prefix);
    // Each step has its own deadline, so a hang names its step (one run of the whole suite timed
    // out in an_idle_consumer_that_stopped_fetching_wakes_for_a_new_event without saying where).
    tokio::time::timeout(
        Duration::from_secs(30),
        kafka::ensure_topics(&kafka, std::slice::from_ref(&topic)),
    )
    .await
    .expect("creating the topic took over 30 s")
    .unwrap();
    let mongo = Mongo::connect(&stack.mongo(&unique("consumer")), "test")
        .await
        .unwrap();
    let handler = Arc::new(Recorder {
        applied: mongo.db.collection("applied"),
        fail_first: AtomicU32::new(fail_first),
        calls: AtomicU32::new(0),
        cured: AtomicBool::new(false),
    });
    let group = unique("group");
    let mut settings = ConsumerSettings::new(&group, vec![topic.clone()]);
    settings.max_attempts = 3;
    settings.backoff = Duration::from_millis(10);
    let mut runner = ConsumerRunner::new(&kafka, settings, mongo.clone(), handler.clone())
        .await
        .unwrap();
    if woken.is_some() {
        runner = runner.woken_by(&stack.redis_url).unwrap();
    }
    let dead_letters = runner.dead_letters();
    let (stop, stopped) = watch::channel(false);
    let runner = tokio::spawn(runner.run(stopped));
    Harness {
        kafka,
        mongo,
        topic,
        group,
        handler,
        dead_letters,
        stop,
        runner,
    }
}

fn event(key: &str) -> Envelope {
    let data = UserUpdated {
        user_id: Uuid::new_v4().into(),
        email: "a@b.co".into(),
        name: "A".into(),
        role: storefront_events::users::Role::Customer,
        blocked: false,
        updated_at: chrono::Utc::now(),
    };
    Envelope::new("test", key, 1, data).into_raw().unwrap()
}

/// An event of a type [`Recorder`] does not act on.
fn unwanted(key: &str) -> Envelope {
    let data = UserCreated {
        user_id: Uuid::new_v4().into(),
        email: "a@b.co".into(),
        name: "A".into(),
        role: storefront_events::users::Role::Customer,
        created_at: chrono::Utc::now(),
    };
    Envelope::new("test", key, 1, data).into_raw().unwrap()
}

/// Polls `check` until it holds, failing the test after 60 s.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Harness {
    async fn send_raw(&self, key: &str, payload: &[u8]) {
        let producer = kafka::producer(&self.kafka).unwrap();
        producer
            .send(
                FutureRecord::to(&self.topic).key(key).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    async fn send(&self, event: &Envelope) {
        self.send_raw(&event.key, &serde_json::to_vec(event).unwrap())
            .await;
    }

    /// As the outbox relay sends it: with the `event-type` header.
    async fn send_as_relay(&self, event: &Envelope) {
        let headers = OwnedHeaders::new().insert(Header {
            key: "event-type",
            value: Some(event.event_type.as_str()),
        });
        self.send_with(event, headers).await;
    }

    /// With the trace context of whatever appended it (the relay's `traceparent` header).
    async fn send_traced(&self, event: &Envelope, traceparent: &str) {
        let headers = OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some(traceparent),
        });
        self.send_with(event, headers).await;
    }

    async fn send_with(&self, event: &Envelope, headers: OwnedHeaders) {
        let producer = kafka::producer(&self.kafka).unwrap();
        let payload = serde_json::to_vec(event).unwrap();
        let sent = producer.send(
            FutureRecord::to(&self.topic)
                .key(&event.key)
                .payload(&payload)
                .headers(headers),
            Duration::from_secs(10),
        );
        tokio::time::timeout(Duration::from_secs(30), sent)
            .await
            .expect("sending the event took over 30 s")
            .map_err(|(e, _)| e)
            .unwrap();
    }

    /// The group's committed offset of the topic's only partition.
    async fn committed_offset(&self) -> Option<i64> {
        let (kafka, group, topic) = (self.kafka.clone(), self.group.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = kafka::client_config(&kafka)
                .set("group.id", &group)
                .create()
                .unwrap();
            let mut list = TopicPartitionList::new();
            list.add_partition(&topic, 0);
            let committed = consumer
                .committed_offsets(list, Duration::from_secs(10))
                .ok()?;
            match committed.find_partition(&topic, 0)?.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            }
        })
        .await
        .unwrap()
    }

    async fn processed_records(&self) -> u64 {
        self.mongo
            .db
            .collection::<Document>("processed_events")
            .count_documents(doc! {})
            .await
            .unwrap()
    }

    async fn applied(&self, id: Uuid) -> u64 {
        self.handler
            .applied
            .count_documents(doc! { "event_id": id.to_string() })
            .await
            .unwrap()
    }

    /// Waits (with a deadline) until `id` was applied: everything sent before it on the same
    /// partition has been dealt with by then.
    async fn wait_applied(&self, id: Uuid) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.applied(id).await == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "event {id} was never applied"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.runner)
            .await
            .expect("the consumer did not stop within 30 s")
            .unwrap();
    }
}

#[tokio::test]
async fn a_redelivered_event_is_applied_once() {
    let h = start(0).await;
    let twice = event("k");
    h.send(&twice).await;
    h.send(&twice).await;
    let marker = event("k");
    h.send(&marker).await;
    h.wait_applied(marker.id).await;
    assert_eq!(h.applied(twice.id).await, 1);
    assert_eq!(
        h.handler.calls.load(Ordering::SeqCst),
        2,
        "the duplicate never reached the handler"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_failing_handler_is_retried_until_it_succeeds() {
    let h = start(2).await;
    let e = event("k");
    h.send(&e).await;
    h.wait_applied(e.id).await;
    assert_eq!(h.handler.calls.load(Ordering::SeqCst), 3);
    assert_eq!(h.applied(e.id).await, 1);
    h.stop().await;
}

/// The trace the poison event was appended in.
const POISON_TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// Sends an event the handler can never apply and a message that is not JSON, then one it
/// applies, and waits for that one; answers the poison event.
async fn poison_then_more(h: &Harness) -> Envelope {
    let poison = event("poison");
    h.send_traced(&poison, POISON_TRACE).await;
    h.send_raw("k", b"{not json").await;
    let after = event("k");
    h.send(&after).await;
    h.wait_applied(after.id).await;
    poison
}

#[tokio::test]
async fn poison_events_are_dead_lettered_and_do_not_stall_the_partition() {
    let h = start(0).await;
    let poison = poison_then_more(&h).await;

    let dlq: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &h.kafka.bootstrap_servers)
        .set("group.id", unique("dlq-check"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .create()
        .unwrap();
    dlq.subscribe(&[dlq_topic(&h.topic, &h.group).as_str()])
        .unwrap();
    let mut dead = Vec::new();
    for _ in 0..2 {
        let message = tokio::time::timeout(Duration::from_secs(30), dlq.recv())
            .await
            .unwrap()
            .unwrap();
        let headers = message.headers().unwrap();
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        dead.push((
            header("error").unwrap(),
            header("attempts").unwrap(),
            message.payload().map(<[u8]>::to_vec),
            header("traceparent"),
        ));
    }
    tokio::task::spawn_blocking(move || drop(dlq))
        .await
        .unwrap();
    // Different keys are applied concurrently: the two may reach the dead-letter topic either way.
    dead.sort_by_key(|(error, ..)| !error.contains("can never be applied"));
    assert!(dead[0].0.contains("can never be applied"));
    assert_eq!(dead[0].1, "3");
    assert_eq!(
        dead[0].3.as_deref(),
        Some(POISON_TRACE),
        "a dead letter keeps the trace of the event it holds"
    );
    assert_eq!(
        Envelope::from_slice(dead[0].2.as_deref().unwrap())
            .unwrap()
            .id,
        poison.id
    );
    assert!(dead[1].0.contains("malformed event"));
    assert_eq!(dead[1].2.as_deref(), Some(&b"{not json"[..]));
    h.stop().await;
}

/// An admin lists a group's dead letters, replays one once its cause is fixed (applied once, by
/// the group's own handler) and discards one that is not an event; each decision is made once.
#[tokio::test]
async fn dead_letters_are_listed_replayed_once_fixed_and_discarded() {
    let h = start(0).await;
    let poison = poison_then_more(&h).await;

    let dead = &h.dead_letters;
    eventually("both are dead letters", || async {
        dead.list().await.unwrap().items.len() == 2
    })
    .await;
    let list = dead.list().await.unwrap();
    assert_eq!((list.group.as_str(), list.open), (h.group.as_str(), 2));
    let find = |event: bool| {
        list.items
            .iter()
            .find(|l| l.event_type.is_some() == event)
            .unwrap()
            .clone()
    };
    let (poisoned, malformed) = (find(true), find(false));
    assert_eq!(poisoned.event_type.as_deref(), Some(UserUpdated::TYPE));
    assert_eq!(poisoned.event_id, Some(poison.id.to_string()));
    assert_eq!(poisoned.key.as_deref(), Some("poison"));
    assert_eq!(poisoned.topic, h.topic);
    assert!(
        poisoned.error.contains("can never be applied"),
        "{}",
        poisoned.error
    );
    assert_eq!(poisoned.attempts, Some(3));
    assert_eq!(poisoned.status, Status::Open);
    assert!(poisoned.dead_lettered_at.is_some());
    assert!(
        malformed.error.contains("malformed event"),
        "{}",
        malformed.error
    );
    assert_eq!(malformed.message, None, "not JSON");

    // Before the fix the handler fails again: nothing is recorded, it stays open.
    let conflict = |result: Result<_, Error>| match result {
        Err(Error::Conflict { kind, .. }) => kind,
        other => panic!("expected a conflict, got {other:?}"),
    };
    assert_eq!(
        conflict(dead.replay(&poisoned.id, "admin-1").await),
        "replay-failed"
    );
    assert_eq!(h.applied(poison.id).await, 0);
    h.handler.cured.store(true, Ordering::SeqCst);
    let replayed = dead.replay(&poisoned.id, "admin-1").await.unwrap();
    assert_eq!(replayed.status, Status::Replayed);
    assert_eq!(replayed.outcome.as_deref(), Some("applied"));
    assert_eq!(replayed.handled_by.as_deref(), Some("admin-1"));
    assert_eq!(h.applied(poison.id).await, 1);
    assert_eq!(
        conflict(dead.replay(&poisoned.id, "admin-2").await),
        "already-handled"
    );
    assert_eq!(
        conflict(dead.discard(&poisoned.id, "admin-2").await),
        "already-handled"
    );
    assert_eq!(h.applied(poison.id).await, 1, "applied once");

    assert_eq!(
        conflict(dead.replay(&malformed.id, "admin-1").await),
        "not-replayable"
    );
    let discarded = dead.discard(&malformed.id, "admin-1").await.unwrap();
    assert_eq!(discarded.status, Status::Discarded);
    assert_eq!(
        conflict(dead.discard(&malformed.id, "admin-1").await),
        "already-handled"
    );

    let list = dead.list().await.unwrap();
    assert_eq!(list.open, 0);
    let statuses: Vec<Status> = list.items.iter().map(|l| l.status).collect();
    assert!(statuses.contains(&Status::Replayed) && statuses.contains(&Status::Discarded));

    // Ids that name nothing of this group.
    let (topic, _) = poisoned.id.split_once(':').unwrap();
    for id in [
        format!("{topic}:0:999999"),
        format!("{}.dlq.someone-else:0:0", h.topic),
        "nonsense".to_owned(),
    ] {
        assert!(
            matches!(dead.replay(&id, "admin-1").await, Err(Error::NotFound(_))),
            "{id}"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn events_the_handler_does_not_act_on_cost_no_mongodb_work_and_are_acknowledged() {
    let h = start(0).await;
    // One as the relay sends it (typed by its header), one from a producer without headers.
    h.send_as_relay(&unwanted("k")).await;
    h.send(&unwanted("k")).await;
    let marker = event("k");
    h.send_as_relay(&marker).await;
    h.wait_applied(marker.id).await;
    assert_eq!(
        h.handler.calls.load(Ordering::SeqCst),
        1,
        "only the wanted event reached the handler"
    );
    assert_eq!(
        h.processed_records().await,
        1,
        "no processed-event record for the others"
    );
    eventually("all three offsets committed", || async {
        h.committed_offset().await == Some(3)
    })
    .await;
    h.stop().await;
}

/// Records the order events are applied in, and how many run at once.
struct Sequencer {
    applied: Mutex<Vec<(String, String)>>,
    running: AtomicUsize,
    most: AtomicUsize,
}

impl EventHandler for Sequencer {
    fn event_types(&self) -> &[&'static str] {
        &[UserUpdated::TYPE]
    }

    async fn handle(&self, event: &Envelope, _: &mut ClientSession) -> Result<(), HandlerError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        let name = event.data["name"].as_str().unwrap_or_default().to_owned();
        self.applied.lock().unwrap().push((event.key.clone(), name));
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn keys_are_applied_concurrently_and_each_key_in_order() {
    let most = five_events_of_eight_keys(|settings| settings).await;
    assert!(most > 1, "events of different keys never ran at once");
}

#[tokio::test]
async fn a_group_limited_to_one_lane_applies_one_event_at_a_time_in_order() {
    let most = five_events_of_eight_keys(|settings| settings.max_lanes(1)).await;
    assert_eq!(most, 1, "events ran at once in a group limited to one lane");
}

/// Sends five events for each of eight keys to a consumer with `settings`, checks each key's
/// events were applied in order, and answers how many handlers ran at once at most.
async fn five_events_of_eight_keys(
    settings: impl FnOnce(ConsumerSettings) -> ConsumerSettings,
) -> usize {
    let stack = TestStack::from_env();
    let kafka = stack.kafka(&unique("t"));
    let topic = format!("{}.users", kafka.topic_prefix);
    kafka::ensure_topics(&kafka, std::slice::from_ref(&topic))
        .await
        .unwrap();
    let mongo = Mongo::connect(&stack.mongo(&unique("consumer")), "test")
        .await
        .unwrap();
    let handler = Arc::new(Sequencer {
        applied: Mutex::default(),
        running: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
    });
    let settings = settings(ConsumerSettings::new(&unique("group"), vec![topic.clone()]));
    let runner = ConsumerRunner::new(&kafka, settings, mongo, handler.clone())
        .await
        .unwrap();
    let (stop, stopped) = watch::channel(false);
    let runner = tokio::spawn(runner.run(stopped));

    let producer = kafka::producer(&kafka).unwrap();
    let keys: Vec<String> = (0..8).map(|k| format!("key-{k}")).collect();
    for n in 0..5 {
        for key in &keys {
            let mut e = event(key);
            e.data["name"] = serde_json::json!(n.to_string());
            producer
                .send(
                    FutureRecord::to(&topic)
                        .key(key)
                        .payload(&serde_json::to_vec(&e).unwrap()),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    }
    eventually("all 40 events applied", || async {
        handler.applied.lock().unwrap().len() == 40
    })
    .await;
    let applied = handler.applied.lock().unwrap().clone();
    for key in &keys {
        let order: Vec<&str> = applied
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, n)| n.as_str())
            .collect();
        assert_eq!(order, ["0", "1", "2", "3", "4"], "{key} out of order");
    }
    stop.send(true).unwrap();
    runner.await.unwrap();
    handler.most.load(Ordering::SeqCst)
}

#[tokio::test]
async fn an_idle_consumer_that_stopped_fetching_wakes_for_a_new_event() {
    let h = start(0).await;
    let idle = metrics::backends()
        .kafka_consumer_idle
        .with_label_values(&[h.group.as_str()]);
    eventually("the consumer dozes", || async { idle.get() == 1 }).await;
    let e = event("k");
    h.send_as_relay(&e).await;
    h.wait_applied(e.id).await;
    h.stop().await;
}

/// A dozing consumer whose own looks are a minute apart applies a new event within seconds when a
/// relay announces its topic (`services/kit/src/kafka/wake.rs`).
#[tokio::test]
async fn a_dozing_consumer_wakes_at_once_when_a_relay_announces_its_topic() {
    let h = start_with(0, Some(Duration::from_secs(60))).await;
    let idle = metrics::backends()
        .kafka_consumer_idle
        .with_label_values(&[h.group.as_str()]);
    // Assigned and reading first: a consumer that dozes before its partitions are assigned gets
    // them unpaused, and would read the next event without any wake-up.
    let first = event("k");
    h.send_as_relay(&first).await;
    h.wait_applied(first.id).await;
    eventually("the consumer is awake", || async { idle.get() == 0 }).await;
    eventually("the consumer dozes again", || async { idle.get() == 1 }).await;
    let e = event("k");
    h.send_as_relay(&e).await;
    let redis = redis::Client::open(TestStack::from_env().redis_url.as_str())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let announced = std::time::Instant::now();
    Announcer::new(redis).announce([h.topic.as_str()]);
    h.wait_applied(e.id).await;
    assert!(
        announced.elapsed() < Duration::from_secs(10),
        "the consumer waited for its own look ({:?}), not the announcement",
        announced.elapsed()
    );
    h.stop().await;
}

/// Applies every event it is given by recording it; events waiting in a row may come together
/// ([`EventHandler::handle_all`]), except those named `solo-…`. The event keyed `slow` takes a
/// second, so the events sent behind it wait in the lane; one named `poison` always fails.
struct Batcher {
    applied: Collection<Document>,
    order: Mutex<Vec<(String, String)>>,
    batches: Mutex<Vec<usize>>,
}

impl Batcher {
    async fn record(
        &self,
        event: &Envelope,
        session: &mut ClientSession,
    ) -> Result<(), HandlerError> {
        let name = event.data["name"].as_str().unwrap_or_default().to_owned();
        if name == "poison" {
            return Err(HandlerError::Failed(
                "this event can never be applied".into(),
            ));
        }
        self.applied
            .insert_one(doc! { "event_id": event.id.to_string() })
            .session(session)
            .await?;
        Ok(())
    }
}

impl EventHandler for Batcher {
    fn event_types(&self) -> &[&'static str] {
        &[UserUpdated::TYPE]
    }

    fn records_processed(&self, _: &Envelope) -> bool {
        false
    }

    fn batchable(&self, event: &Envelope) -> bool {
        !event.data["name"]
            .as_str()
            .unwrap_or_default()
            .starts_with("solo")
    }

    async fn handle(
        &self,
        event: &Envelope,
        session: &mut ClientSession,
    ) -> Result<(), HandlerError> {
        if event.key == "slow" {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.record(event, session).await
    }

    async fn handle_all(
        &self,
        events: &[&Envelope],
        session: &mut ClientSession,
    ) -> Result<(), HandlerError> {
        for event in events {
            self.record(event, session).await?;
        }
        self.batches.lock().unwrap().push(events.len());
        Ok(())
    }

    fn committed(&self, event: &Envelope) {
        let name = event.data["name"].as_str().unwrap_or_default().to_owned();
        self.order.lock().unwrap().push((event.key.clone(), name));
    }
}

#[tokio::test]
async fn a_lane_behind_applies_the_events_waiting_in_a_row_in_one_transaction() {
    let stack = TestStack::from_env();
    let kafka = stack.kafka(&unique("t"));
    let topic = format!("{}.users", kafka.topic_prefix);
    kafka::ensure_topics(&kafka, std::slice::from_ref(&topic))
        .await
        .unwrap();
    let mongo = Mongo::connect(&stack.mongo(&unique("consumer")), "test")
        .await
        .unwrap();
    let handler = Arc::new(Batcher {
        applied: mongo.db.collection("applied"),
        order: Mutex::default(),
        batches: Mutex::default(),
    });
    let group = unique("group");
    let mut settings = ConsumerSettings::new(&group, vec![topic.clone()]).max_lanes(1);
    settings.max_attempts = 2;
    settings.backoff = Duration::from_millis(10);
    let runner = ConsumerRunner::new(&kafka, settings, mongo, handler.clone())
        .await
        .unwrap();
    let (stop, stopped) = watch::channel(false);
    let runner = tokio::spawn(runner.run(stopped));
    let producer = kafka::producer(&kafka).unwrap();
    let send = |key: &str, name: &str| {
        let mut e = event(key);
        e.data["name"] = serde_json::json!(name);
        let payload = serde_json::to_vec(&e).unwrap();
        let (producer, topic, key) = (producer.clone(), topic.clone(), key.to_owned());
        async move {
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
            e.id
        }
    };
    // Twenty events behind a slow one: applied together once it is done, but for the four that
    // must go alone (each key's events still in their order).
    send("slow", "slow-1").await;
    let mut expected = vec![("slow".to_owned(), "slow-1".to_owned())];
    for n in 0..20 {
        let key = format!("key-{}", n % 3);
        let name = if n % 5 == 2 {
            format!("solo-{n}")
        } else {
            n.to_string()
        };
        send(&key, &name).await;
        expected.push((key, name));
    }
    eventually("the first 21 events applied", || async {
        handler.order.lock().unwrap().len() == 21
    })
    .await;
    let batches = handler.batches.lock().unwrap().clone();
    assert!(
        batches.iter().any(|&n| n > 1),
        "the waiting events were applied one transaction each: {batches:?}"
    );
    // A poison event among the waiting ones: the batch rolls back, and its events are applied
    // one by one, the poison dead-lettered on its own.
    send("slow", "slow-2").await;
    expected.push(("slow".to_owned(), "slow-2".to_owned()));
    for n in 20..30 {
        let key = format!("key-{}", n % 3);
        let name = if n == 25 {
            "poison".to_owned()
        } else {
            n.to_string()
        };
        send(&key, &name).await;
        if n != 25 {
            expected.push((key, name));
        }
    }
    eventually("every good event applied", || async {
        handler.order.lock().unwrap().len() == 31
    })
    .await;
    // Each key's events in the order sent (the ones that go alone may come after the batch
    // gathered around them).
    let order = handler.order.lock().unwrap().clone();
    for key in ["slow", "key-0", "key-1", "key-2"] {
        let of = |list: &[(String, String)]| {
            list.iter()
                .filter(|(k, _)| k == key)
                .map(|(_, name)| name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(of(&order), of(&expected), "{key}'s events out of order");
    }
    let applied = handler.applied.count_documents(doc! {}).await.unwrap();
    assert_eq!(applied, 31, "every good event once, the poison never");
    let dead_lettered = metrics::backends()
        .kafka_deliveries
        .with_label_values(&[group.as_str(), "dead_lettered"])
        .get();
    assert_eq!(dead_lettered, 1);
    stop.send(true).unwrap();
    runner.await.unwrap();
}
