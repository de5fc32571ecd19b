//! The shop's topics on the test stack's real broker: created, grown, never shrunk, deleted.

use storefront_operator::kafka::{self, TopicError};
use support::{unique, var};

mod support;

fn bootstrap() -> String {
    var("STOREFRONT_TEST_KAFKA_BOOTSTRAP")
}

fn prefix() -> String {
    unique("op", '-')
}

#[tokio::test]
async fn topics_are_created_once_grown_when_asked_and_never_shrunk() {
    let (bootstrap, prefix) = (bootstrap(), prefix());
    let names = kafka::names(&prefix);
    assert_eq!(names[0], format!("{prefix}.users"));
    let topics = names.len();
    assert_eq!(topics, 6, "{names:?}");

    let first = kafka::ensure(&bootstrap, &prefix, 2, 1).await.unwrap();
    assert_eq!(first.created.len(), topics, "{first:?}");
    assert!(first.grown.is_empty() && first.larger.is_empty());
    let again = kafka::ensure(&bootstrap, &prefix, 2, 1).await.unwrap();
    assert!(
        again.created.is_empty() && again.grown.is_empty(),
        "{again:?}"
    );

    match kafka::ensure(&bootstrap, &prefix, 4, 1).await {
        Ok(grown) => assert_eq!(grown.grown.len(), topics, "{grown:?}"),
        // The local broker (tansu 0.6) has no CreatePartitions: the refusal is named (and becomes
        // KafkaReady=False, reason BrokerRefused), not hidden.
        Err(error) => {
            assert!(matches!(error, TopicError::Refused(_)), "{error}");
            assert!(error.to_string().contains("UnsupportedFeature"), "{error}");
        }
    }
    let smaller = kafka::ensure(&bootstrap, &prefix, 1, 1).await.unwrap();
    assert_eq!(
        smaller.larger.len(),
        topics,
        "kept, not shrunk: {smaller:?}"
    );
    assert!(smaller.grown.is_empty());

    match kafka::delete(&bootstrap, &prefix).await {
        Ok(()) => {
            // Deleting what is already gone is fine; then they can be made again.
            kafka::delete(&bootstrap, &prefix).await.unwrap();
            let remade = kafka::ensure(&bootstrap, &prefix, 1, 1).await.unwrap();
            assert_eq!(remade.created.len(), topics);
        }
        // The local broker (tansu 0.6) has no DeleteTopics: the refusal is named, not hidden.
        Err(error) => {
            assert!(matches!(error, TopicError::Refused(_)), "{error}");
            assert!(error.to_string().contains("UnsupportedFeature"), "{error}");
        }
    }
}

#[tokio::test]
async fn an_unreachable_broker_says_so() {
    let error = kafka::ensure("127.0.0.1:9", &prefix(), 1, 1)
        .await
        .unwrap_err();
    assert!(matches!(error, TopicError::Unreachable(_)), "{error}");
    assert!(
        error.to_string().starts_with("broker unreachable:"),
        "{error}"
    );
}
