//! Creating, reading, listing and searching products, and the bad inputs of each.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use storefront_kit::auth::Role;

use crate::helpers::*;

#[tokio::test]
async fn an_admin_creates_a_product_anyone_can_read() {
    let app = spawn_app().await;
    let response = app
        .create(json!({
            "title": "  Stoneware Mug ",
            "description": "Blue.\nHeavy.",
            "category": "Kitchen",
            "price": { "amount": 1800, "currency": "usd" },
            "stock": 7,
        }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(etag(&response), "\"v1\"");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/products/{}", created["id"].as_str().unwrap())
    );
    assert_eq!(created["title"], "Stoneware Mug");
    assert_eq!(created["category"], "kitchen");
    assert_eq!(
        created["price"],
        json!({ "amount": 1800, "currency": "USD" })
    );
    assert_eq!(created["available"], 7);
    assert_eq!(created["in_stock"], true);
    assert_eq!(created["version"], 1);

    // Without any token.
    let response = app
        .get(&format!("/{}", created["id"].as_str().unwrap()))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(etag(&response), "\"v1\"");
    let read: Value = response.json().await.unwrap();
    assert_eq!(read, created);

    // A conditional GET with the current tag is a 304.
    let response = app
        .http
        .get(app.url(&format!("/{}", created["id"].as_str().unwrap())))
        .header("if-none-match", "\"v1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn only_admins_write() {
    let app = spawn_app().await;
    let product = app.product("Mug", "kitchen", 1800, 1).await;
    let id = product["id"].as_str().unwrap();
    let body =
        json!({ "title": "X", "category": "x", "price": { "amount": 1, "currency": "USD" } });
    let writes = [
        (Method::POST, String::new(), Some(body.clone())),
        (
            Method::PUT,
            format!("/{id}"),
            Some(
                json!({ "title": "X", "description": "", "category": "x", "price": { "amount": 1, "currency": "USD" } }),
            ),
        ),
        (
            Method::PATCH,
            format!("/{id}"),
            Some(json!({ "title": "X" })),
        ),
        (Method::DELETE, format!("/{id}"), None),
        (
            Method::POST,
            format!("/{id}/stock"),
            Some(json!({ "set": 0, "reason": "x" })),
        ),
        (Method::GET, format!("/{id}/stock"), None),
        (Method::DELETE, format!("/{id}/images/a.png"), None),
    ];
    let customer = app.mint(Role::Customer);
    for (method, path, body) in writes {
        let response = app
            .send(
                method.clone(),
                &path,
                Some(&customer),
                Some("\"v1\""),
                body.clone(),
            )
            .await;
        problem(response, StatusCode::FORBIDDEN, "admin-only").await;
        let response = app.send(method, &path, None, Some("\"v1\""), body).await;
        problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }
    let response = app.get(&format!("/{id}")).await;
    let unchanged: Value = response.json().await.unwrap();
    assert_eq!(unchanged["version"], 1);
}

#[tokio::test]
async fn invalid_products_are_refused_field_by_field() {
    let app = spawn_app().await;
    let response = app
        .create(json!({
            "title": " ",
            "category": "Not A Slug!",
            "price": { "amount": 0, "currency": "USD" },
            "stock": -1,
        }))
        .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(
        fields(&body),
        ["title", "category", "price.amount", "stock"]
    );

    for (price, field) in [
        (json!({ "amount": -5, "currency": "USD" }), "price.amount"),
        (
            json!({ "amount": 100_000_001, "currency": "USD" }),
            "price.amount",
        ),
        (
            json!({ "amount": 100, "currency": "XXX" }),
            "price.currency",
        ),
        (json!({ "amount": 100, "currency": "" }), "price.currency"),
    ] {
        let response = app
            .create(json!({ "title": "Mug", "category": "kitchen", "price": price }))
            .await;
        let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        assert_eq!(fields(&body), [field]);
    }
    let response = app
        .create(json!({ "title": "Mug", "category": "kitchen", "price": { "amount": 1, "currency": "USD" }, "stock": 1_000_001 }))
        .await;
    problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;

    // Wrong types, unknown fields and money as a float are malformed, not guessed at.
    for body in [
        json!({ "title": "Mug", "category": "kitchen", "price": { "amount": 18.5, "currency": "USD" } }),
        json!({ "title": "Mug", "category": "kitchen", "price": "18.00" }),
        json!({ "title": "Mug", "category": "kitchen", "price": { "amount": 1, "currency": "USD" }, "sku": "x" }),
        json!({ "category": "kitchen", "price": { "amount": 1, "currency": "USD" } }),
    ] {
        problem(
            app.create(body).await,
            StatusCode::BAD_REQUEST,
            "malformed-request",
        )
        .await;
    }
    let response = app
        .http
        .post(app.url(""))
        .bearer_auth(&app.admin)
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;

    let listed: Value = app.get("").await.json().await.unwrap();
    assert_eq!(listed["total"], 0);
}

#[tokio::test]
async fn unknown_products_are_not_found() {
    let app = spawn_app().await;
    let random = uuid::Uuid::new_v4();
    problem(
        app.get(&format!("/{random}")).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    problem(
        app.get("/not-a-uuid").await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    let response = app
        .send(
            Method::PATCH,
            &format!("/{random}"),
            Some(&app.admin),
            Some("\"v1\""),
            Some(json!({ "title": "X" })),
        )
        .await;
    problem(response, StatusCode::NOT_FOUND, "not-found").await;
    let response = app
        .send(
            Method::POST,
            &format!("/{random}/stock"),
            Some(&app.admin),
            None,
            Some(json!({ "adjust": 1, "reason": "found one" })),
        )
        .await;
    problem(response, StatusCode::NOT_FOUND, "not-found").await;
    let response = app
        .upload(
            &random.to_string(),
            png(64, 64, [0, 0, 0], [9, 9, 9]),
            "a.png",
            false,
        )
        .await;
    problem(response, StatusCode::NOT_FOUND, "not-found").await;
}

async fn titles(app: &crate::helpers::TestApp, query: &str) -> (Vec<String>, u64) {
    let response = app.get(query).await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    let body: Value = response.json().await.unwrap();
    let titles = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_owned())
        .collect();
    (titles, body["total"].as_u64().unwrap())
}

#[tokio::test]
async fn lists_filter_sort_and_paginate() {
    let app = spawn_app().await;
    app.product("Mug", "kitchen", 1800, 5).await;
    app.product("Knife", "kitchen", 8900, 0).await;
    app.product("Beanie", "apparel", 3200, 2).await;
    app.product("Socks", "apparel", 1600, 9).await;
    app.product("Lamp", "home", 7900, 1).await;

    let (newest, total) = titles(&app, "").await;
    assert_eq!(total, 5);
    assert_eq!(newest, ["Lamp", "Socks", "Beanie", "Knife", "Mug"]);
    assert_eq!(titles(&app, "?category=kitchen").await.0, ["Knife", "Mug"]);
    assert_eq!(
        titles(&app, "?sort=price_asc").await.0,
        ["Socks", "Mug", "Beanie", "Lamp", "Knife"]
    );
    assert_eq!(
        titles(&app, "?sort=price_desc&min_price=1800&max_price=7900")
            .await
            .0,
        ["Lamp", "Beanie", "Mug"]
    );
    assert_eq!(
        titles(&app, "?in_stock=true&category=kitchen").await.0,
        ["Mug"]
    );
    let (page, total) = titles(&app, "?sort=price_asc&per_page=2&page=2").await;
    assert_eq!(
        (page, total),
        (vec!["Beanie".to_owned(), "Lamp".to_owned()], 5)
    );
    let (page, total) = titles(&app, "?per_page=2&page=9").await;
    assert_eq!((page.len(), total), (0, 5));

    for (query, field) in [
        ("?per_page=0", "per_page"),
        ("?per_page=101", "per_page"),
        ("?page=0", "page"),
        ("?page=1001", "page"),
        ("?page=-1", "page"),
        ("?page=1e9", "page"),
        ("?per_page=ten", "per_page"),
        ("?per_page=-1", "per_page"),
        ("?min_price=-1", "min_price"),
        ("?min_price=500&max_price=100", "max_price"),
        ("?sort=cheapest", "sort"),
        ("?category=Not%20a%20slug", "category"),
    ] {
        let body = problem(
            app.get(query).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        )
        .await;
        assert_eq!(fields(&body), [field], "{query}");
    }
    for query in ["?colour=red", "?in_stock=maybe"] {
        problem(
            app.get(query).await,
            StatusCode::BAD_REQUEST,
            "malformed-request",
        )
        .await;
    }
}

#[tokio::test]
async fn search_matches_text_literally_whatever_its_characters() {
    let app = spawn_app().await;
    app.product("C++ Mug (deluxe)", "kitchen", 1800, 1).await;
    app.product("Plain Mug", "kitchen", 1200, 1).await;
    app.product("Price: $5 [sale]", "kitchen", 500, 1).await;
    app.product("Crème Brûlée Torch", "kitchen", 2500, 1).await;

    assert_eq!(titles(&app, "?q=mug").await.1, 2);
    assert_eq!(
        titles(&app, "?q=C%2B%2B%20Mug%20(").await.0,
        ["C++ Mug (deluxe)"]
    );
    assert_eq!(
        titles(&app, "?q=%245%20%5Bsale").await.0,
        ["Price: $5 [sale]"]
    );
    assert_eq!(
        titles(&app, "?q=br%C3%BBl%C3%A9e").await.0,
        ["Crème Brûlée Torch"]
    );
    // Regex syntax is text, not a pattern: these match nothing rather than everything or an error.
    for odd in [
        ".*",
        "%5E",
        "%5C",
        "a%7Cb",
        "%7B%22%24ne%22%3A1%7D",
        "%27%3B--",
        "%5Bsale%5D%2B",
    ] {
        assert_eq!(titles(&app, &format!("?q={odd}")).await.1, 0, "{odd}");
    }
    assert_eq!(titles(&app, "?q=(").await.0, ["C++ Mug (deluxe)"]);
    // Descriptions are searched too.
    assert_eq!(
        titles(&app, "?q=all%20about%20plain").await.0,
        ["Plain Mug"]
    );

    let long = "x".repeat(101);
    let body = problem(
        app.get(&format!("?q={long}")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await;
    assert_eq!(fields(&body), ["q"]);
    let body = problem(
        app.get("?q=a%00b").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await;
    assert_eq!(fields(&body), ["q"]);
}

/// The catalog's categories, as the products are: what the shop's filter offers.
#[tokio::test]
async fn categories_come_from_the_live_products() {
    let app = spawn_app().await;
    let empty: Value = app.get("/categories").await.json().await.unwrap();
    assert_eq!(empty["items"], serde_json::json!([]));
    app.product("Mug", "kitchen", 1800, 1).await;
    app.product("Pan", "kitchen", 3900, 1).await;
    let tent = app.product("Tent", "outdoors", 19900, 1).await;
    let list: Value = app.get("/categories").await.json().await.unwrap();
    assert_eq!(
        list["items"],
        serde_json::json!([
            { "category": "kitchen", "count": 2 },
            { "category": "outdoors", "count": 1 }
        ])
    );
    let response = app
        .send(
            reqwest::Method::DELETE,
            &format!("/{}", tent["id"].as_str().unwrap()),
            Some(&app.admin),
            Some("\"v1\""),
            None,
        )
        .await;
    assert!(response.status().is_success(), "{}", response.status());
    let list: Value = app.get("/categories").await.json().await.unwrap();
    assert_eq!(
        list["items"],
        serde_json::json!([{ "category": "kitchen", "count": 2 }])
    );
}
