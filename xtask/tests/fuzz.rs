//! Every operation of `docs/api/openapi.json` fuzzed through the gateway by schemathesis:
//! generated input that fits the schemas and input that breaks them, in three passes — no token,
//! a customer's, an admin's — each bounded in time. Any 5xx, any answer with a status the
//! operation does not list, a content type it does not list or a body that does not match its
//! schema, and any input that breaks the schema yet is accepted, fails the run.
//!
//! It runs on the suite's shop once the suite is done (the `fuzz` nextest profile, started by
//! `cargo xtask test`, xtask/src/test.rs), because what it writes (junk products as the admin,
//! carts) would trip tests that count things. It prints the requests sent, by status class.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use serde_json::{Value, json};

/// Each pass's time budget. schemathesis spends it all (fuzzing repeats until it is spent).
const PASS_SECONDS: u64 = 60;

/// Test cases per operation and phase.
const MAX_EXAMPLES: u32 = 30;

/// The checks: what the module doc says fails the run. (`positive_data_acceptance` is left out:
/// input a schema allows may still break a rule a schema cannot say, such as "this product is not
/// sold here", and is then a documented 4xx.)
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,negative_data_rejection";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run this through `cargo xtask test` (the fuzz profile)")
    })
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Signs in (or up, then in) through the gateway; the access token.
async fn token(shop: &str, path: &str, body: Value) -> String {
    let answer = reqwest::Client::new()
        .post(format!("{shop}{path}"))
        .json(&body)
        .send()
        .await
        .expect("the gateway answers");
    let status = answer.status();
    let body: Value = answer.json().await.expect("a JSON answer");
    assert!(status.is_success(), "{path}: {status} {body}");
    body["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

/// One schemathesis run; what it sent, by status class (from its NDJSON report).
struct Pass {
    ok: bool,
    statuses: BTreeMap<String, u64>,
    failures: Vec<String>,
}

fn run(shop: &str, name: &str, token: Option<&str>, exclude: &[&str]) -> Pass {
    let dir = root().join("target/fuzz");
    std::fs::create_dir_all(&dir).expect("make target/fuzz");
    let report = dir.join(format!("{name}.ndjson"));
    let _ = std::fs::remove_file(&report);
    let mut command = Command::new(env("STOREFRONT_TEST_SCHEMATHESIS"));
    command
        .current_dir(&dir)
        .arg("run")
        .arg(root().join("docs/api/openapi.json"))
        .args(["--url", shop])
        .args(["--checks", CHECKS])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-time", &PASS_SECONDS.to_string()])
        .args(["--max-examples", &MAX_EXAMPLES.to_string()])
        // One worker: hypothesis describes its strategies by parsing source from threads, and
        // CPython 3.11's parser is not thread-safe ("AST constructor recursion depth mismatch").
        .args(["--workers", "1"])
        .args(["--request-timeout", "20"])
        .args(["--seed", "20261201"])
        .args(["--generation-database", "none"])
        .args(["--report", "ndjson", "--report-ndjson-path"])
        .arg(&report)
        .args(["--no-color", "--output-truncate", "true"]);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    for operation in exclude {
        command.args(["--exclude-operation-id", operation]);
    }
    let started = Instant::now();
    let output = command.output().expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!(
        "── pass {name} ({:.0} s) ──\n{}{}",
        started.elapsed().as_secs_f64(),
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let (statuses, failures) = read_report(&report);
    Pass {
        ok: output.status.success(),
        statuses,
        failures,
    }
}

/// The status classes of every response in an NDJSON report, and the failed checks' names.
fn read_report(report: &Path) -> (BTreeMap<String, u64>, Vec<String>) {
    let text = std::fs::read_to_string(report).unwrap_or_default();
    let mut statuses = BTreeMap::new();
    let mut failures = Vec::new();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let mut found = Vec::new();
        collect(&event, &mut found, &mut failures);
        for status in found {
            *statuses.entry(format!("{}xx", status / 100)).or_insert(0) += 1;
        }
    }
    failures.sort();
    failures.dedup();
    (statuses, failures)
}

/// Walks an event: every `response` object's `status_code`, every failed check's name.
fn collect(value: &Value, statuses: &mut Vec<u64>, failures: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(status) = map
                .get("response")
                .and_then(|r| r.get("status_code"))
                .and_then(Value::as_u64)
            {
                statuses.push(status);
            }
            if map.get("status").and_then(Value::as_str) == Some("FAILURE")
                && let Some(name) = map.get("name").and_then(Value::as_str)
            {
                failures.push(name.to_owned());
            }
            for item in map.values() {
                collect(item, statuses, failures);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect(i, statuses, failures)),
        _ => {}
    }
}

/// Each service serves its own document through the gateway, and it is the part of the merged
/// one (`docs/api/openapi.json`) its prefix holds.
async fn each_service_serves_its_document(shop: &str) {
    let merged: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("docs/api/openapi.json"))
            .expect("the merged document"),
    )
    .expect("JSON");
    for prefix in [
        "users",
        "products",
        "cart",
        "orders",
        "payments",
        "notifications",
    ] {
        let answer = reqwest::get(format!("{shop}/api/{prefix}/openapi.json"))
            .await
            .expect("the gateway answers");
        assert_eq!(answer.status(), 200, "/api/{prefix}/openapi.json");
        assert_eq!(
            answer.headers()["content-type"],
            "application/json",
            "/api/{prefix}/openapi.json"
        );
        let document: Value = answer.json().await.expect("JSON");
        assert_eq!(document["openapi"], "3.1.0");
        let paths = document["paths"].as_object().expect("paths");
        assert!(!paths.is_empty(), "{prefix} documents nothing");
        for (path, item) in paths {
            assert!(
                path.starts_with(&format!("/api/{prefix}")),
                "{prefix} documents {path}"
            );
            assert_eq!(
                &merged["paths"][path], item,
                "{path} as served and as merged"
            );
        }
    }
}

#[tokio::test]
async fn every_documented_operation_holds_under_generated_and_malformed_input() {
    let shop = env("STOREFRONT_TEST_SHOP_URL");
    each_service_serves_its_document(&shop).await;
    let admin = token(
        &shop,
        "/api/users/signin",
        json!({
            "email": env("STOREFRONT_TEST_SHOP_ADMIN_EMAIL"),
            "password": env("STOREFRONT_TEST_SHOP_ADMIN_PASSWORD"),
        }),
    )
    .await;
    let customer = token(
        &shop,
        "/api/users/signup",
        json!({
            "email": format!("fuzz-{}@example.com", uuid::Uuid::new_v4().simple()),
            "password": "fuzzing-password-1",
            "name": "Fuzz Customer",
        }),
    )
    .await;
    // Signing out would revoke the pass's own token for the rest of it.
    let signed_in = ["signOut"];
    let passes = [
        run(&shop, "anonymous", None, &[]),
        run(&shop, "customer", Some(&customer), &signed_in),
        run(&shop, "admin", Some(&admin), &signed_in),
    ];
    let mut total = BTreeMap::new();
    for pass in &passes {
        for (class, count) in &pass.statuses {
            *total.entry(class.clone()).or_insert(0u64) += count;
        }
    }
    let sent: u64 = total.values().sum();
    eprintln!(
        "FIGURES {sent} requests in 3 passes of {PASS_SECONDS} s: {}",
        total
            .iter()
            .map(|(class, count)| format!("{class} {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let names = ["anonymous", "customer", "admin"];
    let failed: Vec<String> = passes
        .iter()
        .zip(names)
        .filter(|(pass, _)| !pass.ok)
        .map(|(pass, name)| format!("{name}: {}", pass.failures.join(", ")))
        .collect();
    assert!(
        failed.is_empty(),
        "schemathesis found failures (its output is above; reports in target/fuzz/): {failed:?}"
    );
    assert!(sent > 0, "no request was sent");
    assert!(
        !total.contains_key("5xx"),
        "a 5xx answer: {total:?} (see the reports in target/fuzz/)"
    );
}
