//! The checkout saga end to end (docs/architecture.md §6, docs/saga.md): products, cart, orders and
//! payments over HTTP and Kafka against the real backends and the Stripe stand-in.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::{Value, json};
use storefront_orders::store::RefundStatus;
use storefront_payments::store::PaymentStatus;
use stripe_webhook::Webhook;

use crate::helpers::*;

async fn add(shop: &Shop, who: &Customer, product: &str, quantity: i64) {
    let response = shop
        .cart(
            reqwest::Method::POST,
            "/items",
            who,
            Some(json!({ "product_id": product, "quantity": quantity })),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn add_check_out_pay_and_the_order_completes() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 5).await;
    let ada = shop.customer();
    add(&shop, &ada, &mug, 2).await;

    let response = shop.checkout(&ada, "checkout-1").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let order: Value = response.json().await.unwrap();
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(order["subtotal"]["amount"], 3600);
    assert!(
        order["total"]["amount"].as_i64() > Some(3600),
        "with the shop's charges"
    );
    // The lines left the cart for the order at once.
    let cart = shop.view(&ada).await;
    assert_eq!(cart["count"], 0);
    assert_eq!(cart["held"], json!([{ "order_id": id, "count": 2 }]));
    // A retried checkout (same key) is the same order.
    let again: Value = shop
        .checkout(&ada, "checkout-1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"], order["id"]);
    // Something added after checkout is not in the order.
    add(&shop, &ada, &mug, 1).await;

    // Paid at once: payments waits for the stock to be reserved, no client polling.
    let paid = shop.pay(&ada, &id, "pm_card_visa").await;
    assert_eq!(
        paid.status(),
        StatusCode::OK,
        "{}",
        paid.text().await.unwrap()
    );
    let done = shop.wait_order(&ada, &id, "completed").await;
    assert_eq!(done["version"], 3);
    assert_eq!(done["payment"]["amount"], order["total"]);
    eventually("the reservation is sold", || async {
        shop.stock(&mug).await == (3, 0, 2)
    })
    .await;
    eventually("the bought lines are no longer held", || async {
        let cart = shop.view(&ada).await;
        cart["held"] == json!([]) && cart["count"] == 1
    })
    .await;
    problem(
        shop.pay(&ada, &id, "pm_card_visa").await,
        StatusCode::CONFLICT,
        "already-paid",
    )
    .await;
}

#[tokio::test]
async fn the_cart_shows_what_it_would_cost_as_an_order_and_the_order_costs_that() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 5).await;
    let ada = shop.customer();
    add(&shop, &ada, &mug, 2).await;
    // orders quotes the cart once its product replica has the mug.
    eventually("orders quotes the cart", || async {
        shop.view(&ada).await["estimate"].is_object()
    })
    .await;
    let estimate = shop.view(&ada).await["estimate"].clone();
    let charges: i64 = estimate["charges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["amount"]["amount"].as_i64().unwrap())
        .sum();
    assert!(charges > 0, "{estimate}");
    assert_eq!(estimate["total"]["amount"], 3600 + charges);
    let order: Value = shop.checkout(&ada, "k").await.json().await.unwrap();
    assert_eq!(order["charges"], estimate["charges"]);
    assert_eq!(order["total"], estimate["total"]);
    // Nothing left to quote.
    assert_eq!(shop.view(&ada).await["estimate"], Value::Null);
}

#[tokio::test]
async fn a_checked_out_line_is_never_ordered_twice() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 50).await;
    let ada = shop.customer();
    add(&shop, &ada, &mug, 1).await;

    // Two checkouts at once (two tabs, two keys): one order; the other finds the cart empty.
    let (first, second) = tokio::join!(shop.checkout(&ada, "tab-1"), shop.checkout(&ada, "tab-2"));
    let mut statuses = [first.status().as_u16(), second.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [201, 422]);
    let order: Value = if first.status() == StatusCode::CREATED {
        first.json().await.unwrap()
    } else {
        second.json().await.unwrap()
    };
    let id = order["id"].as_str().unwrap();
    // Checking out again before the order is paid orders nothing more.
    problem(
        shop.checkout(&ada, "tab-3").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await;
    assert_eq!(
        shop.pay(&ada, id, "pm_card_visa").await.status(),
        StatusCode::OK
    );
    shop.wait_order(&ada, id, "completed").await;
    // A new line afterwards is a new order of one item.
    add(&shop, &ada, &mug, 1).await;
    let next: Value = shop.checkout(&ada, "tab-4").await.json().await.unwrap();
    assert_eq!(next["lines"][0]["quantity"], 1);
    assert_eq!(next["lines"].as_array().unwrap().len(), 1);
}

/// A browser walk found a line the cart marked "Only 1 available" checking out, and the order
/// cancelled a moment later: the cart refuses it up front, and nothing is ordered.
#[tokio::test]
async fn a_line_the_cart_shows_unorderable_is_refused_before_any_order() {
    let shop = shop().await;
    let lamp = shop.product("Lamp", 7900, 1).await;
    let ada = shop.customer();
    add(&shop, &ada, &lamp, 2).await;
    let body = problem(
        shop.checkout(&ada, "k").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "items[0].quantity", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("only 1 of Lamp available"),
        "{body}"
    );
    let cart = shop.view(&ada).await;
    assert_eq!(
        (cart["count"].clone(), cart["held"].clone()),
        (json!(2), json!([]))
    );
    assert_eq!(shop.stock(&lamp).await, (1, 0, 0));
    let orders: Value = shop
        .call(
            reqwest::Method::GET,
            format!("http://{}/api/orders", shop.orders),
            Some(&ada.token),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(orders["total"], 0, "{orders}");
}

/// Two customers check out the last lamp at once: the cart's copy of the stock lets both through
/// (or, if it already heard of the first, refuses the second up front); the saga sells it once,
/// and the other's line comes back into its cart either way.
#[tokio::test]
async fn out_of_stock_cancels_the_order_and_puts_the_lines_back() {
    let shop = shop().await;
    let lamp = shop.product("Lamp", 7900, 1).await;
    let (ada, bob) = (shop.customer(), shop.customer());
    add(&shop, &ada, &lamp, 1).await;
    add(&shop, &bob, &lamp, 1).await;
    let (first, second) = tokio::join!(shop.checkout(&ada, "k"), shop.checkout(&bob, "k"));
    let mut placed = Vec::new();
    for (who, response) in [(&ada, first), (&bob, second)] {
        if response.status() == StatusCode::UNPROCESSABLE_ENTITY {
            continue;
        }
        assert_eq!(response.status(), StatusCode::CREATED);
        let order: Value = response.json().await.unwrap();
        placed.push((who, order["id"].as_str().unwrap().to_owned()));
    }
    assert!(!placed.is_empty(), "the first checkout is placed");
    let mut sold = 0;
    for (who, id) in &placed {
        let order = shop
            .wait_order_until(who, id, |o| o["state"] != "pending")
            .await;
        if order["state"] == "cancelled" {
            assert_eq!(order["reason"], "not enough stock for 1 item");
            problem(
                shop.pay(who, id, "pm_card_visa").await,
                StatusCode::CONFLICT,
                "order-not-payable",
            )
            .await;
        } else {
            assert_eq!(order["state"], "awaiting_payment");
            sold += 1;
        }
    }
    assert_eq!(sold, 1, "the last lamp is sold once");
    assert_eq!(shop.stock(&lamp).await, (0, 1, 0));
    // Whoever did not get it has the line back in the cart, whichever way it was refused.
    eventually("the other customer's line is back in the cart", || async {
        let (a, b) = (shop.view(&ada).await, shop.view(&bob).await);
        let back = |cart: &Value| cart["count"] == 1 && cart["held"] == json!([]);
        back(&a) != back(&b)
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_order_puts_its_lines_back_beside_what_was_added_since() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 10).await;
    let ada = shop.customer();
    add(&shop, &ada, &mug, 2).await;
    let order: Value = shop.checkout(&ada, "k").await.json().await.unwrap();
    let id = order["id"].as_str().unwrap();
    add(&shop, &ada, &mug, 1).await;
    shop.wait_order(&ada, id, "awaiting_payment").await;
    assert_eq!(shop.cancel(&ada, id).await.status(), StatusCode::OK);
    eventually("the cancelled order's lines are back", || async {
        let cart = shop.view(&ada).await;
        cart["count"] == 3 && cart["held"] == json!([])
    })
    .await;
}

#[tokio::test]
async fn a_declined_card_keeps_the_order_payable_and_the_stock_held() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 5).await;
    let ada = shop.customer();
    add(&shop, &ada, &mug, 1).await;
    let order: Value = shop.checkout(&ada, "k").await.json().await.unwrap();
    let id = order["id"].as_str().unwrap();
    problem(
        shop.pay(&ada, id, "pm_card_chargeCustomerFail").await,
        StatusCode::PAYMENT_REQUIRED,
        "card-declined",
    )
    .await;
    assert_eq!(shop.order(&ada, id).await["state"], "awaiting_payment");
    assert_eq!(shop.stock(&mug).await, (4, 1, 0));
    assert_eq!(
        shop.pay(&ada, id, "pm_card_visa").await.status(),
        StatusCode::OK
    );
    shop.wait_order(&ada, id, "completed").await;
}

/// What one round of the race came to.
struct Raced {
    order: String,
    pay: u16,
    cancel: u16,
}

/// One customer checks out, and once the order is payable pays and cancels it at the same moment
/// (the cancel a few milliseconds after or before, varying from round to round).
async fn pay_and_cancel_at_once(shop: &Shop, product: &str, round: usize) -> Raced {
    let who = shop.customer();
    add(shop, &who, product, 1).await;
    let order: Value = shop
        .checkout(&who, &format!("race-{round}"))
        .await
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().unwrap().to_owned();
    shop.wait_order(&who, &id, "awaiting_payment").await;
    let skew = std::time::Duration::from_millis((round % 4) as u64 * 3);
    let pay = async {
        if round % 2 == 1 {
            tokio::time::sleep(skew).await;
        }
        shop.pay(&who, &id, "pm_card_visa").await.status().as_u16()
    };
    let cancel = async {
        if round.is_multiple_of(2) {
            tokio::time::sleep(skew).await;
        }
        shop.cancel(&who, &id).await.status().as_u16()
    };
    let (pay, cancel) = tokio::join!(pay, cancel);
    // Wait until the order's fate is settled: completed, or cancelled with any refund done.
    shop.wait_order_until(&who, &id, |o| {
        o["state"] == "completed"
            || (o["state"] == "cancelled"
                && (o.get("refund").is_none() || o["refund"]["status"] == "refunded"))
    })
    .await;
    Raced {
        order: id,
        pay,
        cancel,
    }
}

/// Every PaymentIntent of these orders, by order id, from Stripe's side.
async fn intents_by_order(shop: &Shop, orders: &[String]) -> HashMap<String, Vec<Value>> {
    let mut found: HashMap<String, Vec<Value>> = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = "payment_intents?limit=100".to_owned();
        if let Some(after) = &after {
            path.push_str(&format!("&starting_after={after}"));
        }
        let page = shop.stripe(&path).await;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        for intent in &data {
            if let Some(order) = intent["metadata"]["order_id"].as_str()
                && orders.iter().any(|o| o == order)
            {
                found
                    .entry(order.to_owned())
                    .or_default()
                    .push(intent.clone());
            }
        }
        after = data
            .last()
            .and_then(|i| i["id"].as_str())
            .map(str::to_owned);
        if page["has_more"] != true || after.is_none() {
            return found;
        }
    }
}

/// Issue 14: paying and cancelling one order at the same moment, 100 times. Whoever wins, no
/// money is kept for a cancelled order: every order that was charged is completed, or cancelled
/// and refunded exactly once in Stripe.
#[tokio::test]
async fn paying_and_cancelling_at_once_never_keeps_money_for_a_cancelled_order() {
    const ROUNDS: usize = 100;
    const AT_ONCE: usize = 10;
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, ROUNDS as i64).await;
    let mut results = Vec::new();
    for batch in 0..ROUNDS / AT_ONCE {
        let rounds = (0..AT_ONCE).map(|i| pay_and_cancel_at_once(&shop, &mug, batch * AT_ONCE + i));
        results.extend(futures::future::join_all(rounds).await);
    }
    let orders: Vec<String> = results.iter().map(|r| r.order.clone()).collect();
    let intents = intents_by_order(&shop, &orders).await;

    let (mut completed, mut cancelled, mut refunded) = (0, 0, 0);
    for raced in &results {
        let charged: Vec<&Value> = intents
            .get(&raced.order)
            .map(|all| all.iter().filter(|i| i["status"] == "succeeded").collect())
            .unwrap_or_default();
        assert!(charged.len() <= 1, "order {} charged twice", raced.order);
        let mut refunds = 0;
        for intent in &charged {
            refunds += shop
                .stripe_refunds(intent["id"].as_str().unwrap())
                .await
                .len();
        }
        let payment = shop
            .payments_store
            .payment(raced.order.parse().unwrap())
            .await
            .unwrap();
        let state = shop
            .orders_store
            .get(raced.order.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        let outcome = (raced.pay, raced.cancel);
        match state.state.as_str() {
            "completed" => {
                completed += 1;
                assert_eq!(charged.len(), 1, "{}: completed unpaid", raced.order);
                assert_eq!(refunds, 0, "{}: completed and refunded", raced.order);
                assert_eq!(outcome, (200, 409), "{}: the payment won", raced.order);
            }
            "cancelled" => {
                cancelled += 1;
                if charged.is_empty() {
                    assert!(state.refund.is_none());
                    assert_eq!(outcome.1, 200, "{}: the cancel won", raced.order);
                } else {
                    // The cancel came first, yet money arrived: refunded once, and it shows.
                    refunded += 1;
                    assert_eq!(refunds, 1, "{}: refunded {refunds} times", raced.order);
                    let refund = state.refund.as_ref().expect("the refund is on the order");
                    assert_eq!(refund.status, RefundStatus::Refunded);
                    assert_eq!(
                        payment.as_ref().map(|p| p.status),
                        Some(PaymentStatus::Refunded)
                    );
                }
            }
            other => panic!("{}: the race left the order {other}", raced.order),
        }
    }
    println!(
        "pay/cancel race: {ROUNDS} rounds, {completed} paid first, {cancelled} cancelled first \
         ({refunded} of them charged and refunded once), 0 cancelled and charged without a refund"
    );
    assert_eq!(completed + cancelled, ROUNDS);
    assert!(
        completed > 0 && cancelled > 0,
        "the race should go both ways in {ROUNDS} rounds"
    );
    // Stock follows orders' verdict: one sale per completed order, nothing else held.
    eventually("the stock settles", || async {
        shop.stock(&mug).await == (ROUNDS as i64 - completed as i64, 0, completed as i64)
    })
    .await;
}

/// A PaymentMethod for `card`, made as Stripe.js makes it in the browser.
async fn payment_method(shop: &Shop, card: &str) -> String {
    let method: Value = shop
        .http
        .post(format!("{}/v1/payment_methods", shop.stack.stripe_url))
        .basic_auth(&shop.stack.stripe_secret_key, Some(""))
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

/// The one way money can still arrive for a cancelled order: the customer leaves a 3-D Secure
/// check open past the payment hold, cancels, then finishes the check. orders keeps the order
/// cancelled and the money goes back, once.
#[tokio::test]
async fn money_that_arrives_after_the_cancel_is_refunded_once_and_shows() {
    let shop = shop_with(|config| config.payment_hold = std::time::Duration::from_secs(1)).await;
    let mug = shop.product("Mug", 2100, 5).await;
    let ada = shop.customer();
    add(&shop, &ada, &mug, 1).await;
    let order: Value = shop.checkout(&ada, "k").await.json().await.unwrap();
    let id = order["id"].as_str().unwrap().to_owned();
    let method = payment_method(&shop, "4000002760003184").await;
    let response = shop.pay(&ada, &id, &method).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let pending: Value = response.json().await.unwrap();
    let secret = pending["client_secret"].as_str().unwrap().to_owned();

    // While the hold lasts the customer cannot cancel; once it ends, they can.
    problem(
        shop.cancel(&ada, &id).await,
        StatusCode::CONFLICT,
        "payment-in-progress",
    )
    .await;
    eventually("the hold ends and the cancel goes through", || async {
        shop.cancel(&ada, &id).await.status() == StatusCode::OK
    })
    .await;
    eventually("the stock is released", || async {
        shop.stock(&mug).await == (5, 0, 0)
    })
    .await;

    // Now the customer finishes 3-D Secure and Stripe reports the payment by webhook.
    let record = shop
        .payments_store
        .payment(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let intent_id = record.payment_intent_id.unwrap();
    let response = shop
        .http
        .post(format!(
            "{}/v1/payment_intents/{intent_id}/_authenticate",
            shop.stack.stripe_url
        ))
        .basic_auth(&shop.stack.stripe_secret_key, Some(""))
        .form(&[("client_secret", secret.as_str()), ("success", "true")])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let intent = shop.stripe(&format!("payment_intents/{intent_id}")).await;
    assert_eq!(intent["status"], "succeeded");
    let payload = json!({
        "id": format!("evt_{}", uuid::Uuid::new_v4().simple()),
        "object": "event",
        "api_version": "2020-08-27",
        "created": chrono::Utc::now().timestamp(),
        "data": { "object": intent },
        "livemode": false,
        "pending_webhooks": 1,
        "type": "payment_intent.succeeded",
    })
    .to_string();
    let signature = Webhook::generate_test_header(&payload, WEBHOOK_SECRET, None);
    let response = shop
        .http
        .post(format!("http://{}/api/payments/webhook", shop.payments))
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let order = shop
        .wait_order_until(&ada, &id, |o| o["refund"]["status"] == "refunded")
        .await;
    assert_eq!(order["state"], "cancelled");
    assert_eq!(order["refund"]["amount"], order["total"]);
    assert_eq!(order["payment"]["amount"], order["total"]);
    let payment: Value = shop
        .call(
            reqwest::Method::GET,
            format!("http://{}/api/payments/{id}", shop.payments),
            Some(&ada.token),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(payment["status"], "refunded");
    assert_eq!(payment["refund"]["status"], "refunded");
    assert_eq!(shop.stripe_refunds(&intent_id).await.len(), 1);
    // The stock stays released: orders' verdict, not the payment, moves it.
    assert_eq!(shop.stock(&mug).await, (5, 0, 0));
    // The cancelled order's line is back in the cart.
    eventually("the line is back in the cart", || async {
        shop.view(&ada).await["count"] == 1
    })
    .await;
}
