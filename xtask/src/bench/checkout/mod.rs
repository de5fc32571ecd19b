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
//!
//! By concern: `shop.rs` (the buyers and the loops), `measure.rs` (commands, deliveries, CPU),
//! `invariants.rs` (stock and charges); this file parses the load, runs it and prints the
//! figures.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;

use crate::{
    bench::BENCH_ADMIN,
    services::{self, Ports, SERVICES},
    stack::Stack,
    step,
};

mod invariants;
mod measure;
mod shop;

use invariants::Ledger;
use measure::{Counters, cpu, cpu_share, label_value, load_average};
use shop::{Buyer, Sample, Shop, closed_loop, follow, json_of, open_loop};

pub const USAGE: &str = "--buyers N | --rate R [--buyers POOL]] [--seconds S] [--idle S";

const PRODUCTS: usize = 10;

pub(super) const STOCK: i64 = 100_000;

/// How long one order may take before the bench calls it a timeout.
pub(super) const ORDER_DEADLINE: Duration = Duration::from_secs(30);

/// With no word from the socket for this long, the buyer asks for the order (a late or lost
/// push). At 200 buyers this is polling (10 GETs an order), yet 10 s did worse (4.6 orders/s
/// against 6.0, 118 timeouts against 35): notifications' one-lane consumer falls behind there,
/// and 22 pushes came 10 s or more after the API had the state.
pub(super) const SOCKET_PATIENCE: Duration = Duration::from_secs(2);

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
        "\ncheckout saga through the gateway (release build; {}; tansu built from source; load generator on the same 2 cores)",
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
    println!("  over time    {}", timeline(samples, started));
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

/// p50/p99 of the orders checked out in each 10-s window of the load: an episode (every service
/// slow at once) shows as one window, a queue that grows as rising windows.
fn timeline(samples: &[Sample], start: Instant) -> String {
    const WINDOW: Duration = Duration::from_secs(10);
    let mut windows: Vec<Vec<Duration>> = Vec::new();
    for sample in samples {
        let index = (sample.at.saturating_duration_since(start).as_secs_f64()
            / WINDOW.as_secs_f64()) as usize;
        if windows.len() <= index {
            windows.resize_with(index + 1, Vec::new);
        }
        windows[index].push(sample.latency);
    }
    windows
        .iter_mut()
        .enumerate()
        .filter(|(_, w)| !w.is_empty())
        .map(|(i, w)| {
            w.sort();
            format!(
                "{}s {:.0}/{:.0}",
                i as u64 * WINDOW.as_secs(),
                percentile(w, 0.50),
                percentile(w, 0.99)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
        + " ms (p50/p99 by when the checkout was sent)"
}
