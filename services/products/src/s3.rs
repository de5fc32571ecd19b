//! Product images in the shop's bucket, through MinIO's SDK (any S3-compatible store).
//!
//! Objects live under `products/{product_id}/{key}`. Browsers fetch them with short-lived presigned
//! GET URLs; the bucket itself stays private. Presigning is a local computation (no request), and
//! can sign for a public endpoint different from the one the service talks to (`S3_PUBLIC_ENDPOINT`:
//! in a cluster the service reaches MinIO by its Service name, browsers by the Ingress host).

use std::time::Duration;

use http::Method;
use minio::s3::{
    MinioClient, MinioClientBuilder, creds::StaticProvider, http::BaseUrl, types::S3Api,
    types::typed_parameters::Region,
};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct S3Config {
    /// `S3_ENDPOINT`, e.g. `http://minio:9000`.
    pub endpoint: String,
    /// `S3_PUBLIC_ENDPOINT`: where browsers reach the store; default `S3_ENDPOINT`.
    pub public_endpoint: Option<String>,
    /// `S3_ACCESS_KEY`, `S3_SECRET_KEY`.
    pub access_key: String,
    pub secret_key: String,
    /// `S3_BUCKET`.
    pub bucket: String,
    /// `S3_REGION`, default `us-east-1` (MinIO ignores it; AWS needs the bucket's).
    pub region: String,
    /// `S3_ENSURE_BUCKET`, default false: create the bucket at start. In a cluster the operator
    /// creates it.
    pub ensure_bucket: bool,
    /// `IMAGE_URL_TTL_SECS`, default 900: how long a presigned image URL works.
    pub url_ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("object storage: {0}")]
pub struct S3Error(String);

fn s3_error(e: impl std::fmt::Debug) -> S3Error {
    S3Error(format!("{e:?}"))
}

#[derive(Clone)]
pub struct Images {
    client: MinioClient,
    signer: MinioClient,
    bucket: String,
    url_ttl: u32,
}

fn client(endpoint: &str, config: &S3Config) -> Result<MinioClient, S3Error> {
    let mut base: BaseUrl = endpoint
        .parse()
        .map_err(|e| S3Error(format!("S3 endpoint {endpoint:?}: {e:?}")))?;
    base.region = Region::new(config.region.as_str()).map_err(s3_error)?;
    MinioClientBuilder::new(base)
        .provider(Some(StaticProvider::new(
            &config.access_key,
            &config.secret_key,
            None,
        )))
        .build()
        .map_err(s3_error)
}

impl Images {
    pub fn new(config: &S3Config) -> Result<Self, S3Error> {
        let client = client(&config.endpoint, config)?;
        let signer = match &config.public_endpoint {
            Some(public) => self::client(public, config)?,
            None => client.clone(),
        };
        Ok(Images {
            client,
            signer,
            bucket: config.bucket.clone(),
            url_ttl: u32::try_from(config.url_ttl.as_secs()).unwrap_or(u32::MAX),
        })
    }

    pub fn object_key(product_id: Uuid, key: &str) -> String {
        format!("products/{product_id}/{key}")
    }

    /// Creates the bucket unless it exists.
    pub async fn ensure_bucket(&self) -> Result<(), S3Error> {
        let exists = self
            .client
            .bucket_exists(self.bucket.as_str())
            .map_err(s3_error)?
            .build()
            .send()
            .await
            .map_err(s3_error)?
            .exists();
        if !exists {
            self.client
                .create_bucket(self.bucket.as_str())
                .map_err(s3_error)?
                .build()
                .send()
                .await
                .map_err(s3_error)?;
        }
        Ok(())
    }

    /// Whether the bucket answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), String> {
        let exists = self
            .client
            .bucket_exists(self.bucket.as_str())
            .map_err(|e| format!("{e:?}"))?
            .build()
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?
            .exists();
        if exists {
            Ok(())
        } else {
            Err(format!("bucket {} does not exist", self.bucket))
        }
    }

    pub async fn put(
        &self,
        object: &str,
        bytes: bytes::Bytes,
        content_type: &str,
    ) -> Result<(), S3Error> {
        self.client
            .put_object_content(self.bucket.as_str(), object, bytes)
            .map_err(s3_error)?
            .content_type(Some(content_type.to_owned()))
            .build()
            .send()
            .await
            .map_err(s3_error)?;
        Ok(())
    }

    pub async fn delete(&self, object: &str) -> Result<(), S3Error> {
        self.client
            .delete_object(self.bucket.as_str(), object)
            .map_err(s3_error)?
            .build()
            .send()
            .await
            .map_err(s3_error)?;
        Ok(())
    }

    /// A GET URL for `object` that works for `IMAGE_URL_TTL_SECS`.
    pub async fn presigned_url(&self, object: &str) -> Result<String, S3Error> {
        Ok(self
            .signer
            .get_presigned_object_url(self.bucket.as_str(), object, Method::GET)
            .map_err(s3_error)?
            .expiry_seconds(Some(self.url_ttl))
            .build()
            .send()
            .await
            .map_err(s3_error)?
            .url)
    }
}
