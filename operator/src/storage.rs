//! The shop's image bucket in the object store (MinIO or any S3), made with the `minio` client
//! and the credentials from the Secret `objectStorage.credentialsSecret` (keys `accessKey`,
//! `secretKey`) that the services use too.

use minio::s3::{
    MinioClient, MinioClientBuilder, creds::StaticProvider, http::BaseUrl, types::S3Api,
};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("secret {secret}: {reason}")]
    Credentials { secret: String, reason: String },
    #[error("bucket {bucket}: {reason}")]
    Bucket { bucket: String, reason: String },
}

/// The keys to the object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
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

/// Makes the bucket exist; answers whether it was created now.
pub async fn ensure_bucket(
    endpoint: &str,
    credentials: &Credentials,
    bucket: &str,
) -> Result<bool, StorageError> {
    let failed = |reason: String| StorageError::Bucket {
        bucket: bucket.to_owned(),
        reason,
    };
    let client = client(endpoint, credentials).map_err(failed)?;
    let exists = client
        .bucket_exists(bucket)
        .map_err(|e| failed(format!("{e:?}")))?
        .build()
        .send()
        .await
        .map_err(|e| failed(format!("{e}")))?
        .exists();
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
