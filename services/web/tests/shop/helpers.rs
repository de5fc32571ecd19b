//! The shop `cargo xtask test` starts (every service binary, the demo catalog and the gateway, on
//! the test backends), and a visitor that goes through it with a cookie jar, as a browser without
//! JavaScript would.

use std::{sync::Arc, time::Duration};

use reqwest::{
    StatusCode, Url,
    cookie::{CookieStore, Jar},
    redirect::Policy,
};
use serde_json::Value;
use storefront_kit::testing::unique;

/// A password the shop accepts (10+ characters with a digit).
pub const PASSWORD: &str = "correct-horse-42";

/// The running shop, from the variables `cargo xtask test` sets.
#[derive(Debug, Clone)]
pub struct Shop {
    pub url: String,
    pub admin_email: String,
    pub admin_password: String,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the shop tests through `cargo xtask test`, which starts the whole shop for them")
    })
}

impl Shop {
    pub fn from_env() -> Shop {
        Shop {
            url: var("STOREFRONT_TEST_SHOP_URL"),
            admin_email: var("STOREFRONT_TEST_SHOP_ADMIN_EMAIL"),
            admin_password: var("STOREFRONT_TEST_SHOP_ADMIN_PASSWORD"),
        }
    }
}

/// One answer of the shop.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub content_type: String,
    pub body: String,
}

impl Page {
    /// Asserts a 303 and answers where it goes.
    #[track_caller]
    pub fn redirect(&self) -> &str {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "{}", self.body);
        self.location.as_deref().expect("a redirect has a Location")
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        assert!(
            self.content_type.starts_with("text/html"),
            "{}",
            self.content_type
        );
        self
    }

    #[track_caller]
    pub fn contains(&self, text: &str) -> &Self {
        assert!(
            self.body.contains(text),
            "the page ({}) should contain {text:?}:\n{}",
            self.status,
            self.body
        );
        self
    }

    /// Every value of `attribute="prefix…"` on the page, without the prefix, in page order.
    pub fn values(&self, attribute: &str, prefix: &str) -> Vec<String> {
        let needle = format!("{attribute}=\"{prefix}");
        let mut found = Vec::new();
        let mut rest = self.body.as_str();
        while let Some(at) = rest.find(&needle) {
            rest = &rest[at + needle.len()..];
            let end = rest.find('"').unwrap_or(rest.len());
            found.push(rest[..end].to_owned());
        }
        found
    }

    /// The text of every element that starts with `open` (such as `<span class="price">`).
    pub fn texts(&self, open: &str) -> Vec<String> {
        self.body
            .split(open)
            .skip(1)
            .map(|part| {
                part[..part.find('<').unwrap_or(part.len())]
                    .trim()
                    .to_owned()
            })
            .collect()
    }
}

/// Someone using the shop: their own cookies (session and CSRF), no JavaScript, redirects not
/// followed so each answer can be checked.
pub struct Visitor {
    pub shop: Shop,
    jar: Arc<Jar>,
    pub http: reqwest::Client,
}

impl Visitor {
    pub fn new(shop: &Shop) -> Visitor {
        let jar = Arc::new(Jar::default());
        Visitor {
            shop: shop.clone(),
            http: reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .redirect(Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            jar,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.shop.url)
    }

    fn cookie(&self, name: &str) -> Option<String> {
        let url: Url = self.shop.url.parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header.to_str().ok()?.split("; ").find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
    }

    /// The access token web keeps in the `sf_access` cookie (the services accept it too).
    pub fn access_token(&self) -> Option<String> {
        self.cookie("sf_access").filter(|t| !t.is_empty())
    }

    pub async fn page(response: reqwest::Response) -> Page {
        let status = response.status();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = header(reqwest::header::LOCATION);
        let content_type = header(reqwest::header::CONTENT_TYPE).unwrap_or_default();
        Page {
            status,
            location,
            content_type,
            body: response.text().await.unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        Self::page(self.http.get(self.url(path)).send().await.unwrap()).await
    }

    /// The CSRF token forms repeat (fetched with a first page when there is no cookie yet).
    pub async fn csrf(&self) -> String {
        if let Some(token) = self.cookie("sf_csrf") {
            return token;
        }
        self.get("/signin").await.ok();
        self.cookie("sf_csrf").expect("web sets the CSRF cookie")
    }

    /// A form POST with the CSRF field, as the page's form sends it.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf().await;
        let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        form.extend_from_slice(fields);
        Self::page(
            self.http
                .post(self.url(path))
                .form(&form)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// A new customer account, signed in; answers its email.
    pub async fn sign_up(&self) -> String {
        let email = format!("{}@example.com", unique("shopper"));
        let page = self
            .post(
                "/signup",
                &[
                    ("name", "Sam Shopper"),
                    ("email", &email),
                    ("password", PASSWORD),
                    ("next", "/"),
                ],
            )
            .await;
        assert_eq!(page.redirect(), "/");
        email
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> Page {
        self.post(
            "/signin",
            &[("email", email), ("password", password), ("next", "/")],
        )
        .await
    }

    pub async fn admin(shop: &Shop) -> Visitor {
        let admin = Visitor::new(shop);
        let page = admin.sign_in(&shop.admin_email, &shop.admin_password).await;
        assert_eq!(page.redirect(), "/");
        admin
    }

    /// Creates a product through the products API with this (admin) visitor's token; answers
    /// its id.
    pub async fn create_product(&self, body: &Value) -> String {
        let token = self.access_token().expect("a signed-in admin");
        let created = self
            .http
            .post(self.url("/api/products"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        created.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A JSON API of the shop, with this visitor's token.
    pub async fn api(&self, path: &str) -> Value {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = self.access_token() {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// Polls a page until it contains `text` (events travel through Kafka between services).
    pub async fn wait_for(&self, path: &str, text: &str) -> Page {
        let until = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let page = self.get(path).await;
            if page.body.contains(text) {
                return page;
            }
            assert!(
                std::time::Instant::now() < until,
                "{path} never showed {text:?}; it shows:\n{}",
                page.body
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Puts `quantity` of `product` in the cart, checks out, and answers the order's id.
    pub async fn buy(&self, product: &str, quantity: u32) -> String {
        let page = self
            .post(
                "/cart/items",
                &[("product_id", product), ("quantity", &quantity.to_string())],
            )
            .await;
        assert_eq!(page.redirect(), "/cart");
        let cart = self.get("/cart").await;
        let key = cart.values("name=\"checkout_key\" value", "");
        let page = self
            .post("/cart/checkout", &[("checkout_key", &key[0])])
            .await;
        let order = page
            .redirect()
            .strip_prefix("/orders/")
            .expect("checkout goes to the order")
            .to_owned();
        // The order waits for its stock before it can be paid.
        self.wait_for(
            &format!("/orders/{order}"),
            "data-status=\"awaiting_payment\"",
        )
        .await;
        order
    }
}

/// The first in-stock product of the demo catalog: its id.
pub async fn a_product(visitor: &Visitor) -> String {
    let list = visitor.api("/api/products?in_stock=true&per_page=1").await;
    list["items"][0]["id"].as_str().unwrap().to_owned()
}

/// A PaymentMethod for `card`, made the way Stripe.js makes one in the browser (with the
/// publishable key, at the Stripe stand-in).
pub async fn payment_method(card: &str) -> String {
    let stripe = var("STOREFRONT_TEST_STRIPE_URL");
    let response = reqwest::Client::new()
        .post(format!("{stripe}/_config/storefront/payment_methods"))
        .json(&serde_json::json!({
            "key": "pk_test_storefront_local",
            "card": { "number": card, "exp_month": 12, "exp_year": 2034, "cvc": "123" },
        }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let method: Value = response.json().await.unwrap();
    method["id"].as_str().unwrap().to_owned()
}
