//! The image bucket on the test stack's real S3 store.

use minio::s3::{MinioClientBuilder, creds::StaticProvider, http::BaseUrl};
use storefront_operator::storage::{Credentials, StorageError, delete_bucket, ensure_bucket};
use support::{unique, var};

mod support;

fn credentials() -> Credentials {
    Credentials {
        access_key: var("STOREFRONT_TEST_S3_ACCESS_KEY"),
        secret_key: var("STOREFRONT_TEST_S3_SECRET_KEY"),
    }
}

fn bucket() -> String {
    unique("op", '-')
}

#[tokio::test]
async fn the_bucket_is_made_once() {
    let (endpoint, bucket) = (var("STOREFRONT_TEST_S3_ENDPOINT"), bucket());
    assert!(
        ensure_bucket(&endpoint, &credentials(), &bucket)
            .await
            .unwrap()
    );
    assert!(
        !ensure_bucket(&endpoint, &credentials(), &bucket)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn wrong_keys_and_a_missing_store_are_reported_with_the_bucket() {
    let wrong = Credentials {
        access_key: "nobody".into(),
        secret_key: "not-the-secret".into(),
    };
    let error = ensure_bucket(&var("STOREFRONT_TEST_S3_ENDPOINT"), &wrong, &bucket())
        .await
        .unwrap_err();
    assert!(matches!(error, StorageError::Bucket { .. }), "{error}");
    assert!(error.to_string().starts_with("bucket op-"), "{error}");
    let error = ensure_bucket("http://127.0.0.1:9", &credentials(), &bucket())
        .await
        .unwrap_err();
    assert!(matches!(error, StorageError::Bucket { .. }), "{error}");
}

#[tokio::test]
async fn deletion_empties_the_bucket_at_every_depth_then_removes_it() {
    let (endpoint, bucket) = (var("STOREFRONT_TEST_S3_ENDPOINT"), bucket());
    ensure_bucket(&endpoint, &credentials(), &bucket)
        .await
        .unwrap();
    let client = MinioClientBuilder::new(endpoint.parse::<BaseUrl>().unwrap())
        .provider(Some(StaticProvider::new(
            &var("STOREFRONT_TEST_S3_ACCESS_KEY"),
            &var("STOREFRONT_TEST_S3_SECRET_KEY"),
            None,
        )))
        .build()
        .unwrap();
    for key in [
        "top.txt",
        "products/a/1.png",
        "products/a/2.png",
        "products/b/c/3.png",
    ] {
        client
            .put_object_content(bucket.as_str(), key, key.to_owned())
            .unwrap()
            .build()
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        delete_bucket(&endpoint, &credentials(), &bucket)
            .await
            .unwrap(),
        4
    );
    // Gone: making it again creates it, and deleting a missing bucket is not an error.
    assert_eq!(
        delete_bucket(&endpoint, &credentials(), &format!("{bucket}-missing"))
            .await
            .unwrap(),
        0
    );
    assert!(
        ensure_bucket(&endpoint, &credentials(), &bucket)
            .await
            .unwrap()
    );
    delete_bucket(&endpoint, &credentials(), &bucket)
        .await
        .unwrap();
}
