//! Fees and totals as a function (docs/api/pricing.md): every order is priced over HTTP — the
//! built-in function by default, a shop's own when `PRICING_URL` says so — and the answer is
//! recorded on the order; a function that is slow, down or answers garbage is replaced by the
//! built-in rules, recorded as the fallback, and never fails an order.

use std::time::{Duration, Instant};

use axum::{Json, Router, http::StatusCode as AxumStatus, routing::post};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use storefront_kit::testing::spawn;
use storefront_orders::pricing::{PricingRequest, builtin};

use crate::helpers::*;

/// A pricing function of the test's own, served over HTTP on a free port: its URL.
async fn function(router: Router) -> String {
    format!("http://{}/price", spawn(router).await)
}

/// A shop's own rules: free shipping, 10% off, 5% tax on what is left.
async fn own_rules(Json(request): Json<PricingRequest>) -> Json<Value> {
    let subtotal = request.subtotal.amount;
    let discount = subtotal / 10;
    let tax = (subtotal - discount) * 5 / 100;
    let money = |amount: i64| json!({ "amount": amount, "currency": request.currency });
    Json(json!({ "charges": [
        { "kind": "shipping", "label": "Free shipping", "amount": money(0) },
        { "kind": "discount", "label": "Spring sale (10%)", "amount": money(-discount) },
        { "kind": "tax", "label": "Tax (5%)", "amount": money(tax) },
    ] }))
}

fn amounts(order: &Value) -> Vec<i64> {
    order["charges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["amount"]["amount"].as_i64().unwrap())
        .collect()
}

async fn place(shop: &Shop, who: &Customer, product: &str, quantity: i64) -> Value {
    let response = shop
        .place(
            who,
            json!([{ "product_id": product, "quantity": quantity }]),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

/// The built-in rules for a subtotal, as the function computes them.
fn builtin_amounts(subtotal: i64) -> Vec<i64> {
    let request = PricingRequest {
        order_id: None,
        user_id: uuid::Uuid::new_v4().into(),
        currency: "USD".into(),
        lines: Vec::new(),
        subtotal: storefront_events::Money {
            amount: subtotal,
            currency: "USD".into(),
        },
    };
    builtin(&request)
        .charges
        .iter()
        .map(|c| c.amount.amount)
        .collect()
}

#[tokio::test]
async fn orders_are_priced_by_the_builtin_function_by_default_and_it_is_recorded() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 5).await;
    let ada = shop.customer();
    let order = place(&shop, &ada, &mug, 2).await;
    // Shipping 4.99 below 50.00, a 1% fee of at least 0.30, 8% tax on items and shipping.
    assert_eq!(order["subtotal"]["amount"], 3600);
    assert_eq!(amounts(&order), [499, 36, 328]);
    assert_eq!(order["total"]["amount"], 3600 + 499 + 36 + 328);
    assert_eq!(order["pricing"], json!({ "source": "function" }));
    let kinds: Vec<&str> = order["charges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["shipping", "fee", "tax"]);
    // The answer is the order's: read back, and in the event the other services see.
    let id = order["id"].as_str().unwrap();
    let read = shop.order(&ada.token, id).await;
    assert_eq!(read["charges"], order["charges"]);
    let events = shop.order_events(id, 1).await;
    assert_eq!(events[0].data["charges"], order["charges"]);
    assert_eq!(events[0].data["total"], order["total"]);
    // payments is told to charge the recorded total.
    let held: Value = shop.hold(&ada.token, id, "10").await.json().await.unwrap();
    assert_eq!(held["total"], order["total"]);
}

#[tokio::test]
async fn a_shops_own_pricing_function_prices_its_orders_and_its_quotes() {
    let url = function(Router::new().route("/price", post(own_rules))).await;
    let shop = shop_with(|config| config.pricing_url = Some(url)).await;
    let mug = shop.product("Mug", 1800, 5).await;
    let ada = shop.customer();
    let order = place(&shop, &ada, &mug, 2).await;
    assert_eq!(amounts(&order), [0, -360, 162]);
    assert_eq!(order["total"]["amount"], 3600 - 360 + 162);
    assert_eq!(order["charges"][1]["label"], "Spring sale (10%)");
    assert_eq!(order["pricing"]["source"], "function");

    // A quote prices the same lines the same way and places nothing.
    let response = shop
        .orders(
            Method::POST,
            "/quote",
            Some(&ada.token),
            Some(json!({ "lines": [{ "product_id": mug, "quantity": 2 }] })),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let quote: Value = response.json().await.unwrap();
    assert_eq!(quote["charges"], order["charges"]);
    assert_eq!(quote["total"], order["total"]);
    assert_eq!(quote["subtotal"]["amount"], 3600);
    let mine: Value = shop
        .orders(Method::GET, "", Some(&ada.token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["total"], 1, "the quote placed nothing");
    // A quote's bad requests are the order's.
    for (body, status) in [
        (json!({ "lines": [] }), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({ "lines": [{ "product_id": mug, "quantity": 1 }], "total": 1 }),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let response = shop
            .orders(Method::POST, "/quote", Some(&ada.token), Some(body))
            .await;
        assert_eq!(response.status(), status);
    }
    let response = shop
        .orders(
            Method::POST,
            "/quote",
            None,
            Some(json!({ "lines": [{ "product_id": mug, "quantity": 1 }] })),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_slow_pricing_function_is_replaced_by_the_builtin_rules_and_the_order_says_so() {
    let slow = Router::new().route(
        "/price",
        post(|request: Json<PricingRequest>| async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            own_rules(request).await
        }),
    );
    let url = function(slow).await;
    let shop = shop_with(|config| {
        config.pricing_url = Some(url);
        config.pricing_timeout = Duration::from_millis(300);
    })
    .await;
    let mug = shop.product("Mug", 1800, 5).await;
    let ada = shop.customer();
    let started = Instant::now();
    let order = place(&shop, &ada, &mug, 2).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "it did not wait"
    );
    assert_eq!(order["pricing"]["source"], "fallback");
    assert_eq!(
        order["pricing"]["fallback_reason"],
        "the pricing function did not answer within 300 ms"
    );
    assert_eq!(amounts(&order), builtin_amounts(3600));
}

/// What the garbling function answers, by the case the test sets.
async fn garbled(case: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let charge = |kind: &str, amount: i64, currency: &str| {
        json!({ "charges": [
            { "kind": kind, "label": kind, "amount": { "amount": amount, "currency": currency } }
        ] })
    };
    match case {
        "down" => AxumStatus::INTERNAL_SERVER_ERROR.into_response(),
        "text" => "shipping: free".into_response(),
        "euros" => Json(charge("tax", 100, "EUR")).into_response(),
        "negative" => Json(charge("shipping", -500, "USD")).into_response(),
        "tip" => Json(charge("tip", 100, "USD")).into_response(),
        _ => Json(json!({ "fees": 12 })).into_response(),
    }
}

#[tokio::test]
async fn a_pricing_function_answering_garbage_never_fails_an_order() {
    let case = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let garbling = {
        let case = case.clone();
        Router::new().route(
            "/price",
            post(move || {
                let now = case.lock().unwrap().clone();
                async move { garbled(&now).await }
            }),
        )
    };
    let url = function(garbling).await;
    let shop = shop_with(|config| config.pricing_url = Some(url)).await;
    let mug = shop.product("Mug", 1800, 50).await;
    let ada = shop.customer();
    for (answer, why) in [
        ("down", "answered 500"),
        ("text", "not pricing"),
        ("euros", "EUR"),
        ("negative", "out of bounds"),
        ("tip", "\"tip\""),
        ("shape", "not pricing"),
    ] {
        *case.lock().unwrap() = answer.to_owned();
        let order = place(&shop, &ada, &mug, 1).await;
        assert_eq!(order["pricing"]["source"], "fallback", "{answer}");
        let reason = order["pricing"]["fallback_reason"].as_str().unwrap();
        assert!(reason.contains(why), "{answer}: {reason}");
        assert_eq!(amounts(&order), builtin_amounts(1800), "{answer}");
    }
    // Nobody there at all.
    let shop =
        shop_with(|config| config.pricing_url = Some("http://127.0.0.1:9/price".into())).await;
    let mug = shop.product("Mug", 1800, 5).await;
    let order = place(&shop, &shop.customer(), &mug, 1).await;
    assert_eq!(order["pricing"]["source"], "fallback");
    assert!(
        order["pricing"]["fallback_reason"]
            .as_str()
            .unwrap()
            .contains("could not be reached")
    );
}

#[tokio::test]
async fn charges_that_take_an_order_past_one_payment_are_refused_before_anyone_pays() {
    // A fee that takes the total one minor unit past Stripe's ceiling.
    let greedy = Router::new().route(
        "/price",
        post(|Json(request): Json<PricingRequest>| async move {
            let fee = storefront_orders::domain::MAX_ORDER_TOTAL - request.subtotal.amount + 1;
            Json(json!({ "charges": [
                { "kind": "fee", "label": "Handling", "amount": { "amount": fee, "currency": "USD" } }
            ] }))
        }),
    );
    let url = function(greedy).await;
    let shop = shop_with(|config| config.pricing_url = Some(url)).await;
    let mug = shop.product("Mug", 1800, 5).await;
    let ada = shop.customer();
    let body = problem(
        shop.place(&ada, json!([{ "product_id": mug, "quantity": 1 }]))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "total");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("1000000.00 USD is more than one payment can take"),
        "{body}"
    );
    let mine: Value = shop
        .orders(Method::GET, "", Some(&ada.token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["total"], 0, "nothing was placed");
}
