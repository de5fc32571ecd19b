//! Product images in the shop's bucket, through MinIO's SDK (any S3-compatible store).
//!
//! Objects live under `products/{product_id}/{key}`. The bucket stays private: browsers get an
//! image from products (`GET /api/products/{id}/images/{key}`, services/products/src/http/images.rs),
//! which reads it here and serves it under the shop's own origin with its own headers.

use minio::s3::{
    MinioClient, MinioClientBuilder,
    creds::StaticProvider,
    error::{Error as MinioError, S3ServerError},
    http::BaseUrl,
    types::S3Api,
    types::{minio_error_response::MinioErrorCode, typed_parameters::Region},
};
use storefront_events::ProductId;
use storefront_kit::{ExposeSecret, SecretString};

#[derive(Debug, Clone)]
pub struct S3Config {
    /// `S3_ENDPOINT`, e.g. `http://minio:9000`.
    pub endpoint: String,
    /// `S3_ACCESS_KEY`, `S3_SECRET_KEY`.
    pub access_key: String,
    pub secret_key: SecretString,
    /// `S3_BUCKET`.
    pub bucket: String,
    /// `S3_REGION`, default `us-east-1` (MinIO ignores it; AWS needs the bucket's).
    pub region: String,
    /// `S3_ENSURE_BUCKET`, default false: create the bucket at start. In a cluster the operator
    /// creates it.
    pub ensure_bucket: bool,
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
    bucket: String,
}

fn client(endpoint: &str, config: &S3Config) -> Result<MinioClient, S3Error> {
    let mut base: BaseUrl = endpoint
        .parse()
        .map_err(|e| S3Error(format!("S3 endpoint {endpoint:?}: {e:?}")))?;
    base.region = Region::new(config.region.as_str()).map_err(s3_error)?;
    MinioClientBuilder::new(base)
        .provider(Some(StaticProvider::new(
            &config.access_key,
            config.secret_key.expose_secret(),
            None,
        )))
        .build()
        .map_err(s3_error)
}

impl Images {
    pub fn new(config: &S3Config) -> Result<Self, S3Error> {
        Ok(Images {
            client: client(&config.endpoint, config)?,
            bucket: config.bucket.clone(),
        })
    }

    pub fn object_key(product_id: ProductId, key: &str) -> String {
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

    /// The bytes of `object`; `None` when there is no such object.
    pub async fn get(&self, object: &str) -> Result<Option<bytes::Bytes>, S3Error> {
        let answer = self
            .client
            .get_object(self.bucket.as_str(), object)
            .map_err(s3_error)?
            .build()
            .send()
            .await;
        match answer {
            Ok(response) => response.into_bytes().await.map(Some).map_err(s3_error),
            Err(MinioError::S3Server(S3ServerError::S3Error(e)))
                if e.code() == MinioErrorCode::NoSuchKey =>
            {
                Ok(None)
            }
            Err(e) => Err(s3_error(e)),
        }
    }
}
