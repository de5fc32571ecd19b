use std::{net::SocketAddr, time::Duration};

use chrono::Utc;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use storefront_auth::{Config, config::RateLimits, keys::SigningKey};
use storefront_kit::{
    ExposeSecret,
    auth::{Claims, ISSUER},
    config::HttpConfig,
    testing::{TestStack, spawn, unique},
};
use tokio::sync::watch;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const PASSWORD: &str = "correct horse 9";

pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub config: Config,
    pub stack: TestStack,
    pub stop_relay: Option<watch::Sender<bool>>,
}

pub fn config(stack: &TestStack) -> Config {
    let prefix = unique("t");
    Config {
        http: HttpConfig::default(),
        mongo: stack.mongo(&unique("auth")),
        kafka: stack.kafka(&prefix),
        redis: stack.redis(),
        signing_key_pem: SigningKey::generate_pem().unwrap().into(),
        access_ttl: Duration::from_secs(900),
        refresh_ttl: Duration::from_secs(7 * 24 * 3600),
        bootstrap_admin: Some((ADMIN_EMAIL.into(), ADMIN_PASSWORD.into())),
        rate_limits: RateLimits {
            failures_per_email: 5,
            failure_window: Duration::from_secs(900),
            attempts_per_ip: 10_000,
            ip_window: Duration::from_secs(60),
        },
    }
}

pub async fn spawn_app() -> TestApp {
    let stack = TestStack::from_env();
    spawn_with(config(&stack), false).await
}

/// Spawns auth with `config`; `relay` also runs its outbox relay.
pub async fn spawn_with(config: Config, relay: bool) -> TestApp {
    let stack = TestStack::from_env();
    let auth = storefront_auth::build(&config).await.expect("auth builds");
    let addr = spawn(auth.app).await;
    let stop_relay = relay.then(|| {
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(auth.relay.run(stopped));
        stop
    });
    TestApp {
        addr,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        config,
        stack,
        stop_relay,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/api/users{path}", self.addr)
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_as(&self, token: &str, path: &str, body: Option<Value>) -> Response {
        let mut request = self.http.post(self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub async fn get_as(&self, token: &str, path: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn signup(&self, email: &str) -> Session {
        let response = self
            .post(
                "/signup",
                json!({ "email": email, "password": PASSWORD, "name": "Ada" }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "signup {email}");
        Session::from(response.json::<Value>().await.unwrap())
    }

    pub async fn signin(&self, email: &str, password: &str) -> Response {
        self.post("/signin", json!({ "email": email, "password": password }))
            .await
    }

    pub async fn admin(&self) -> Session {
        let response = self.signin(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK);
        Session::from(response.json::<Value>().await.unwrap())
    }

    /// A token signed with this app's key, with claims of our choosing.
    pub fn mint(&self, edit: impl FnOnce(&mut Claims)) -> String {
        let key = SigningKey::from_pem(self.config.signing_key_pem.expose_secret()).unwrap();
        let now = Utc::now().timestamp();
        let mut claims = Claims {
            iss: ISSUER.into(),
            sub: uuid::Uuid::new_v4().into(),
            email: "someone@example.com".into(),
            role: storefront_kit::auth::Role::Customer,
            jti: uuid::Uuid::new_v4(),
            sid: uuid::Uuid::new_v4(),
            iat: now,
            exp: now + 900,
        };
        edit(&mut claims);
        key.sign(&claims)
    }
}

pub struct Session {
    pub user_id: String,
    pub access: String,
    pub refresh: String,
}

impl From<Value> for Session {
    fn from(body: Value) -> Self {
        Session {
            user_id: body["user"]["id"].as_str().unwrap().to_owned(),
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }
}

/// Asserts a problem+json answer with `status` and type slug; returns the body.
pub async fn problem(response: Response, status: StatusCode, kind: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["type"],
        format!("https://storefront.dev/problems/{kind}"),
        "{body}"
    );
    assert_eq!(body["status"], status.as_u16());
    body
}

pub fn email() -> String {
    format!("{}@example.com", unique("user"))
}
