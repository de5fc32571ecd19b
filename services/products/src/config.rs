//! The products service's configuration: the kit's shared parts, object storage, image rules and
//! the read cache. Every variable is listed in `docs/services/products.md`.

use std::time::Duration;

use storefront_kit::config::{self as env, ConfigError, ServiceConfig};

use crate::{domain::ImageRules, s3::S3Config};

#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP, MongoDB, Kafka, Redis and auth's keys, as every service reads them.
    pub common: ServiceConfig,
    pub s3: S3Config,
    /// `IMAGE_MAX_BYTES` (default 5 MiB), `IMAGE_MIN_SIDE` (32), `IMAGE_MAX_SIDE` (8000).
    pub images: ImageRules,
    /// `PRODUCT_CACHE_TTL_MS`, default 1000: how long a replica serves a product or a list page
    /// from memory. Its own writes clear it at once; another replica's show after at most this.
    /// 0 turns the cache off.
    pub cache_ttl: Duration,
    /// `CONSUME_EVENTS`, default true: run the inventory consumer (orders and payments events).
    pub consume_events: bool,
    /// `VIEWS_FLUSH_MS`, default 10000: how often the product views counted in memory are
    /// published as `product.viewed` (at least 100).
    pub views_flush: Duration,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = ImageRules::default();
        let served_side = env::parse_or("IMAGE_SERVED_SIDE", defaults.served_side)?;
        let thumbnail_side: u32 = env::parse_or("IMAGE_THUMBNAIL_SIDE", defaults.thumbnail_side)?;
        // A thumbnail as large as the image itself would never be made: say so at start-up.
        if thumbnail_side == 0 || thumbnail_side >= served_side {
            return Err(ConfigError::Invalid {
                var: "IMAGE_THUMBNAIL_SIDE".into(),
                value: thumbnail_side.to_string(),
                reason: format!(
                    "must be from 1 to IMAGE_SERVED_SIDE - 1 ({})",
                    served_side.saturating_sub(1)
                ),
            });
        }
        Ok(Config {
            common: ServiceConfig::from_env()?,
            s3: S3Config {
                endpoint: env::required("S3_ENDPOINT")?,
                access_key: env::required("S3_ACCESS_KEY")?,
                secret_key: env::required("S3_SECRET_KEY")?.into(),
                bucket: env::required("S3_BUCKET")?,
                region: env::optional("S3_REGION").unwrap_or_else(|| "us-east-1".into()),
                ensure_bucket: env::flag("S3_ENSURE_BUCKET", false)?,
            },
            images: ImageRules {
                max_bytes: env::parse_or("IMAGE_MAX_BYTES", defaults.max_bytes)?,
                min_side: env::parse_or("IMAGE_MIN_SIDE", defaults.min_side)?,
                max_side: env::parse_or("IMAGE_MAX_SIDE", defaults.max_side)?,
                max_pixels: env::parse_or("IMAGE_MAX_PIXELS", defaults.max_pixels)?,
                served_side,
                thumbnail_side,
            },
            cache_ttl: Duration::from_millis(env::parse_or("PRODUCT_CACHE_TTL_MS", 1000)?),
            consume_events: env::flag("CONSUME_EVENTS", true)?,
            views_flush: Duration::from_millis(
                env::parse_or::<u64>("VIEWS_FLUSH_MS", 10_000)?.max(100),
            ),
        })
    }
}
