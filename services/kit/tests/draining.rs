//! Serving: a client's request id is kept only when short and plain; a stopping pod drains:
//! after SIGTERM it keeps serving for `SHUTDOWN_DRAIN_SECS` while `/readyz` says 503 and every
//! answer closes its connection, then it stops accepting. (nextest runs each test in its own
//! process, so the signal reaches only this test.)

use std::time::{Duration, Instant};

use axum::{Router, routing::get};
use storefront_kit::{
    config::HttpConfig,
    server::{self, Readiness},
};

#[tokio::test]
async fn after_sigterm_the_server_answers_while_it_drains_then_stops() {
    let http = HttpConfig {
        shutdown_drain: Duration::from_secs(2),
        ..HttpConfig::default()
    };
    let routes = Router::new().route("/hello", get(|| async { "hello" }));
    let app = server::build("draining-test", routes, Readiness::new(), &http);
    let listener = server::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = tokio::spawn(server::serve(
        listener,
        app,
        server::shutdown_signal(http.shutdown_drain),
    ));
    let client = reqwest::Client::new();

    let ready = client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let hello = client.get(format!("{url}/hello")).send().await.unwrap();
    assert!(hello.headers().get("connection").is_none());

    let stopped_at = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(1);
    while !server::draining() {
        assert!(Instant::now() < deadline, "SIGTERM starts the drain");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let ready = client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "a draining pod leaves its Services");
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "draining");
    let hello = client.get(format!("{url}/hello")).send().await.unwrap();
    assert_eq!(
        hello.status(),
        200,
        "requests are still served while draining"
    );
    assert_eq!(hello.headers()["connection"], "close");
    assert_eq!(hello.text().await.unwrap(), "hello");

    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("the server stops after the drain")
        .unwrap()
        .unwrap();
    assert!(
        stopped_at.elapsed() >= Duration::from_secs(2),
        "the server served for the whole drain period"
    );
    assert!(
        reqwest::get(format!("{url}/hello")).await.is_err(),
        "nothing is accepted after the drain"
    );
}

/// A probe sent a 4 KB `x-request-id`: the service echoed it and the gateway answered 502. Only a
/// short, plain one is kept; any other is replaced by a new one.
#[tokio::test]
async fn only_a_short_plain_request_id_is_kept() {
    let routes = Router::new().route("/hello", get(|| async { "hello" }));
    let app = server::build(
        "request-id-test",
        routes,
        Readiness::new(),
        &HttpConfig::default(),
    );
    let url = format!("http://{}/hello", storefront_kit::testing::spawn(app).await);
    let client = reqwest::Client::new();
    let echoed = |id: &str| {
        let request = client.get(&url).header("x-request-id", id);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    let plain = "9f1c2d3e-trace.01:a_b";
    assert_eq!(echoed(plain).await, plain);
    for odd in [
        "a".repeat(65),
        "x".repeat(4000),
        "a b".into(),
        "a\"b".into(),
        "<x>".into(),
    ] {
        let echoed = echoed(&odd).await;
        assert_ne!(echoed, odd);
        assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "a new id: {echoed}");
    }
    // Two ids: neither is chosen.
    let response = client
        .get(&url)
        .header("x-request-id", "one")
        .header("x-request-id", "two")
        .send()
        .await
        .unwrap();
    assert!(uuid::Uuid::parse_str(response.headers()["x-request-id"].to_str().unwrap()).is_ok());
}
