//! The outbox: user events reach Kafka exactly once, even across a relay restart.

use std::{collections::HashMap, time::Duration};

use mongodb::bson::{Document, doc};
use storefront_events::{Envelope, Topic, users::UserUpdated};
use storefront_kit::outbox::Outbox;
use tokio::sync::watch;

use crate::helpers::*;

async fn consume_all(app: &TestApp, topic: &str, expected: usize) -> Vec<Envelope> {
    storefront_kit::testing::consume(&app.stack.kafka_bootstrap, topic, expected).await
}

#[tokio::test]
async fn signup_publishes_one_user_created_event() {
    let app = spawn_with(
        config(&storefront_kit::testing::TestStack::from_env()),
        true,
    )
    .await;
    let session = app.signup(&email()).await;
    let topic = Topic::Users.name(&app.config.kafka.topic_prefix);
    // The bootstrap admin and the new user.
    let events = consume_all(&app, &topic, 2).await;
    let mine: Vec<_> = events.iter().filter(|e| e.key == session.user_id).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].event_type, "user.created");
    assert_eq!(mine[0].version, 1);
    assert_eq!(mine[0].source, "auth");
    assert!(mine[0].data.get("password_hash").is_none());
    if let Some(stop) = &app.stop_relay {
        stop.send(true).unwrap();
    }
}

#[tokio::test]
async fn events_reach_kafka_exactly_once_across_a_relay_restart() {
    const EVENTS: usize = 300;
    let app = spawn_app().await;
    let prefix = app.config.kafka.topic_prefix.clone();
    let mongo = storefront_kit::mongo::Mongo::connect(&app.config.mongo, "test")
        .await
        .unwrap();
    let outbox = Outbox::new(&mongo.db, &prefix);
    let mut session = mongo.client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    for version in 1..=EVENTS as u64 {
        let data = UserUpdated {
            user_id: uuid::Uuid::new_v4().into(),
            email: "a@b.co".into(),
            name: format!("n{version}"),
            role: storefront_events::users::Role::Customer,
            blocked: false,
            updated_at: chrono::Utc::now(),
        };
        outbox
            .append(&mut session, Envelope::new("auth", "user-1", version, data))
            .await
            .unwrap();
    }
    session.commit_transaction().await.unwrap();

    let records = mongo.db.collection::<Document>("outbox");
    let producer = storefront_kit::kafka::producer(&app.config.kafka).unwrap();
    let (stop, stopped) = watch::channel(false);
    let first = tokio::spawn(outbox.relay(&mongo.db, producer.clone()).run(stopped));
    // Stop the relay as soon as it has published some, but not all.
    loop {
        let sent = records
            .count_documents(doc! { "sent": true })
            .await
            .unwrap();
        if sent > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stop.send(true).unwrap();
    first.await.unwrap();
    let sent_before_restart = records
        .count_documents(doc! { "sent": true })
        .await
        .unwrap() as usize;
    assert!(
        sent_before_restart < EVENTS + 1,
        "the relay finished before it could be stopped mid-way"
    );

    let (stop, stopped) = watch::channel(false);
    let second = tokio::spawn(outbox.relay(&mongo.db, producer).run(stopped));
    // The bootstrap admin's `user.created` shares the outbox; keep ours.
    let events: Vec<Envelope> = consume_all(&app, &Topic::Users.name(&prefix), EVENTS + 1)
        .await
        .into_iter()
        .filter(|e| e.key == "user-1")
        .collect();
    stop.send(true).unwrap();
    second.await.unwrap();

    let mut seen: HashMap<uuid::Uuid, usize> = HashMap::new();
    for event in &events {
        *seen.entry(event.id).or_default() += 1;
    }
    assert_eq!(
        events.len(),
        EVENTS,
        "{sent_before_restart} were sent before the restart"
    );
    assert!(seen.values().all(|&n| n == 1));
    // In order: one aggregate's versions arrive ascending.
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]));
}
