//! The web service's own guards, against the real Redis of the test stack: CSRF, origin checks,
//! sign-in redirects, the admin gate, security headers, static assets and error pages. The pages
//! that show other services' data are exercised through the gateway by `cargo xtask up` flows.

use std::sync::Arc;

use reqwest::{StatusCode, redirect::Policy};
use storefront_kit::{
    auth::{Authenticator, Revocations, Role},
    config::HttpConfig,
    testing::{TestStack, spawn, unique},
};
use storefront_web::config::{Config, Urls};
use uuid::Uuid;

struct Web {
    base: String,
    http: reqwest::Client,
    key: storefront_auth::keys::SigningKey,
}

async fn web() -> Web {
    let stack = TestStack::from_env();
    let namespace = unique("t");
    let key = storefront_auth::keys::SigningKey::from_pem(
        &storefront_auth::keys::SigningKey::generate_pem().unwrap(),
    )
    .unwrap();
    let revocations = Revocations::connect(&stack.redis_url, &namespace)
        .await
        .unwrap();
    let authenticator = Arc::new(Authenticator::from_keys(key.decoding_keys(), revocations));
    // No other service runs here: calls to them fail as "unavailable", which the pages under test
    // never need.
    let nowhere = "http://127.0.0.1:9".to_owned();
    let config = Config {
        http: HttpConfig {
            cookie_secure: false,
            ..HttpConfig::default()
        },
        redis: stack.redis(),
        namespace,
        jwks_url: nowhere.clone(),
        urls: Urls {
            auth: nowhere.clone(),
            products: nowhere.clone(),
            cart: nowhere.clone(),
            orders: nowhere.clone(),
            payments: nowhere.clone(),
            notifications: nowhere,
        },
        stripe_publishable_key: "pk_test_x".into(),
        stripe_js_url: "https://js.stripe.com/v3/".into(),
    };
    let addr = spawn(storefront_web::build_with(config, authenticator)).await;
    Web {
        base: format!("http://{addr}"),
        http: reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap(),
        key,
    }
}

impl Web {
    fn token(&self, role: Role) -> String {
        self.key
            .sign(&storefront_kit::testing::claims(Uuid::new_v4(), role, 900))
    }

    /// The CSRF cookie a first visit sets.
    async fn csrf(&self) -> String {
        let response = self
            .http
            .get(format!("{}/signin", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let cookie = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with("sf_csrf="))
            .expect("a CSRF cookie");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let page = response.text().await.unwrap();
        let value = cookie["sf_csrf=".len()..]
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        assert!(
            page.contains(&format!("name=\"csrf\" value=\"{value}\"")),
            "the form carries the token"
        );
        value
    }
}

#[tokio::test]
async fn forms_need_the_csrf_token_and_this_origin() {
    let web = web().await;
    let csrf = web.csrf().await;
    let post = |body: String, cookie: String, origin: Option<&str>| {
        let mut request = web
            .http
            .post(format!("{}/signin", web.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookie)
            .body(body);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    // No token, a wrong token, a token without the cookie: refused before anything runs.
    for (body, cookie) in [
        (
            "email=a%40b.c&password=x".to_owned(),
            format!("sf_csrf={csrf}"),
        ),
        (
            "csrf=0000&email=a%40b.c&password=x".to_owned(),
            format!("sf_csrf={csrf}"),
        ),
        (
            format!("csrf={csrf}&email=a%40b.c&password=x"),
            String::new(),
        ),
    ] {
        let response = post(body, cookie, None).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(response.text().await.unwrap().contains("reload the page"));
    }
    // Another site's page posting with the visitor's cookies (`null`: a sandboxed or
    // privacy-stripped origin).
    for origin in ["https://evil.example", "null"] {
        let response = post(
            format!("csrf={csrf}&email=a%40b.c&password=x"),
            format!("sf_csrf={csrf}"),
            Some(origin),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{origin}");
    }
    // The right token passes the guard (auth is not running here, so the page says so: 503).
    let response = post(
        format!("csrf={csrf}&email=a%40b.c&password=x"),
        format!("sf_csrf={csrf}"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Try again in a moment")
    );
}

#[tokio::test]
async fn signed_out_visitors_are_sent_to_sign_in_and_back() {
    let web = web().await;
    for path in [
        "/cart",
        "/orders",
        "/notifications",
        "/admin/products",
        "/admin/users",
    ] {
        let response = web
            .http
            .get(format!("{}{path}", web.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        let location = response.headers()["location"].to_str().unwrap();
        assert_eq!(
            location,
            format!("/signin?next={}", path.replace('/', "%2F")),
            "{path}"
        );
    }
    // A long path is not carried along (its Location header made the gateway answer 502).
    let long = format!("/orders/{}", "a".repeat(4000));
    let response = web
        .http
        .get(format!("{}{long}", web.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/signin?next=%2F");
    // The `next` of the sign-in page only ever points into the shop: not another host, and no
    // tab or newline, which browsers drop (`/%09/evil.example` would be `//evil.example`).
    for next in [
        "//evil.example",
        "/%09/evil.example",
        "/%0A/evil.example",
        "/a%00b",
    ] {
        let page = web
            .http
            .get(format!("{}/signin?next={next}", web.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("name=\"next\" value=\"/\""), "{next}: {page}");
    }
}

#[tokio::test]
async fn the_admin_is_for_admins_only() {
    let web = web().await;
    let customer = web.token(Role::Customer);
    for path in [
        "/admin/products",
        "/admin/orders",
        "/admin/users",
        "/admin/products/new",
    ] {
        let response = web
            .http
            .get(format!("{}{path}", web.base))
            .header("cookie", format!("sf_access={customer}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let admin = web.token(Role::Admin);
    let response = web
        .http
        .get(format!("{}/admin/products/new", web.base))
        .header("cookie", format!("sf_access={admin}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    for field in [
        "title",
        "description",
        "category",
        "price",
        "currency",
        "stock",
    ] {
        assert!(
            page.contains(&format!("<label for=\"{field}\"")),
            "the {field} field has a label"
        );
    }
    // A garbage or revoked cookie is no session at all: the cookie is cleared.
    let response = web
        .http
        .get(format!("{}/cart", web.base))
        .header("cookie", "sf_access=garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(response.headers().get_all("set-cookie").iter().any(|c| {
        c.to_str()
            .unwrap()
            .starts_with("sf_access=; Path=/; Max-Age=0")
    }),);
}

#[tokio::test]
async fn pages_carry_a_content_security_policy_and_assets_are_served() {
    let web = web().await;
    let response = web
        .http
        .get(format!("{}/signup", web.base))
        .send()
        .await
        .unwrap();
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("script-src 'self' https://js.stripe.com"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    // Images come from the shop's own origin (products serves them) and no style is inline: a
    // probe found `img-src http: https:` and `style-src 'unsafe-inline'`.
    assert!(csp.contains("img-src 'self' data:;"), "{csp}");
    assert!(csp.contains("style-src 'self';"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(!csp.contains("http:"), "{csp}");
    // Browsers send this site's Origin with its own forms only under a policy that allows it.
    assert_eq!(response.headers()["referrer-policy"], "same-origin");
    for (path, kind) in [
        ("/static/app.css", "text/css"),
        ("/static/app.js", "text/javascript"),
        ("/static/pay.js", "text/javascript"),
    ] {
        let response = web
            .http
            .get(format!("{}{path}", web.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
    let missing = web
        .http
        .get(format!("{}/no/such/page", web.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.text().await.unwrap().contains("<h1>Not found</h1>"));
}
