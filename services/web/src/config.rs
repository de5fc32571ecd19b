//! The web service's configuration. Every variable is listed in `docs/services/web.md`.

use storefront_kit::config::{self as env, ConfigError, HttpConfig, RedisConfig};

/// Where the services answer (inside the cluster: their Service names).
#[derive(Debug, Clone)]
pub struct Urls {
    pub auth: String,
    pub products: String,
    pub cart: String,
    pub orders: String,
    pub payments: String,
    pub notifications: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub redis: RedisConfig,
    /// `TOPIC_PREFIX`, default `storefront`: the shop's namespace in Redis (revoked tokens).
    pub namespace: String,
    /// `JWKS_URL`: auth's public keys.
    pub jwks_url: String,
    /// `AUTH_URL`, `PRODUCTS_URL`, `CART_URL`, `ORDERS_URL`, `PAYMENTS_URL`, `NOTIFICATIONS_URL`.
    pub urls: Urls,
    /// `STRIPE_PUBLISHABLE_KEY`: `pk_…`, handed to Stripe.js in the page.
    pub stripe_publishable_key: String,
    /// `STRIPE_JS_URL`, default `https://js.stripe.com/v3/`; the local stack serves its stand-in.
    pub stripe_js_url: String,
}

fn url(var: &str) -> Result<String, ConfigError> {
    Ok(env::required(var)?.trim_end_matches('/').to_owned())
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Config {
            http: HttpConfig::from_env()?,
            redis: RedisConfig::from_env()?,
            namespace: env::optional("TOPIC_PREFIX").unwrap_or_else(|| "storefront".into()),
            jwks_url: env::required("JWKS_URL")?,
            urls: Urls {
                auth: url("AUTH_URL")?,
                products: url("PRODUCTS_URL")?,
                cart: url("CART_URL")?,
                orders: url("ORDERS_URL")?,
                payments: url("PAYMENTS_URL")?,
                notifications: url("NOTIFICATIONS_URL")?,
            },
            stripe_publishable_key: env::required("STRIPE_PUBLISHABLE_KEY")?,
            stripe_js_url: env::optional("STRIPE_JS_URL")
                .unwrap_or_else(|| "https://js.stripe.com/v3/".into()),
        })
    }

    /// The scheme and host Stripe.js comes from (for the Content-Security-Policy).
    pub fn stripe_origin(&self) -> String {
        let url = &self.stripe_js_url;
        match url.split_once("://") {
            Some((scheme, rest)) => {
                format!("{scheme}://{}", rest.split('/').next().unwrap_or_default())
            }
            None => url.clone(),
        }
    }
}
