//! The shop's image bucket in the object store (MinIO or any S3), made with the `minio` client
//! and the credentials from the Secret `objectStorage.credentialsSecret` (keys `accessKey`,
//! `secretKey`) that the services use too.

use futures::StreamExt;
use minio::s3::{
    MinioClient, MinioClientBuilder,
    creds::StaticProvider,
    http::BaseUrl,
    types::{S3Api, ToStream},
};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("secret {secret}: {reason}")]
    Credentials { secret: String, reason: String },
    #[error("bucket {bucket}: {reason}")]
    Bucket { bucket: String, reason: String },
}

/// The keys to the object store. `Debug` leaves the secret key out.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"[REDACTED]")
            .finish()
    }
}

fn client(endpoint: &str, credentials: &Credentials) -> Result<MinioClient, String> {
    let base: BaseUrl = endpoint
        .parse()
        .map_err(|e| format!("endpoint {endpoint:?}: {e:?}"))?;
    MinioClientBuilder::new(base)
        .provider(Some(StaticProvider::new(
            &credentials.access_key,
            &credentials.secret_key,
            None,
        )))
        .build()
        .map_err(|e| format!("{e:?}"))
}

/// The error about `bucket` with `reason`.
fn failed(bucket: &str) -> impl Fn(String) -> StorageError + '_ {
    move |reason| StorageError::Bucket {
        bucket: bucket.to_owned(),
        reason,
    }
}

/// A client for the store, and whether `bucket` exists in it.
async fn open(
    endpoint: &str,
    credentials: &Credentials,
    bucket: &str,
) -> Result<(MinioClient, bool), StorageError> {
    let failed = failed(bucket);
    let client = client(endpoint, credentials).map_err(&failed)?;
    let exists = client
        .bucket_exists(bucket)
        .map_err(|e| failed(format!("{e:?}")))?
        .build()
        .send()
        .await
        .map_err(|e| failed(format!("{e}")))?
        .exists();
    Ok((client, exists))
}

/// Whether `bucket` exists.
pub async fn bucket_exists(
    endpoint: &str,
    credentials: &Credentials,
    bucket: &str,
) -> Result<bool, StorageError> {
    open(endpoint, credentials, bucket)
        .await
        .map(|(_, exists)| exists)
}

/// Makes the bucket exist; answers whether it was created now.
pub async fn ensure_bucket(
    endpoint: &str,
    credentials: &Credentials,
    bucket: &str,
) -> Result<bool, StorageError> {
    let failed = failed(bucket);
    let (client, exists) = open(endpoint, credentials, bucket).await?;
    if exists {
        return Ok(false);
    }
    client
        .create_bucket(bucket)
        .map_err(|e| failed(format!("{e:?}")))?
        .build()
        .send()
        .await
        .map_err(|e| failed(format!("{e}")))?;
    Ok(true)
}

/// Empties the bucket and deletes it (`deletionPolicy: Delete`); a bucket that is already gone is
/// fine. Answers how many objects were deleted. The listing walks the keys one `/` level at a
/// time (a delimited listing every S3 server answers alike).
pub async fn delete_bucket(
    endpoint: &str,
    credentials: &Credentials,
    bucket: &str,
) -> Result<usize, StorageError> {
    let failed = failed(bucket);
    let (client, exists) = open(endpoint, credentials, bucket).await?;
    if !exists {
        return Ok(0);
    }
    let mut deleted = 0;
    let mut prefixes = vec![String::new()];
    while let Some(prefix) = prefixes.pop() {
        let mut pages = client
            .list_objects(bucket)
            .map_err(|e| failed(format!("{e:?}")))?
            .delimiter(Some("/".to_owned()))
            .prefix(Some(prefix))
            .build()
            .to_stream()
            .await;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed(format!("list: {e}")))?;
            for entry in page.contents {
                if entry.is_prefix {
                    prefixes.push(entry.name);
                    continue;
                }
                client
                    .delete_object(bucket, entry.name.as_str())
                    .map_err(|e| failed(format!("{e:?}")))?
                    .build()
                    .send()
                    .await
                    .map_err(|e| failed(format!("delete {}: {e}", entry.name)))?;
                deleted += 1;
            }
        }
    }
    client
        .delete_bucket(bucket)
        .map_err(|e| failed(format!("{e:?}")))?
        .build()
        .send()
        .await
        .map_err(|e| failed(format!("{e}")))?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_key_never_shows_in_debug_output() {
        let credentials = Credentials {
            access_key: "storefront".into(),
            secret_key: "hunter2-do-not-print".into(),
        };
        let printed = format!("{credentials:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("storefront"), "{printed}");
    }
}
