//! The gateway itself: what nginx answers before a service sees the request (bodies over a route's
//! limit, requests it cannot read), and the client address it passes on.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, TcpStream},
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::{Value, json};
use storefront_kit::testing::unique;

use crate::helpers::Shop;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Asserts a problem+json answer with `status` and answers its body.
#[track_caller]
fn problem(status: StatusCode, expected: StatusCode, content_type: &str, body: &str) -> Value {
    assert_eq!(status, expected, "{body}");
    assert_eq!(content_type, "application/problem+json", "{body}");
    let problem: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(problem["status"], expected.as_u16(), "{body}");
    assert!(problem["type"].as_str().is_some(), "{body}");
    problem
}

async fn post(url: String, body: Vec<u8>) -> (StatusCode, String, String) {
    let response = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.text().await.unwrap())
}

/// A body over a JSON route's 64 KiB is refused by the gateway as a 413 problem — a 1 MB body used
/// to reach the service, which closed the connection while nginx was still sending (a 502).
#[tokio::test]
async fn a_body_over_the_route_limit_is_a_413_problem() {
    let shop = Shop::from_env();
    for (path, size) in [
        ("/api/users/signin", 1024 * 1024),
        ("/api/cart/items", 70 * 1024),
        ("/api/payments/webhook", 1024 * 1024),
        ("/signin", 1024 * 1024),
    ] {
        let (status, content_type, body) = post(shop.url.clone() + path, vec![b' '; size]).await;
        let p = problem(status, StatusCode::PAYLOAD_TOO_LARGE, &content_type, &body);
        assert_eq!(
            p["type"],
            "https://storefront.dev/problems/payload-too-large"
        );
    }
}

/// The image upload routes take more than the JSON routes: 6 MB reaches products (which asks who
/// is calling), and only a body over the upload limit is the gateway's 413.
#[tokio::test]
async fn image_uploads_have_their_own_larger_limit() {
    let shop = Shop::from_env();
    let url = format!("{}/api/products/{}/images", shop.url, uuid::Uuid::new_v4());
    let (status, content_type, body) = post(url.clone(), vec![b' '; 6 * 1024 * 1024]).await;
    problem(status, StatusCode::UNAUTHORIZED, &content_type, &body);
    let (status, content_type, body) = post(url, vec![b' '; 11 * 1024 * 1024]).await;
    problem(status, StatusCode::PAYLOAD_TOO_LARGE, &content_type, &body);
    // The admin page's upload form, without its CSRF field: web's 403 page, after reading it all.
    let url = format!(
        "{}/admin/products/{}/images",
        shop.url,
        uuid::Uuid::new_v4()
    );
    let response = client()
        .post(url)
        .header("content-type", "multipart/form-data; boundary=x")
        .body(vec![b' '; 6 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

/// Sends `request` as raw bytes and answers the status line, the content type and the
/// body.
fn raw(shop: &Shop, request: &[u8]) -> (String, String, String) {
    let address = shop.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// Requests nginx cannot read are answered as problem+json too, not nginx's HTML pages.
#[tokio::test]
async fn requests_the_gateway_cannot_read_are_problems() {
    let shop = Shop::from_env();
    let huge_cookie = format!("sf_x={}", "a".repeat(20 * 1024));
    let long_url = format!("/{}", "a".repeat(20 * 1024));
    let cases: Vec<Vec<u8>> = vec![
        b"NOT A REQUEST\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: shop\r\nContent-Length: x\r\nConnection: close\r\n\r\n".to_vec(),
        format!(
            "GET / HTTP/1.1\r\nHost: shop\r\nCookie: {huge_cookie}\r\nConnection: close\r\n\r\n"
        )
        .into_bytes(),
        format!("GET {long_url} HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n").into_bytes(),
        b"TRACE / HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET / HTTP/9.9\r\nHost: shop\r\nConnection: close\r\n\r\n".to_vec(),
    ];
    for request in cases {
        let (status, content_type, body) = raw(&shop, &request);
        assert!(
            status.starts_with("HTTP/1.1 4") || status.starts_with("HTTP/1.1 505"),
            "{status} for {:?}",
            String::from_utf8_lossy(&request[..40.min(request.len())])
        );
        assert_eq!(content_type, "application/problem+json", "{status}: {body}");
        let p: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert!(p["type"].as_str().is_some(), "{body}");
    }
}

/// The per-address sign-in limit holds whatever address the client claims: the gateway sets
/// `X-Real-IP` (the only address header services trust) from the connection, and overwrites
/// `X-Forwarded-For`. Each run connects from its own loopback address, so its count is its own.
#[tokio::test]
async fn a_spoofed_client_address_does_not_dodge_the_signin_limit() {
    let shop = Shop::from_env();
    let local = |seed: u8| {
        let n = uuid::Uuid::new_v4().as_bytes()[0];
        IpAddr::V4(Ipv4Addr::new(127, seed, n, n.wrapping_add(1).max(2)))
    };
    let from = |address: IpAddr| {
        reqwest::Client::builder()
            .local_address(address)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    let attacker = from(local(66));
    let url = format!("{}/api/users/signin", shop.url);
    let mut last = StatusCode::OK;
    for attempt in 0..61u16 {
        let spoofed = format!("10.{}.{}.{}", attempt / 250, attempt % 250, 7);
        let response = attacker
            .post(&url)
            .header("x-forwarded-for", &spoofed)
            .header("x-real-ip", &spoofed)
            .header("forwarded", format!("for={spoofed}"))
            .json(&json!({
                "email": format!("{}@example.com", unique("nobody")),
                "password": "wrong-password-1"
            }))
            .send()
            .await
            .unwrap();
        last = response.status();
        if attempt < 60 {
            assert_eq!(last, StatusCode::UNAUTHORIZED, "attempt {attempt}");
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    // Another address is not limited: the count is per address, not global.
    let response = from(local(67))
        .post(&url)
        .json(&json!({
            "email": format!("{}@example.com", unique("nobody")),
            "password": "wrong-password-1"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// An API write signed in by the `sf_access` cookie must come from the shop's own pages: another
/// origin of the same site (the S3 store's or Stripe stand-in's port, a subdomain) is refused,
/// though SameSite=Lax lets the cookie through. The bearer header needs no Origin.
#[tokio::test]
async fn cookie_signed_api_writes_need_this_sites_origin() {
    let shop = Shop::from_env();
    let visitor = crate::helpers::Visitor::new(&shop);
    visitor.sign_up().await;
    let url = visitor.url("/api/notifications/read-all");
    let host = shop.url.trim_start_matches("http://").to_owned();
    let (other_port, _) = host.rsplit_once(':').unwrap();
    for origin in [
        None,
        Some(format!("http://{other_port}:9000")),
        Some("null".to_owned()),
    ] {
        let mut request = visitor.http.post(&url);
        if let Some(origin) = &origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.text().await.unwrap();
        let p = problem(status, StatusCode::FORBIDDEN, &content_type, &body);
        assert_eq!(
            p["type"], "https://storefront.dev/problems/cross-origin",
            "{origin:?}"
        );
    }
    let response = visitor
        .http
        .post(&url)
        .header("origin", &shop.url)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let token = visitor.access_token().unwrap();
    let response = client().post(&url).bearer_auth(token).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

/// The sign-in form counts each visitor's address, not web's: a walk found every form sign-in
/// counted against web's own address, so 60 wrong passwords from anyone locked everyone out.
#[tokio::test]
async fn the_signin_forms_limit_is_per_visitor_not_shared() {
    let shop = Shop::from_env();
    let n = uuid::Uuid::new_v4().as_bytes()[0];
    let visitor = |seed: u8| {
        reqwest::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::new(127, seed, n, n.max(2))))
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    async fn sign_in(client: &reqwest::Client, url: &str) -> StatusCode {
        let page = client
            .get(format!("{url}/signin"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
        let csrf = &page[at..at + 64];
        client
            .post(format!("{url}/signin"))
            .form(&[
                ("csrf", csrf),
                ("email", &format!("{}@example.com", unique("nobody"))),
                ("password", "wrong-password-1"),
            ])
            .send()
            .await
            .unwrap()
            .status()
    }
    let attacker = visitor(77);
    let mut last = StatusCode::OK;
    for attempt in 0..61 {
        last = sign_in(&attacker, &shop.url).await;
        if attempt < 60 {
            assert_eq!(last, StatusCode::UNAUTHORIZED, "attempt {attempt}");
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    // Someone else, at the same moment, is not locked out.
    assert_eq!(
        sign_in(&visitor(78), &shop.url).await,
        StatusCode::UNAUTHORIZED
    );
}
