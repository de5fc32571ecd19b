//! Stripe's webhook: signatures are checked, and an outcome is recorded once whichever of the
//! confirmation and the webhook comes first.

use reqwest::StatusCode;
use serde_json::{Value, json};
use stripe_webhook::Webhook;

use crate::helpers::*;

fn signed_event(kind: &str, intent: &Value) -> (String, String) {
    let payload = json!({
        "id": format!("evt_{}", uuid::Uuid::new_v4().simple()),
        "object": "event",
        "api_version": "2020-08-27",
        "created": chrono::Utc::now().timestamp(),
        "data": { "object": intent },
        "livemode": false,
        "pending_webhooks": 1,
        "type": kind,
    })
    .to_string();
    let header = Webhook::generate_test_header(&payload, WEBHOOK_SECRET, None);
    (payload, header)
}

async fn post(app: &App, payload: &str, signature: Option<&str>) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.url("/webhook"))
        .header("content-type", "application/json")
        .body(payload.to_owned());
    if let Some(signature) = signature {
        request = request.header("stripe-signature", signature);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn the_webhook_records_an_outcome_once() {
    let app = app().await;
    let ada = app.customer();
    let order = app.order(&ada, 1500, true).await;
    // A declined attempt leaves an intent; then Stripe tells us it succeeded after all (say the
    // customer finished 3-D Secure in Stripe.js).
    assert_eq!(
        app.pay(&ada, order, "pm_card_chargeCustomerFail")
            .await
            .status(),
        StatusCode::PAYMENT_REQUIRED
    );
    let record = app.store.payment(order.into()).await.unwrap().unwrap();
    let mut intent = app
        .intent(record.payment_intent_id.as_deref().unwrap())
        .await;
    intent["status"] = json!("succeeded");
    let (payload, signature) = signed_event("payment_intent.succeeded", &intent);

    // Unsigned, tampered, or signed with another secret: refused, nothing recorded.
    problem(
        post(&app, &payload, None).await,
        StatusCode::BAD_REQUEST,
        "malformed-request",
    )
    .await;
    let amount = format!("\"amount\":{}", intent["amount"]);
    assert!(payload.contains(&amount));
    let tampered = payload.replace(&amount, "\"amount\":1");
    problem(
        post(&app, &tampered, Some(&signature)).await,
        StatusCode::BAD_REQUEST,
        "malformed-request",
    )
    .await;
    let foreign = Webhook::generate_test_header(&payload, "whsec_someone_else", None);
    problem(
        post(&app, &payload, Some(&foreign)).await,
        StatusCode::BAD_REQUEST,
        "malformed-request",
    )
    .await;
    problem(
        post(&app, "not json", Some(&signature)).await,
        StatusCode::BAD_REQUEST,
        "malformed-request",
    )
    .await;

    assert_eq!(
        post(&app, &payload, Some(&signature)).await.status(),
        StatusCode::NO_CONTENT
    );
    // Delivered again: still one success.
    assert_eq!(
        post(&app, &payload, Some(&signature)).await.status(),
        StatusCode::NO_CONTENT
    );
    // A late failure of the earlier attempt does not undo it.
    intent["status"] = json!("requires_payment_method");
    let (late, late_signature) = signed_event("payment_intent.payment_failed", &intent);
    assert_eq!(
        post(&app, &late, Some(&late_signature)).await.status(),
        StatusCode::NO_CONTENT
    );

    let events = app.events(order, 2).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(kinds, ["payment.failed", "payment.succeeded"]);
    problem(
        app.pay(&ada, order, "pm_card_visa").await,
        StatusCode::CONFLICT,
        "already-paid",
    )
    .await;
}

/// A PaymentMethod for `card`, made as Stripe.js makes it in the browser.
async fn payment_method(app: &App, card: &str) -> String {
    let method: Value = app
        .http
        .post(format!("{}/v1/payment_methods", app.stack.stripe_url))
        .basic_auth(&app.stack.stripe_secret_key, Some(""))
        .form(&[
            ("type", "card"),
            ("card[number]", card),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2034"),
            ("card[cvc]", "123"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    method["id"].as_str().expect("a payment method").to_owned()
}

#[tokio::test]
async fn a_three_d_secure_card_is_finished_by_the_customer_and_reported_by_stripe() {
    let app = app().await;
    // Point the Stripe stand-in's webhooks at this app (it signs them as Stripe does).
    let id = uuid::Uuid::new_v4().simple().to_string();
    let response = app
        .http
        .post(format!("{}/_config/webhooks/{id}", app.stack.stripe_url))
        .basic_auth(&app.stack.stripe_secret_key, Some(""))
        .form(&[
            ("url", app.url("/webhook")),
            ("secret", WEBHOOK_SECRET.to_owned()),
        ])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let ada = app.customer();
    let order = app.order(&ada, 2100, true).await;
    let method = payment_method(&app, "4000002760003184").await;

    // The card needs the customer: no outcome yet, a client secret for Stripe.js.
    let response = app.pay(&ada, order, &method).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let pending: Value = response.json().await.unwrap();
    assert_eq!(pending["status"], "requires_action");
    let secret = pending["client_secret"].as_str().unwrap().to_owned();
    let shown: Value = app
        .http
        .get(app.url(&format!("/{order}")))
        .bearer_auth(&ada.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["status"], "requires_action");

    // Stripe.js finishes 3-D Secure in the browser; Stripe reports the success by webhook only.
    let record = app.store.payment(order.into()).await.unwrap().unwrap();
    let intent = record.payment_intent_id.unwrap();
    let response = app
        .http
        .post(format!(
            "{}/v1/payment_intents/{intent}/_authenticate",
            app.stack.stripe_url
        ))
        .basic_auth(&app.stack.stripe_secret_key, Some(""))
        .form(&[("client_secret", secret.as_str()), ("success", "true")])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let events = app.events(order, 1).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(kinds, ["payment.succeeded"]);
    let record = app.store.payment(order.into()).await.unwrap().unwrap();
    assert_eq!(
        record.status,
        storefront_payments::store::PaymentStatus::Succeeded
    );
}
