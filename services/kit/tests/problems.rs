//! The error contract: every error is RFC 9457 problem+json with a stable type.

use axum::{http::StatusCode, response::IntoResponse};
use storefront_kit::{Error, FieldError};

async fn render(error: Error) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let response = error.into_response();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, headers, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn validation_errors_list_the_offending_fields() {
    let (status, headers, body) = render(Error::Validation(vec![FieldError::new(
        "email", "required",
    )]))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["type"], "https://storefront.dev/problems/validation");
    assert_eq!(body["errors"][0]["field"], "email");
    assert_eq!(body["status"], 422);
}

#[tokio::test]
async fn internal_errors_leak_nothing() {
    let (status, _, body) = render(Error::internal("password=hunter2 at db.rs:12")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!body.to_string().contains("hunter2"));
}

#[tokio::test]
async fn rate_limits_say_when_to_retry() {
    let (status, headers, _) = render(Error::RateLimited {
        retry_after: std::time::Duration::from_secs(42),
    })
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "42");
}

/// A probe met axum's own answers: 405 with an empty body on every API service, 413 as text/plain
/// from an endpoint that reads raw bytes. Through the kit's server they are problem+json too, with
/// their headers; an HTML error page (web's) is left as it is.
#[tokio::test]
async fn the_frameworks_own_errors_are_problems_too() {
    use axum::{
        Router,
        body::Bytes,
        response::Html,
        routing::{get, post},
    };
    use storefront_kit::{
        config::HttpConfig,
        server::{self, Readiness},
    };

    let routes = Router::new()
        .route(
            "/raw",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/page",
            get(|| async { (StatusCode::NOT_FOUND, Html("<h1>Not found</h1>")) }),
        );
    let http = HttpConfig {
        max_body_bytes: 1024,
        ..HttpConfig::default()
    };
    let app = server::build("problems-test", routes, Readiness::new(), &http);
    let base = format!("http://{}", storefront_kit::testing::spawn(app).await);
    let client = reqwest::Client::new();
    // A problem+json answer of `status` and type `kind`: its body.
    async fn problem(response: reqwest::Response, status: u16, kind: &str) -> serde_json::Value {
        assert_eq!(response.status(), status);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            body["type"],
            format!("https://storefront.dev/problems/{kind}")
        );
        body
    }

    let response = client.delete(format!("{base}/raw")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    let body = problem(response, 405, "method-not-allowed").await;
    assert_eq!(body["detail"], "DELETE is not allowed on /raw");

    let response = client
        .post(format!("{base}/raw"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    let body = problem(response, 413, "payload-too-large").await;
    assert_eq!(body["status"], 413);

    let response = client
        .post(format!("{base}/raw"))
        .body("ok")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "2");

    let response = client.get(format!("{base}/page")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(response.text().await.unwrap(), "<h1>Not found</h1>");
}

/// During the fault test a payment met MongoDB's restart ("I/O error: unexpected end of file") and
/// answered 500; the database not answering is a 503, like any dependency that is down.
#[tokio::test]
async fn a_database_that_does_not_answer_is_unavailable_not_a_bug() {
    let eof = mongodb::error::Error::from(mongodb::error::ErrorKind::from(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "unexpected end of file",
    )));
    let (status, _, body) = render(Error::from(eof)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["type"], "https://storefront.dev/problems/unavailable");
    let bug = mongodb::error::Error::custom("a driver bug");
    let (status, _, _) = render(Error::from(bug)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
}

/// JSON is UTF-8: a body that says it is in another charset is a 415, not read as something else.
#[tokio::test]
async fn a_json_body_in_another_charset_is_refused() {
    use axum::{Router, routing::post};
    use storefront_kit::{
        config::HttpConfig,
        server::{self, Readiness},
    };

    #[derive(serde::Deserialize)]
    struct Named {
        name: String,
    }
    let routes = Router::new().route(
        "/named",
        post(|storefront_kit::Json(n): storefront_kit::Json<Named>| async move { n.name }),
    );
    let app = server::build(
        "charset-test",
        routes,
        Readiness::new(),
        &HttpConfig::default(),
    );
    let base = format!("http://{}", storefront_kit::testing::spawn(app).await);
    let client = reqwest::Client::new();
    for (content_type, status) in [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("application/json; charset=\"UTF-8\"", 200),
        ("application/json; charset=latin1", 415),
        ("application/json;charset=iso-8859-1", 415),
        ("application/merge-patch+json", 200),
        ("text/plain", 415),
        ("application/jsonx", 415),
    ] {
        let response = client
            .post(format!("{base}/named"))
            .header("content-type", content_type)
            .body(r#"{"name":"Ada"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{content_type}");
        if status == 415 {
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(
                body["type"],
                "https://storefront.dev/problems/unsupported-media-type"
            );
        }
    }
    // serde's derive reads an array as a struct's fields by position; a body is an object.
    for (body, status) in [(r#"["Ada"]"#, 400), (r#" ["Ada"]"#, 400), ("\"Ada\"", 400)] {
        let response = client
            .post(format!("{base}/named"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{body}");
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            problem["type"],
            "https://storefront.dev/problems/malformed-request"
        );
    }
}
