//! `cargo xtask bench checkout`: the whole checkout saga through the gateway, as customers do it —
//! add to cart, check out, wait (on the notifications socket) until the order is payable, pay, wait
//! until it is completed.
//!
//! Two kinds of load: a closed loop (`--buyers N`: N customers, each starting the next order when
//! the last one completed — a throughput test) and an open loop (`--rate R`: R orders a second
//! arrive whatever happens, each taken by an idle customer of a pool — a latency test at a given
//! rate). Afterwards it reads every service's `/metrics` (MongoDB commands by name, Kafka deliveries
//! by outcome, counted by the kit inside the services), the CPU time of every process of the stack,
//! checks the invariants, and measures the whole fleet's CPU while idle.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

use super::BENCH_ADMIN;
use crate::{
    services::{self, Ports, SERVICES},
    stack::Stack,
    step,
};

pub const USAGE: &str = "--buyers N | --rate R [--buyers POOL]] [--seconds S] [--idle S";

const PRODUCTS: usize = 10;
const STOCK: i64 = 100_000;
/// How long one order may take before the bench calls it a timeout.
const ORDER_DEADLINE: Duration = Duration::from_secs(30);
/// With no word from the socket for this long, the buyer asks for the order (a late or lost
/// push). At 200 buyers this is polling (10 GETs an order), yet 10 s did worse (4.6 orders/s
/// against 6.0, 118 timeouts against 35): notifications' one-lane consumer falls behind there,
/// and 22 pushes came 10 s or more after the API had the state.
const SOCKET_PATIENCE: Duration = Duration::from_secs(2);

/// What load to put on the shop.
#[derive(Debug, Clone)]
pub struct Load {
    kind: Kind,
    /// How long orders are started.
    seconds: u64,
    /// How long the idle fleet is measured afterwards (0: not at all).
    idle: u64,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Closed { buyers: usize },
    Open { rate: f64, pool: usize },
}

impl Load {
    pub fn parse(args: &[String]) -> Result<Load> {
        let (mut buyers, mut rate, mut seconds, mut idle) = (None, None, 30, 60);
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value; usage: checkout [{USAGE}]"))?;
            match flag.as_str() {
                "--buyers" => buyers = Some(value.parse::<usize>().context("--buyers N")?),
                "--rate" => rate = Some(value.parse::<f64>().context("--rate R")?),
                "--seconds" => seconds = value.parse().context("--seconds S")?,
                "--idle" => idle = value.parse().context("--idle S")?,
                _ => bail!("unknown flag {flag}; usage: checkout [{USAGE}]"),
            }
        }
        let kind = match rate {
            Some(rate) if rate > 0.0 => Kind::Open {
                rate,
                // Enough idle customers for orders that take up to 5 s each.
                pool: buyers.unwrap_or((rate * 5.0).ceil() as usize + 10),
            },
            Some(_) => bail!("--rate must be above 0"),
            None => Kind::Closed {
                buyers: buyers.unwrap_or(50).max(1),
            },
        };
        Ok(Load {
            kind,
            seconds,
            idle,
        })
    }

    fn customers(&self) -> usize {
        match self.kind {
            Kind::Closed { buyers } => buyers,
            Kind::Open { pool, .. } => pool,
        }
    }

    fn describe(&self) -> String {
        match self.kind {
            Kind::Closed { buyers } => format!("closed loop, {buyers} buyers"),
            Kind::Open { rate, pool } => {
                format!("open loop, {rate} orders/s from a pool of {pool} customers")
            }
        }
    }
}

async fn json_of(response: reqwest::Response) -> Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{status}: {body}");
    }
    Ok(body)
}

/// What the socket said about one order.
#[derive(Debug)]
struct Pushed {
    order_id: String,
    status: String,
}

/// One customer: a token and the live feed of their notifications.
struct Buyer {
    token: String,
    pushed: mpsc::UnboundedReceiver<Pushed>,
}

/// Keeps one customer's notifications socket open (reconnecting with its cursor) and forwards
/// each order notification.
async fn follow(url: String, token: String, pushed: mpsc::UnboundedSender<Pushed>) {
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
struct Sample {
    order: String,
    latency: Duration,
    /// From checkout until the buyer knew the order payable, and until its payment was accepted.
    payable: Duration,
    paid: Duration,
    /// Payment attempts answered "not yet" (404/409) before the one that went through.
    pay_retries: u32,
    /// Times the socket was silent and the buyer asked for the order instead.
    fallbacks: u32,
    /// Pushes late by `SOCKET_PATIENCE` or more: the API had the state the socket was silent about.
    lost: Vec<String>,
}

struct Shop {
    client: reqwest::Client,
    base: String,
}

impl Shop {
    /// Waits until order `id` reaches `state` (or is cancelled: an error), from the socket, asking
    /// the orders API when the socket is silent for a while.
    async fn wait_for(
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
    async fn buy(&self, buyer: &mut Buyer, product: &str, quantity: i64) -> Result<Sample> {
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
struct Outcome {
    samples: Vec<Sample>,
    failures: Vec<String>,
    /// Open loop: arrivals that found no idle customer.
    missed: usize,
}

impl Outcome {
    fn add(&mut self, result: Result<Sample>) {
        match result {
            Ok(sample) => self.samples.push(sample),
            Err(e) => self.failures.push(format!("{e:#}")),
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.samples.extend(other.samples);
        self.failures.extend(other.failures);
        self.missed += other.missed;
    }
}

/// Order `n`: which product and how many (1 or 2, so items and orders differ).
fn pick(products: &[String], n: usize) -> (&str, i64) {
    (&products[n % products.len()], 1 + (n % 2) as i64)
}

async fn closed_loop(
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

async fn open_loop(
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

/// Counters summed over every service's `/metrics`, by metric and label set.
#[derive(Default, Clone)]
struct Counters(BTreeMap<String, f64>);

impl Counters {
    async fn read(client: &reqwest::Client, ports: &Ports) -> Result<Counters> {
        let mut all = BTreeMap::new();
        for service in services::built() {
            let text = client
                .get(format!("{}/metrics", ports.url(service)))
                .send()
                .await?
                .text()
                .await?;
            for line in text.lines().filter(|l| l.starts_with("storefront_")) {
                let Some((series, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                // Drop the service label: a series is summed over services, and kept per service
                // under its own name.
                let value: f64 = value.parse().unwrap_or(0.0);
                *all.entry(strip_service(series)).or_insert(0.0) += value;
                *all.entry(format!("{}|{series}", service.name))
                    .or_insert(0.0) += value;
            }
        }
        Ok(Counters(all))
    }

    fn since(&self, before: &Counters) -> Counters {
        Counters(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v - before.0.get(k).copied().unwrap_or(0.0)))
                .collect(),
        )
    }

    /// The sum over series of `metric` whose labels contain every one of `labels`.
    fn sum(&self, metric: &str, labels: &[&str]) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| !k.contains('|'))
            .filter(|(k, _)| k.split('{').next() == Some(metric))
            .filter(|(k, _)| labels.iter().all(|l| k.contains(l)))
            .map(|(_, v)| v)
            .sum()
    }

    /// `metric` summed per value of `label`.
    fn by(&self, metric: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (k, v) in self.0.iter().filter(|(k, _)| !k.contains('|')) {
            if k.split('{').next() != Some(metric) {
                continue;
            }
            if let Some(value) = label_value(k, label) {
                *out.entry(value).or_insert(0.0) += v;
            }
        }
        out
    }
}

fn strip_service(series: &str) -> String {
    let Some((name, labels)) = series.split_once('{') else {
        return series.to_owned();
    };
    let kept: Vec<&str> = labels
        .trim_end_matches('}')
        .split(',')
        .filter(|l| !l.starts_with("service="))
        .collect();
    format!("{name}{{{}}}", kept.join(","))
}

fn label_value(series: &str, label: &str) -> Option<String> {
    let labels = series.split_once('{')?.1.trim_end_matches('}');
    labels.split(',').find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k == label).then(|| v.trim_matches('"').to_owned())
    })
}

/// CPU time (clock ticks) of every process of one process group: each stack process is started in
/// its own (nginx's workers and Python's children count with it).
fn group_ticks(pgid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| {
            // After the command name: state ppid pgrp … utime(14) stime(15).
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let pgrp: u32 = fields.get(2)?.parse().ok()?;
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            (pgrp == pgid).then_some(utime + stime)
        })
        .sum()
}

fn own_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| -> u64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
    field(11) + field(12)
}

/// CPU ticks of each process of the stack, and of the bench itself.
fn cpu(stack: &Stack) -> Vec<(String, u64)> {
    let mut ticks: Vec<(String, u64)> = stack
        .procs
        .iter()
        .map(|p| (p.name.clone(), group_ticks(p.pid)))
        .collect();
    ticks.push(("(bench)".into(), own_ticks()));
    ticks
}

/// Percent of one core each process used between two readings, busiest first.
fn cpu_share(
    before: &[(String, u64)],
    after: &[(String, u64)],
    over: Duration,
) -> Vec<(String, f64)> {
    // Linux reports in USER_HZ, 100 on every platform this runs on.
    let hz = 100.0;
    let mut shares: Vec<(String, f64)> = after
        .iter()
        .map(|(name, t)| {
            let was = before
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| *t)
                .unwrap_or(0);
            (
                name.clone(),
                (t.saturating_sub(was)) as f64 / hz / over.as_secs_f64() * 100.0,
            )
        })
        .collect();
    shares.sort_by(|a, b| b.1.total_cmp(&a.1));
    shares
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Succeeded charges on the Stripe stand-in, and how many of them were refunded.
async fn stripe_charges(client: &reqwest::Client, stripe_url: &str) -> Result<(u64, u64)> {
    let (mut succeeded, mut refunded, mut after) = (0, 0, None::<String>);
    loop {
        let mut url = format!("{stripe_url}/v1/charges?limit=100");
        if let Some(after) = &after {
            url.push_str(&format!("&starting_after={after}"));
        }
        let page = json_of(
            client
                .get(url)
                .basic_auth(crate::stack::STRIPE_SECRET_KEY, Some(""))
                .send()
                .await?,
        )
        .await?;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        for charge in data.iter().filter(|c| c["status"] == "succeeded") {
            succeeded += 1;
            if charge["refunded"] == true {
                refunded += 1;
            }
        }
        after = data
            .last()
            .and_then(|c| c["id"].as_str())
            .map(str::to_owned);
        if page["has_more"] != true || after.is_none() {
            return Ok((succeeded, refunded));
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
        .as_secs_f64()
        * 1e3
}

/// `bench checkout`: the load, then the figures, the invariants and the idle fleet.
pub async fn run(ports: &Ports, stack: &Stack, load: Load) -> Result<()> {
    let base = ports.gateway_url();
    let customers = load.customers();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(customers + 16)
        .build()?;
    let signin = json!({ "email": BENCH_ADMIN.0, "password": BENCH_ADMIN.1 });
    let admin = json_of(
        client
            .post(format!("{base}/api/users/signin"))
            .json(&signin)
            .send()
            .await?,
    )
    .await?;
    let admin = admin["access_token"]
        .as_str()
        .context("an admin token")?
        .to_owned();

    step(format!("{PRODUCTS} products with {STOCK} each"));
    let mut products = Vec::new();
    for i in 0..PRODUCTS {
        let body = json!({ "title": format!("Bench product {i}"), "category": "bench", "price": { "amount": 1000 + i as i64, "currency": "USD" }, "stock": STOCK });
        let product = json_of(
            client
                .post(format!("{base}/api/products"))
                .bearer_auth(&admin)
                .json(&body)
                .send()
                .await?,
        )
        .await?;
        products.push(product["id"].as_str().context("a product id")?.to_owned());
    }

    step(format!(
        "{customers} customers sign up and open their notifications socket"
    ));
    let signups = futures::stream::iter(0..customers)
        .map(|i| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let body = json!({ "email": format!("buyer{i}@example.com"), "password": "bench-password-1", "name": format!("Buyer {i}") });
                let session =
                    json_of(client.post(format!("{base}/api/users/signup")).json(&body).send().await?)
                        .await?;
                Ok::<_, anyhow::Error>(session["access_token"].as_str().context("a token")?.to_owned())
            }
        })
        .buffered(4)
        .collect::<Vec<_>>()
        .await;
    let socket_url = format!("ws://127.0.0.1:{}/ws/notifications", ports.gateway);
    let mut buyers = Vec::new();
    let mut followers = Vec::new();
    for token in signups {
        let token = token?;
        let (tx, rx) = mpsc::unbounded_channel();
        followers.push(tokio::spawn(follow(socket_url.clone(), token.clone(), tx)));
        buyers.push(Buyer { token, pushed: rx });
    }
    // The replicas in cart and orders follow the catalog through Kafka; every product must be
    // in orders' replica before an order can be priced.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let shop = Arc::new(Shop {
        client: client.clone(),
        base: base.clone(),
    });
    let products = Arc::new(products);
    let run_for = Duration::from_secs(load.seconds);
    step(format!("{} for {run_for:?}", load.describe()));
    let counters_before = Counters::read(&client, ports).await?;
    let cpu_before = cpu(stack);
    let load_before = load_average();
    let started = Instant::now();
    let outcome = match load.kind {
        Kind::Closed { .. } => closed_loop(shop, buyers, products.clone(), run_for).await?,
        Kind::Open { rate, .. } => open_loop(shop, buyers, products.clone(), run_for, rate).await?,
    };
    let elapsed = started.elapsed();
    let cpu_after = cpu(stack);
    let load_after = load_average();
    // The saga's tail (stock sold, carts emptied, replicas) lands after the last completion.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let counters = Counters::read(&client, ports)
        .await?
        .since(&counters_before);
    for follower in &followers {
        follower.abort();
    }

    // Invariants. Past the load the saga's tail still lands (under overload, orders completed
    // after their buyer gave up): read until the figures agree, for at most 60 s.
    let settle_until = Instant::now() + Duration::from_secs(60);
    let ledger = loop {
        let ledger = Ledger::read(&client, &base, &admin, &products, stack).await?;
        if ledger.settled() || Instant::now() > settle_until {
            break ledger;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let charges_ok = ledger.settled();
    let Ledger {
        stock_ok,
        sold,
        reserved,
        completed,
        items,
        charges,
        refunded,
    } = ledger;

    let samples = &outcome.samples;
    let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    latencies.sort();
    let n = samples.len().max(1) as f64;
    let timeouts = outcome
        .failures
        .iter()
        .filter(|f| f.contains("timeout"))
        .count();
    let per_order = |x: f64| x / n;
    let commands = counters.by("storefront_mongodb_commands_total", "command");
    let total_commands: f64 = commands.values().sum();
    let transactions = counters.sum(
        "storefront_mongodb_commands_total",
        &["command=\"commitTransaction\""],
    );
    let conflicts = counters.sum(
        "storefront_mongodb_command_failures_total",
        &["code=\"112\""],
    );
    let failures = counters.sum("storefront_mongodb_command_failures_total", &[]);
    let deliveries = counters.by("storefront_kafka_deliveries_total", "outcome");
    let retries = counters.by("storefront_kafka_handler_retries_total", "reason");

    println!(
        "\ncheckout saga through the gateway (release build; {}; load generator on the same 2 cores)",
        load.describe()
    );
    println!("  load average {load_before} before, {load_after} after");
    println!(
        "  completed    {:>7.1} orders/s   checkout→completed p50 {:>7.1} ms   p99 {:>7.1} ms   ({} completed, {} failed, {} timeouts, {} arrivals missed, {:?})",
        samples.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        samples.len(),
        outcome.failures.len(),
        timeouts,
        outcome.missed,
        elapsed
    );
    if let Some(first) = outcome.failures.first() {
        println!("  first failure: {first}");
    }
    println!(
        "  client       {:.2} pay retries/order (payments a step behind the socket), {:.2} socket fallbacks/order",
        per_order(samples.iter().map(|s| s.pay_retries as f64).sum()),
        per_order(samples.iter().map(|s| s.fallbacks as f64).sum()),
    );
    let mut slowest: Vec<&Sample> = samples.iter().collect();
    slowest.sort_by_key(|s| std::cmp::Reverse(s.latency));
    println!(
        "  slowest      {}",
        slowest
            .iter()
            .take(3)
            .map(|s| format!(
                "{} {} ms (payable {} ms, paid {} ms)",
                s.order,
                s.latency.as_millis(),
                s.payable.as_millis(),
                s.paid.as_millis()
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let lost: Vec<&String> = samples.iter().flat_map(|s| &s.lost).collect();
    if !lost.is_empty() {
        println!("  pushes late  {} (the first 5 below)", lost.len());
        for line in lost.iter().take(5) {
            println!("               {line}");
        }
    }
    println!(
        "  MongoDB      {:.1} commands/order, {:.1} transactions/order, {:.0} write conflicts ({:.0} failed commands)",
        per_order(total_commands),
        per_order(transactions),
        conflicts,
        failures
    );
    let mut busiest: Vec<(&String, &f64)> = commands.iter().collect();
    busiest.sort_by(|a, b| b.1.total_cmp(a.1));
    println!(
        "               {}",
        busiest
            .iter()
            .take(8)
            .map(|(name, count)| format!("{name} {:.1}", per_order(**count)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for service in services::built() {
        // This service's command series (counters keep them per service under its name).
        let prefix = format!("{}|storefront_mongodb_commands_total", service.name);
        let mine: f64 = counters
            .0
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
            .sum();
        if mine > 0.0 {
            print!(
                "  {:<13}{:.1} commands/order",
                service.name,
                per_order(mine)
            );
            let tx: f64 = counters
                .0
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix) && k.contains("commitTransaction"))
                .map(|(_, v)| v)
                .sum();
            println!(", {:.1} transactions/order", per_order(tx));
            // Where they go: command and collection, the busiest first.
            let mut by_collection: Vec<(String, f64)> = counters
                .0
                .iter()
                .filter(|(k, v)| k.starts_with(&prefix) && **v > 0.0)
                .map(|(k, v)| {
                    let command = label_value(k, "command").unwrap_or_default();
                    match label_value(k, "collection").filter(|c| !c.is_empty()) {
                        Some(collection) => (format!("{command} {collection}"), *v),
                        None => (command, *v),
                    }
                })
                .collect();
            by_collection.sort_by(|a, b| b.1.total_cmp(&a.1));
            println!(
                "               {}",
                by_collection
                    .iter()
                    .filter(|(_, v)| per_order(*v) >= 0.05)
                    .map(|(what, v)| format!("{what} {:.1}", per_order(*v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    println!(
        "  Kafka        {:.1} deliveries/order ({}), handler reruns: {}",
        per_order(deliveries.values().sum()),
        deliveries
            .iter()
            .map(|(k, v)| format!("{k} {:.1}", per_order(*v)))
            .collect::<Vec<_>>()
            .join(", "),
        if retries.is_empty() {
            "none".to_owned()
        } else {
            retries
                .iter()
                .map(|(k, v)| format!("{k} {v:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let shares = cpu_share(&cpu_before, &cpu_after, elapsed);
    println!(
        "  CPU (% of one core, during the load; {:.0}% in all): {}",
        shares.iter().map(|(_, s)| s).sum::<f64>(),
        shares
            .iter()
            .map(|(name, s)| format!("{name} {s:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let stock = if stock_ok { "OK" } else { "VIOLATED" };
    println!(
        "  stock        {stock} (available + reserved + sold = initial for every product; {sold} sold, {reserved} still held)"
    );
    println!(
        "  charges      {} ({charges} succeeded Stripe charges, {refunded} of them refunded, {completed} completed orders; {items} items in completed orders, {sold} sold)",
        if charges_ok { "OK" } else { "VIOLATED" }
    );

    if load.idle > 0 {
        step(format!("the idle fleet for {} s", load.idle));
        // Long enough for every consumer to fall idle.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let over = Duration::from_secs(load.idle);
        let before = cpu(stack);
        let counters_before = Counters::read(&client, ports).await?;
        let load_before = load_average();
        tokio::time::sleep(over).await;
        let after = cpu(stack);
        let commands = Counters::read(&client, ports)
            .await?
            .since(&counters_before)
            .sum("storefront_mongodb_commands_total", &[]);
        let shares: Vec<(String, f64)> = cpu_share(&before, &after, over)
            .into_iter()
            .filter(|(name, _)| name != "(bench)")
            .collect();
        let services: f64 = shares
            .iter()
            .filter(|(name, _)| SERVICES.iter().any(|s| s.name == name))
            .map(|(_, s)| s)
            .sum();
        println!(
            "  idle         fleet {:.1}% of one core over {} s (services {services:.1}%; load average {load_before}); {:.1} MongoDB commands/s",
            shares.iter().map(|(_, s)| s).sum::<f64>(),
            load.idle,
            commands / over.as_secs_f64(),
        );
        println!(
            "               {}",
            shares
                .iter()
                .map(|(name, s)| format!("{name} {s:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "  targets      ≤ 60 commands and ≤ 10 transactions per order; p99 ≤ 250 ms at 1 buyer and at half the saturation rate; idle fleet ≤ 5% of one core"
    );
    if !stock_ok || !charges_ok {
        bail!("an invariant was violated");
    }
    Ok(())
}

/// What the invariants are read from, at one moment.
struct Ledger {
    stock_ok: bool,
    sold: i64,
    reserved: i64,
    completed: u64,
    items: i64,
    charges: u64,
    refunded: u64,
}

impl Ledger {
    /// Every completed order's items sold, every kept charge a completed order.
    fn settled(&self) -> bool {
        self.charges - self.refunded == self.completed && self.items == self.sold
    }

    async fn read(
        client: &reqwest::Client,
        base: &str,
        admin: &str,
        products: &[String],
        stack: &Stack,
    ) -> Result<Ledger> {
        let mut stock_ok = true;
        let (mut sold, mut reserved) = (0, 0);
        for id in products.iter() {
            let view = json_of(
                client
                    .get(format!("{base}/api/products/{id}/stock"))
                    .bearer_auth(admin)
                    .send()
                    .await?,
            )
            .await?;
            let s = &view["stock"];
            let (a, r, so) = (
                s["available"].as_i64().unwrap_or(-1),
                s["reserved"].as_i64().unwrap_or(-1),
                s["sold"].as_i64().unwrap_or(-1),
            );
            stock_ok &= a + r + so == STOCK && a >= 0 && r >= 0;
            sold += so;
            reserved += r;
        }
        let mongo = mongodb::Client::with_uri_str(&stack.endpoints.mongodb_uri).await?;
        let orders = mongo
            .database(&format!("{}_orders", services::TOPIC_PREFIX))
            .collection::<mongodb::bson::Document>("orders");
        let mut completed_orders = orders
            .find(mongodb::bson::doc! { "state": "completed" })
            .await?;
        let (mut completed, mut items) = (0u64, 0i64);
        while let Some(order) = completed_orders.next().await {
            let order = order?;
            completed += 1;
            for line in order
                .get_array("lines")
                .map(|l| l.iter())
                .into_iter()
                .flatten()
            {
                if let Some(line) = line.as_document() {
                    items += line.get_i64("quantity").unwrap_or(0);
                }
            }
        }
        let (charges, refunded) = stripe_charges(client, &stack.endpoints.stripe_url).await?;
        Ok(Ledger {
            stock_ok,
            sold,
            reserved,
            completed,
            items,
            charges,
            refunded,
        })
    }
}
