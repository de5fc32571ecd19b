//! The buyers: a customer's way through the shop (cart, checkout, the socket, paying), the
//! closed and the open loop.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

use super::{ORDER_DEADLINE, SOCKET_PATIENCE};

pub(super) async fn json_of(response: reqwest::Response) -> Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{status}: {body}");
    }
    Ok(body)
}

/// What the socket said about one order.
#[derive(Debug)]
pub(super) struct Pushed {
    pub(super) order_id: String,
    pub(super) status: String,
}

/// One customer: a token and the live feed of their notifications.
pub(super) struct Buyer {
    pub(super) token: String,
    pub(super) pushed: mpsc::UnboundedReceiver<Pushed>,
}

/// Keeps one customer's notifications socket open (reconnecting with its cursor) and forwards
/// each order notification.
pub(super) async fn follow(url: String, token: String, pushed: mpsc::UnboundedSender<Pushed>) {
    let mut after = None::<i64>;
    while !pushed.is_closed() {
        let address = match after {
            Some(id) => format!("{url}?after={id}"),
            None => url.clone(),
        };
        let Ok(mut request) = address.into_client_request() else {
            return;
        };
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            request.headers_mut().insert("authorization", value);
        }
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(request).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while let Some(Ok(message)) = socket.next().await {
            let text = match message {
                Message::Text(text) => text,
                Message::Ping(data) => {
                    let _ = socket.send(Message::Pong(data)).await;
                    continue;
                }
                _ => continue,
            };
            let value: Value = serde_json::from_str(&text).unwrap_or_default();
            match value["type"].as_str() {
                Some("hello") if after.is_none() => after = value["latest_id"].as_i64(),
                Some("notification") => {
                    let n = &value["notification"];
                    after = n["id"].as_i64().or(after);
                    if let (Some(order_id), Some(status)) =
                        (n["order_id"].as_str(), n["order_status"].as_str())
                    {
                        let _ = pushed.send(Pushed {
                            order_id: order_id.to_owned(),
                            status: status.to_owned(),
                        });
                    }
                }
                _ => {}
            }
        }
    }
}

/// What one order cost the customer.
pub(super) struct Sample {
    pub(super) order: String,
    /// When the checkout was sent.
    pub(super) at: Instant,
    pub(super) latency: Duration,
    /// From checkout until the buyer knew the order payable, and until its payment was accepted.
    pub(super) payable: Duration,
    pub(super) paid: Duration,
    /// Payment attempts answered "not yet" (404/409) before the one that went through.
    pub(super) pay_retries: u32,
    /// Times the socket was silent and the buyer asked for the order instead.
    pub(super) fallbacks: u32,
    /// Pushes late by `SOCKET_PATIENCE` or more: the API had the state the socket was silent about.
    pub(super) lost: Vec<String>,
}

pub(super) struct Shop {
    pub(super) client: reqwest::Client,
    pub(super) base: String,
}

impl Shop {
    /// Waits until order `id` reaches `state` (or is cancelled: an error), from the socket, asking
    /// the orders API when the socket is silent for a while.
    pub(super) async fn wait_for(
        &self,
        buyer: &mut Buyer,
        id: &str,
        state: &str,
        started: Instant,
        fallbacks: &mut u32,
        lost: &mut Vec<String>,
    ) -> Result<()> {
        let deadline = started + ORDER_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("order {id} was not {state} within {ORDER_DEADLINE:?} (timeout)");
            }
            match tokio::time::timeout(left.min(SOCKET_PATIENCE), buyer.pushed.recv()).await {
                Ok(Some(p)) if p.order_id == id => {
                    if p.status == state {
                        return Ok(());
                    }
                    if p.status == "cancelled" {
                        bail!("order {id} was cancelled");
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => bail!("the notifications socket task ended"),
                Err(_) => {
                    *fallbacks += 1;
                    let order = json_of(
                        self.client
                            .get(format!("{}/api/orders/{id}", self.base))
                            .bearer_auth(&buyer.token)
                            .send()
                            .await?,
                    )
                    .await?;
                    let reached = match order["state"].as_str() {
                        Some(s) if s == state => true,
                        Some("completed") => state == "awaiting_payment",
                        Some("cancelled") => bail!("order {id} was cancelled: {}", order["reason"]),
                        _ => false,
                    };
                    if reached {
                        lost.push(format!(
                            "order {id}: no push of {state} within {SOCKET_PATIENCE:?}; the API answered it {:.1} s after checkout (updated {})",
                            started.elapsed().as_secs_f64(),
                            order["updated_at"]
                        ));
                        return Ok(());
                    }
                }
            }
        }
    }

    /// One order: add to cart, check out, wait until payable, pay, wait until completed.
    pub(super) async fn buy(
        &self,
        buyer: &mut Buyer,
        product: &str,
        quantity: i64,
    ) -> Result<Sample> {
        let base = &self.base;
        let add = json!({ "product_id": product, "quantity": quantity });
        json_of(
            self.client
                .post(format!("{base}/api/cart/items"))
                .bearer_auth(&buyer.token)
                .json(&add)
                .send()
                .await?,
        )
        .await?;
        let started = Instant::now();
        let deadline = started + ORDER_DEADLINE;
        let order = json_of(
            self.client
                .post(format!("{base}/api/cart/checkout"))
                .bearer_auth(&buyer.token)
                .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                .send()
                .await?,
        )
        .await?;
        let id = order["id"].as_str().context("an order id")?.to_owned();
        let (mut fallbacks, mut lost) = (0, Vec::new());
        self.wait_for(
            buyer,
            &id,
            "awaiting_payment",
            started,
            &mut fallbacks,
            &mut lost,
        )
        .await?;
        let payable = started.elapsed();
        let mut pay_retries = 0;
        loop {
            if Instant::now() > deadline {
                bail!("order {id} could not be paid within {ORDER_DEADLINE:?} (timeout)");
            }
            let response = self
                .client
                .post(format!("{base}/api/payments"))
                .bearer_auth(&buyer.token)
                .json(&json!({ "order_id": id, "payment_method": "pm_card_visa" }))
                .send()
                .await?;
            match response.status().as_u16() {
                200 => break,
                // Payments learns the order is payable from Kafka, beside notifications: it
                // may be a moment behind the socket. A browser retries the same way.
                404 | 409 => {
                    pay_retries += 1;
                    let pause = 5u64 << pay_retries.min(4);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                other => bail!("pay: {other} {}", response.text().await.unwrap_or_default()),
            }
        }
        let paid = started.elapsed();
        self.wait_for(buyer, &id, "completed", started, &mut fallbacks, &mut lost)
            .await?;
        Ok(Sample {
            at: started,
            latency: started.elapsed(),
            payable,
            paid,
            pay_retries,
            fallbacks,
            lost,
            order: id,
        })
    }
}

/// What the buyers saw.
#[derive(Default)]
pub(super) struct Outcome {
    pub(super) samples: Vec<Sample>,
    pub(super) failures: Vec<String>,
    /// Open loop: arrivals that found no idle customer.
    pub(super) missed: usize,
}

impl Outcome {
    pub(super) fn add(&mut self, result: Result<Sample>) {
        match result {
            Ok(sample) => self.samples.push(sample),
            Err(e) => self.failures.push(format!("{e:#}")),
        }
    }

    pub(super) fn merge(&mut self, other: Outcome) {
        self.samples.extend(other.samples);
        self.failures.extend(other.failures);
        self.missed += other.missed;
    }
}

/// Order `n`: which product and how many (1 or 2, so items and orders differ).
pub(super) fn pick(products: &[String], n: usize) -> (&str, i64) {
    (&products[n % products.len()], 1 + (n % 2) as i64)
}

pub(super) async fn closed_loop(
    shop: Arc<Shop>,
    buyers: Vec<Buyer>,
    products: Arc<Vec<String>>,
    run_for: Duration,
) -> Result<Outcome> {
    let started = Instant::now();
    let workers: Vec<_> = buyers
        .into_iter()
        .enumerate()
        .map(|(i, mut buyer)| {
            let (shop, products) = (shop.clone(), products.clone());
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                let mut n = i;
                while started.elapsed() < run_for {
                    let (product, quantity) = pick(&products, n);
                    outcome.add(shop.buy(&mut buyer, product, quantity).await);
                    n += 1;
                }
                outcome
            })
        })
        .collect();
    let mut outcome = Outcome::default();
    for worker in workers {
        outcome.merge(worker.await?);
    }
    Ok(outcome)
}

pub(super) async fn open_loop(
    shop: Arc<Shop>,
    buyers: Vec<Buyer>,
    products: Arc<Vec<String>>,
    run_for: Duration,
    rate: f64,
) -> Result<Outcome> {
    let (idle_tx, mut idle_rx) = mpsc::unbounded_channel();
    for buyer in buyers {
        let _ = idle_tx.send(buyer);
    }
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let (mut outcome, mut n, mut in_flight) = (Outcome::default(), 0, 0usize);
    while started.elapsed() < run_for {
        ticks.tick().await;
        while let Ok(result) = done_rx.try_recv() {
            outcome.add(result);
            in_flight -= 1;
        }
        let Ok(mut buyer) = idle_rx.try_recv() else {
            outcome.missed += 1;
            continue;
        };
        let (shop, products, idle, done) = (
            shop.clone(),
            products.clone(),
            idle_tx.clone(),
            done_tx.clone(),
        );
        in_flight += 1;
        tokio::spawn(async move {
            let (product, quantity) = pick(&products, n);
            let result = shop.buy(&mut buyer, product, quantity).await;
            let _ = idle.send(buyer);
            let _ = done.send(result);
        });
        n += 1;
    }
    while in_flight > 0 {
        let result = done_rx.recv().await.context("an order's outcome")?;
        outcome.add(result);
        in_flight -= 1;
    }
    Ok(outcome)
}
