//! `docs/api/openapi.json`: every service's OpenAPI 3.1 document (each served by its service at
//! `/api/{prefix}/openapi.json`, built by `storefront_kit::openapi`) merged into one, the shop's
//! whole API as the gateway serves it. This test fails when the file is stale: `cargo xtask
//! openapi` (or `STOREFRONT_BLESS=1`) rewrites it. `cargo xtask test` fuzzes it (tests/fuzz.rs).

use std::path::PathBuf;

use serde_json::{Map, Value, json};

/// Each service's document, in the order the merged one lists them.
fn documents() -> Vec<(&'static str, Value)> {
    vec![
        ("users", storefront_auth::openapi()),
        ("products", storefront_products::openapi()),
        ("cart", storefront_cart::openapi()),
        ("orders", storefront_orders::openapi()),
        ("payments", storefront_payments::openapi()),
        ("notifications", storefront_notifications::openapi()),
    ]
}

/// One document of all: paths and schemas side by side. A path in two services, or one schema
/// name for two different schemas, is a mistake to fix in the services (a schema name is unique
/// across the shop).
fn merged() -> Result<Value, Vec<String>> {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let mut tags = Vec::new();
    let mut wrong = Vec::new();
    let mut security_schemes = Value::Null;
    for (tag, document) in documents() {
        for problem in storefront_kit::openapi::lint(&document) {
            wrong.push(format!("{tag}: {problem}"));
        }
        tags.push(json!({
            "name": tag,
            "description": document["info"]["description"],
        }));
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            if paths.insert(path.clone(), item.clone()).is_some() {
                wrong.push(format!(
                    "{tag}: {path} is documented by another service too"
                ));
            }
        }
        let components = &document["components"];
        for (name, schema) in components["schemas"].as_object().into_iter().flatten() {
            match schemas.get(name) {
                Some(other) if other != schema => wrong.push(format!(
                    "{tag}: the schema name {name} means something else in another service"
                )),
                _ => {
                    schemas.insert(name.clone(), schema.clone());
                }
            }
        }
        security_schemes = components["securitySchemes"].clone();
    }
    if !wrong.is_empty() {
        return Err(wrong);
    }
    Ok(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Storefront",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The whole shop's API as the gateway serves it: each service's own \
                document (`/api/{prefix}/openapi.json`) merged. Errors are RFC 9457 \
                `application/problem+json` (docs/api/errors.md).",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" },
        },
        "tags": tags,
        "paths": paths,
        "components": { "schemas": schemas, "securitySchemes": security_schemes },
    }))
}

#[test]
fn docs_api_openapi_is_current() {
    let document = merged().unwrap_or_else(|wrong| panic!("{}", wrong.join("\n")));
    let mut text = serde_json::to_string_pretty(&document).expect("a document is JSON");
    text.push('\n');
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/api/openapi.json");
    if std::env::var_os("STOREFRONT_BLESS").is_some() {
        std::fs::write(&path, &text).expect("write docs/api/openapi.json");
        return;
    }
    assert!(
        std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()),
        "docs/api/openapi.json is stale: run `cargo xtask openapi`"
    );
}

#[test]
fn every_operation_is_named_once_and_says_who_may_call_it() {
    let document = merged().unwrap_or_else(|wrong| panic!("{}", wrong.join("\n")));
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            assert!(
                operation["security"].is_array(),
                "{method} {path} does not say who may call it"
            );
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{method} {path}: its {status} is not problem+json"
                    );
                }
            }
        }
    }
}
