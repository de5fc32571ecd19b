//! Faults as tests (issue 14 part 3; docs/saga.md, "Faults"): customers check out without pause
//! while the Kafka broker, the MongoDB server, orders, products and payments are SIGKILLed and
//! started again, one after the other, each on its own port as a restarted pod would be. After
//! each restart the shop must complete orders again; after the last, within a deadline:
//!
//! - every order is final (completed or cancelled);
//! - no product is oversold: available + reserved + sold = the initial stock, none of them
//!   negative, nothing left reserved, and sold = the items of the completed orders;
//! - every Stripe charge is kept by its order, completed, or was refunded — and then the refund
//!   is recorded as done on its cancelled order; no order keeps two charges;
//! - no event is stuck: every outbox is sent and every consumer group has read its topics to the
//!   end; and none was dead-lettered, since no event of this run is malformed (a dead letter
//!   here would be a transient fault taken for a poison event).
//!
//! It runs on a stack of its own that `cargo xtask test` starts for it (`xtask/src/faults.rs`) and
//! names in `STOREFRONT_TEST_FAULT_STACK`: killing the shared test stack would fail other tests.

use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};
use serde_json::{Value, json};
use storefront_events::dlq_topic;

const PREFIX: &str = "storefront";
/// Plenty of the common products; one scarce product sells out during the run, so orders are
/// rejected for stock under faults too.
const STOCK: i64 = 5_000;
const SCARCE_STOCK: i64 = 12;
const PRODUCTS: usize = 5;
const BUYERS: usize = 6;
/// How long customers keep checking out after the last fault.
const TAIL: Duration = Duration::from_secs(5);
/// How long a restarted process may take to be ready.
const RECOVERY: Duration = Duration::from_secs(60);
/// How long after a restart the shop may take to complete an order again. More than MongoDB's
/// transaction lifetime (`transactionLifetimeLimitSeconds`, 60 s; SecantusDB reaps at 60 s too):
/// a process killed inside a transaction leaves it open, and its writes hold the documents they
/// touched — for products' inventory the few best sellers — until the server reaps it, so the new
/// process's transactions on them wait until then (docs/saga.md, "Faults").
const COMPLETES_AGAIN: Duration = Duration::from_secs(90);
/// How long everything may take to settle after the load stopped: the payment window (20 s) and
/// hold (10 s) the fault stack sets, and payments' abandoned-claim check (60 s), with room.
const SETTLE: Duration = Duration::from_secs(150);
/// A customer retries a request this long while the shop does not answer.
const PATIENCE: Duration = Duration::from_secs(30);

fn now() -> Instant {
    Instant::now()
}

// ---------------------------------------------------------------------------------------------
// The fault stack: its processes, killed and started again.

struct FaultStack {
    dir: PathBuf,
    state: Value,
}

impl FaultStack {
    fn from_env() -> FaultStack {
        let dir = PathBuf::from(std::env::var("STOREFRONT_TEST_FAULT_STACK").unwrap_or_else(|_| {
            panic!(
                "STOREFRONT_TEST_FAULT_STACK is not set: run the fault test through `cargo xtask test`, which starts its stack"
            )
        }));
        let state = read_json(&dir.join("stack.json"));
        FaultStack { dir, state }
    }

    fn endpoint(&self, name: &str) -> String {
        self.state["endpoints"][name]
            .as_str()
            .unwrap_or_else(|| panic!("stack.json names no {name}"))
            .to_owned()
    }

    fn service(&self, name: &str) -> String {
        self.state["extra"]["services"][name]
            .as_str()
            .unwrap_or_else(|| panic!("stack.json names no service {name}"))
            .to_owned()
    }

    fn pid(&self, name: &str) -> u32 {
        self.proc(name)["pid"].as_u64().expect("a pid") as u32
    }

    fn proc(&self, name: &str) -> &Value {
        self.state["procs"]
            .as_array()
            .and_then(|procs| procs.iter().find(|p| p["name"] == name))
            .unwrap_or_else(|| panic!("stack.json has no process {name}"))
    }

    /// Where a backend or service listens.
    fn port(&self, name: &str) -> u16 {
        let address = match name {
            "mongodb" => self.endpoint("mongodb_uri"),
            "kafka" => self.endpoint("kafka_bootstrap"),
            service => self.service(service),
        };
        let digits: String = address
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().expect("a port")
    }

    /// SIGKILL, and wait until the process is gone.
    fn kill(&self, name: &str) {
        let pid = self.pid(name);
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -KILL {name} ({pid}) failed");
        let until = now() + Duration::from_secs(10);
        while alive(pid) {
            assert!(now() < until, "{name} ({pid}) outlived SIGKILL");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `name` again exactly as xtask started it (`logs/{name}.launch.json`), output
    /// appended to its log, and records the new pid in `stack.json` (xtask stops what it names).
    fn start(&mut self, name: &str) {
        let logs = self.dir.join("logs");
        let launch = read_json(&logs.join(format!("{name}.launch.json")));
        let log = std::fs::File::options()
            .append(true)
            .open(logs.join(format!("{name}.log")))
            .expect("open the log");
        let mut command = Command::new(launch["program"].as_str().expect("a program"));
        command
            .args(
                launch["args"]
                    .as_array()
                    .expect("args")
                    .iter()
                    .map(|a| a.as_str().expect("an argument")),
            )
            .env_clear()
            .envs(
                ["PATH", "HOME"]
                    .into_iter()
                    .filter_map(|k| Some((k, std::env::var(k).ok()?))),
            )
            .envs(
                launch["env"]
                    .as_object()
                    .expect("env")
                    .iter()
                    .map(|(k, v)| (k, v.as_str().unwrap_or_default())),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log"))
            .stderr(log)
            .process_group(0);
        if let Some(cwd) = launch["cwd"].as_str() {
            command.current_dir(cwd);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} again: {e}"));
        let pid = child.id();
        // Reaped when it exits (killed again, or stopped by xtask at the end).
        std::thread::spawn(move || child.wait());
        for proc in self.state["procs"].as_array_mut().expect("procs") {
            if proc["name"] == name {
                proc["pid"] = json!(pid);
            }
        }
        let file = self.dir.join("stack.json");
        let temporary = self.dir.join("stack.json.new");
        std::fs::write(&temporary, serde_json::to_vec_pretty(&self.state).unwrap())
            .expect("write stack.json");
        std::fs::rename(&temporary, &file).expect("replace stack.json");
    }

    /// Waits until `name` accepts connections and, for a service, its `/readyz` says ready.
    async fn wait_ready(&self, name: &str, http: &reqwest::Client) {
        let until = now() + RECOVERY;
        let port = self.port(name);
        let is_service = self.state["extra"]["services"][name].is_string();
        loop {
            let ready = if is_service {
                http.get(format!("{}/readyz", self.service(name)))
                    .timeout(Duration::from_secs(3))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            } else {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            };
            if ready {
                return;
            }
            assert!(
                alive(self.pid(name)),
                "{name} exited after its restart; its log: {}",
                self.dir.join("logs").join(format!("{name}.log")).display()
            );
            assert!(
                now() < until,
                "{name} was not ready {RECOVERY:?} after its restart"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

// ---------------------------------------------------------------------------------------------
// The customers.

/// An answer of the shop, or why there was none (the service was down, the request timed out).
type Answer = Result<(u16, Value), String>;

#[derive(Clone)]
struct Shop {
    http: reqwest::Client,
    auth: String,
    products: String,
    cart: String,
    orders: String,
    payments: String,
}

/// What the customers saw, for the checks at the end.
#[derive(Default)]
struct Seen {
    /// Every order a checkout answered.
    orders: BTreeSet<String>,
    /// Answers no fault explains: a 4xx to a well-formed request (other than the documented
    /// outcomes), or a 500 (a 502/503/504 or no answer is what a fault looks like).
    unexpected: Vec<String>,
    paid: usize,
    cancelled: usize,
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// Whether an answer is what a fault looks like, so the customer tries again.
fn is_fault(answer: &Answer) -> bool {
    match answer {
        Err(_) => true,
        Ok((status, _)) => matches!(status, 502..=504),
    }
}

fn problem(body: &Value) -> &str {
    body["type"]
        .as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

impl Shop {
    fn new(stack: &FaultStack) -> Shop {
        Shop {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(BUYERS * 2)
                .build()
                .expect("an HTTP client"),
            auth: stack.service("auth"),
            products: stack.service("products"),
            cart: stack.service("cart"),
            orders: stack.service("orders"),
            payments: stack.service("payments"),
        }
    }

    /// Sends what `request` makes until an answer comes that is not a fault, or `PATIENCE` ends.
    async fn patiently(&self, request: impl Fn() -> reqwest::RequestBuilder) -> Answer {
        let until = now() + PATIENCE;
        loop {
            let answer = send(request()).await;
            if !is_fault(&answer) || now() > until {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn sign_in(&self, email: &str, password: &str) -> String {
        let body = json!({ "email": email, "password": password });
        let (status, session) = self
            .patiently(|| {
                self.http
                    .post(format!("{}/api/users/signin", self.auth))
                    .json(&body)
            })
            .await
            .expect("auth answers");
        assert_eq!(status, 200, "sign in: {session}");
        session["access_token"]
            .as_str()
            .expect("a token")
            .to_owned()
    }

    async fn sign_up(&self, i: usize) -> String {
        let body = json!({ "email": format!("faulty-buyer{i}@example.com"), "password": "fault-password-1", "name": format!("Buyer {i}") });
        let (status, session) = self
            .patiently(|| {
                self.http
                    .post(format!("{}/api/users/signup", self.auth))
                    .json(&body)
            })
            .await
            .expect("auth answers");
        assert_eq!(status, 201, "sign up: {session}");
        session["access_token"]
            .as_str()
            .expect("a token")
            .to_owned()
    }

    async fn create_product(&self, admin: &str, i: usize, stock: i64) -> String {
        let body = json!({ "title": format!("Fault product {i}"), "category": "faults", "price": { "amount": 700 + i as i64, "currency": "USD" }, "stock": stock });
        let (status, product) = self
            .patiently(|| {
                self.http
                    .post(format!("{}/api/products", self.products))
                    .bearer_auth(admin)
                    .json(&body)
            })
            .await
            .expect("products answers");
        assert_eq!(status, 201, "create a product: {product}");
        product["id"].as_str().expect("an id").to_owned()
    }
}

/// What a customer does with an order once it is placed.
#[derive(Debug, Clone, Copy)]
enum Plan {
    Pay,
    Cancel,
    /// Pay and cancel at the same moment.
    PayAndCancel,
    /// Never pay: it expires.
    Abandon,
}

fn plan(n: usize) -> Plan {
    match n % 10 {
        0 => Plan::Cancel,
        1 => Plan::Abandon,
        2 | 7 => Plan::PayAndCancel,
        _ => Plan::Pay,
    }
}

struct Buyer {
    shop: Shop,
    token: String,
    seen: Arc<Mutex<Seen>>,
}

impl Buyer {
    fn unexpected(&self, what: &str, answer: &Answer) {
        let line = match answer {
            Ok((status, body)) => format!("{what}: {status} {body}"),
            Err(e) => format!("{what}: no answer within {PATIENCE:?}: {e}"),
        };
        eprintln!("unexpected: {line}");
        self.seen.lock().unwrap().unexpected.push(line);
    }

    /// Empties the cart of what a cancelled order gave back, so each order is what it picks.
    async fn clear_cart(&self) {
        let shop = &self.shop;
        let Ok((200, cart)) = shop
            .patiently(|| {
                shop.http
                    .get(format!("{}/api/cart", shop.cart))
                    .bearer_auth(&self.token)
            })
            .await
        else {
            return;
        };
        for item in cart["items"].as_array().into_iter().flatten() {
            let id = item["product_id"].as_str().unwrap_or_default();
            let _ = shop
                .patiently(|| {
                    shop.http
                        .delete(format!("{}/api/cart/items/{id}", shop.cart))
                        .bearer_auth(&self.token)
                })
                .await;
        }
    }

    /// One order: add a line, check out, then pay, cancel, both, or walk away.
    async fn order(&self, n: usize, products: &[String]) {
        let shop = &self.shop;
        self.clear_cart().await;
        // Every fifth order takes the scarce product (the last).
        let product = if n % 5 == 4 {
            products.last()
        } else {
            products.get(n % (products.len() - 1))
        }
        .expect("products");
        let line = json!({ "product_id": product, "quantity": 1 + (n % 2) });
        let added = shop
            .patiently(|| {
                shop.http
                    .post(format!("{}/api/cart/items", shop.cart))
                    .bearer_auth(&self.token)
                    .json(&line)
            })
            .await;
        if !matches!(added, Ok((200, _))) {
            if !is_fault(&added) {
                self.unexpected("add to cart", &added);
            }
            return;
        }
        let key = uuid::Uuid::new_v4().to_string();
        let placed = shop
            .patiently(|| {
                shop.http
                    .post(format!("{}/api/cart/checkout", shop.cart))
                    .bearer_auth(&self.token)
                    .header("idempotency-key", &key)
            })
            .await;
        let id = match &placed {
            Ok((200 | 201, order)) => order["id"].as_str().expect("an order id").to_owned(),
            // The scarce product sold out: the cart refuses a line it shows as not orderable
            // before any order (services/cart/src/http/cart.rs), the saga's stock check being
            // the other way it ends.
            Ok((422, problem)) if sold_out(problem) => return,
            _ => {
                if !is_fault(&placed) {
                    self.unexpected("check out", &placed);
                }
                return;
            }
        };
        self.seen.lock().unwrap().orders.insert(id.clone());
        match plan(n) {
            Plan::Pay => self.pay(&id).await,
            Plan::Cancel => self.cancel(&id).await,
            Plan::PayAndCancel => {
                tokio::join!(self.pay(&id), self.cancel(&id));
            }
            Plan::Abandon => {}
        }
    }

    /// Pays as a browser does: again after a fault, and again while another attempt of the
    /// same order is with Stripe (its request may have died with payments).
    async fn pay(&self, id: &str) {
        let shop = &self.shop;
        let body = json!({ "order_id": id, "payment_method": "pm_card_visa" });
        let until = now() + PATIENCE;
        loop {
            let answer = shop
                .patiently(|| {
                    shop.http
                        .post(format!("{}/api/payments", shop.payments))
                        .bearer_auth(&self.token)
                        .json(&body)
                })
                .await;
            match &answer {
                Ok((200, _)) => {
                    self.seen.lock().unwrap().paid += 1;
                    return;
                }
                Ok((409, p)) if problem(p) == "payment-in-progress" && now() < until => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                // Cancelled first (or expired, or rejected for stock), or paid by a retry
                // whose first answer was lost.
                Ok((409, p)) if matches!(problem(p), "order-not-payable" | "already-paid") => {
                    return;
                }
                // Payments or orders down all along, or a payment another attempt still holds:
                // the order ends by itself (paid by the attempt that went through, or expired).
                Ok((409, _)) => return,
                _ if is_fault(&answer) => return,
                _ => {
                    self.unexpected(&format!("pay {id}"), &answer);
                    return;
                }
            }
        }
    }

    async fn cancel(&self, id: &str) {
        let shop = &self.shop;
        let answer = shop
            .patiently(|| {
                shop.http
                    .post(format!("{}/api/orders/{id}/cancel", shop.orders))
                    .bearer_auth(&self.token)
            })
            .await;
        match &answer {
            Ok((200, _)) => self.seen.lock().unwrap().cancelled += 1,
            // Paid, being paid, or already cancelled.
            Ok((409, _)) => {}
            _ if is_fault(&answer) => {}
            _ => self.unexpected(&format!("cancel {id}"), &answer),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What the databases, the broker and Stripe say.

struct Backends {
    mongo: mongodb::Client,
    kafka: String,
    stripe: String,
    http: reqwest::Client,
}

impl Backends {
    fn db(&self, service: &str) -> mongodb::Database {
        self.mongo.database(&format!("{PREFIX}_{service}"))
    }

    async fn count(&self, service: &str, collection: &str, filter: Document) -> u64 {
        self.db(service)
            .collection::<Document>(collection)
            .count_documents(filter)
            .await
            .unwrap_or(u64::MAX)
    }

    async fn all(&self, service: &str, collection: &str) -> Vec<Document> {
        self.db(service)
            .collection::<Document>(collection)
            .find(doc! {})
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("read")
    }

    /// Everything of one kind on the Stripe stand-in (`/v1/charges`, `/v1/payment_intents`).
    async fn stripe_list(&self, what: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut url = format!("{}/v1/{what}?limit=100", self.stripe);
            if let Some(after) = &after {
                url.push_str(&format!("&starting_after={after}"));
            }
            let page: Value = self
                .http
                .get(url)
                .basic_auth("sk_test_storefront_local", Some(""))
                .send()
                .await
                .expect("the Stripe stand-in answers")
                .json()
                .await
                .expect("a list");
            let data = page["data"].as_array().cloned().unwrap_or_default();
            after = data
                .last()
                .and_then(|o| o["id"].as_str())
                .map(str::to_owned);
            all.extend(data);
            if page["has_more"] != true || after.is_none() {
                return all;
            }
        }
    }
}

/// Every consumer group of the shop and the topics it reads (each service's own settings).
fn groups() -> Vec<(String, Vec<String>)> {
    [
        storefront_products::events::settings(PREFIX),
        storefront_orders::events::settings(PREFIX),
        storefront_payments::events::settings(PREFIX),
        storefront_cart::events::settings(PREFIX),
        storefront_notifications::events::settings(PREFIX),
    ]
    .into_iter()
    .map(|s| (s.group, s.topics))
    .collect()
}

/// What the broker says.
struct KafkaState {
    /// For each group, the messages of its topics it has not committed.
    lag: BTreeMap<String, i64>,
    /// The messages each dead-letter topic holds.
    dead: BTreeMap<String, i64>,
}

fn kafka_state(bootstrap: &str) -> Result<KafkaState, String> {
    let timeout = Duration::from_secs(5);
    let mut lag = BTreeMap::new();
    let mut dead = BTreeMap::new();
    for (group, topics) in groups() {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("log_level", "3")
            .create()
            .map_err(|e| e.to_string())?;
        let mut behind = 0;
        for topic in &topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), timeout)
                .map_err(|e| e.to_string())?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            let mut list = TopicPartitionList::new();
            for &p in &partitions {
                list.add_partition(topic, p);
            }
            let committed = consumer
                .committed_offsets(list, timeout)
                .map_err(|e| e.to_string())?;
            for &p in &partitions {
                let (low, high) = consumer
                    .fetch_watermarks(topic, p, timeout)
                    .map_err(|e| e.to_string())?;
                let at = match committed.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(at)) => at,
                    _ => low,
                };
                behind += (high - at).max(0);
            }
            let dlq = dlq_topic(topic, &group);
            let metadata = consumer
                .fetch_metadata(Some(&dlq), timeout)
                .map_err(|e| e.to_string())?;
            let mut held = 0;
            for t in metadata.topics() {
                for p in t.partitions() {
                    if let Ok((low, high)) = consumer.fetch_watermarks(&dlq, p.id(), timeout) {
                        held += high - low;
                    }
                }
            }
            if held > 0 {
                dead.insert(dlq, held);
            }
        }
        lag.insert(group, behind);
    }
    Ok(KafkaState { lag, dead })
}

/// What is still moving: open orders, unsent outbox records, refunds not confirmed, stock still
/// reserved, consumers behind. Empty once the shop has settled.
async fn unsettled(backends: &Backends) -> Vec<String> {
    let mut left = Vec::new();
    let open = backends
        .count(
            "orders",
            "orders",
            doc! { "state": { "$in": ["pending", "awaiting_payment"] } },
        )
        .await;
    if open > 0 {
        left.push(format!("{open} orders not final"));
    }
    for service in ["auth", "products", "orders", "payments"] {
        let unsent = backends
            .count(service, "outbox", doc! { "sent": false })
            .await;
        if unsent > 0 {
            left.push(format!("{unsent} unsent events in {service}' outbox"));
        }
    }
    let due = backends
        .count("orders", "orders", doc! { "refund.status": "due" })
        .await;
    if due > 0 {
        left.push(format!("{due} refunds not confirmed"));
    }
    let claimed = backends
        .count(
            "payments",
            "payments",
            doc! { "status": { "$in": ["processing", "refund_due"] } },
        )
        .await;
    if claimed > 0 {
        left.push(format!("{claimed} payments processing or refund due"));
    }
    let reserved = backends
        .count(
            "products",
            "products",
            doc! { "stock.reserved": { "$ne": 0 } },
        )
        .await;
    if reserved > 0 {
        left.push(format!("{reserved} products with stock still reserved"));
    }
    let bootstrap = backends.kafka.clone();
    match tokio::task::spawn_blocking(move || kafka_state(&bootstrap))
        .await
        .expect("the Kafka check")
    {
        Ok(state) => {
            for (group, behind) in state.lag.into_iter().filter(|(_, b)| *b > 0) {
                left.push(format!("{group} is {behind} messages behind"));
            }
        }
        Err(e) => left.push(format!("the broker: {e}")),
    }
    left
}

// ---------------------------------------------------------------------------------------------
// The test.

async fn completed(backends: &Backends) -> u64 {
    backends
        .count("orders", "orders", doc! { "state": "completed" })
        .await
}

/// Waits until the shop completes an order it had not completed before `since`.
async fn recovers(backends: &Backends, what: &str, since: u64) {
    let until = now() + COMPLETES_AGAIN;
    while completed(backends).await <= since {
        assert!(
            now() < until,
            "no order completed within {COMPLETES_AGAIN:?} after {what} was started again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_survive_the_broker_the_database_and_each_service_killed_in_turn() {
    let started = now();
    let mut stack = FaultStack::from_env();
    let shop = Shop::new(&stack);
    let backends = Backends {
        mongo: mongodb::Client::with_uri_str(stack.endpoint("mongodb_uri"))
            .await
            .expect("a MongoDB client"),
        kafka: stack.endpoint("kafka_bootstrap"),
        stripe: stack.endpoint("stripe_url"),
        http: shop.http.clone(),
    };

    let admin = &stack.state["extra"]["admin"];
    let admin = shop
        .sign_in(
            admin["email"].as_str().expect("the admin's email"),
            admin["password"].as_str().expect("the admin's password"),
        )
        .await;
    let mut products = Vec::new();
    for i in 0..PRODUCTS {
        let stock = if i == PRODUCTS - 1 {
            SCARCE_STOCK
        } else {
            STOCK
        };
        products.push(shop.create_product(&admin, i, stock).await);
    }
    let initial: BTreeMap<String, i64> = products
        .iter()
        .enumerate()
        .map(|(i, id)| {
            (
                id.clone(),
                if i == PRODUCTS - 1 {
                    SCARCE_STOCK
                } else {
                    STOCK
                },
            )
        })
        .collect();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut buyers = Vec::new();
    for i in 0..BUYERS {
        buyers.push(Buyer {
            shop: shop.clone(),
            token: shop.sign_up(i).await,
            seen: seen.clone(),
        });
    }
    // The replicas in cart and orders learn the products from Kafka: customers start when both
    // know them all (a cart that does not yet know a product answers 422 "not sold here").
    let until = now() + RECOVERY;
    loop {
        let known = backends
            .all("cart", "products")
            .await
            .iter()
            .filter(|p| {
                products
                    .iter()
                    .any(|id| p.get_str("_id") == Ok(id.as_str()))
            })
            .count();
        if known < products.len() {
            assert!(now() < until, "cart never learned the products");
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let quote = json!({ "lines": products.iter().map(|p| json!({ "product_id": p, "quantity": 1 })).collect::<Vec<_>>() });
        let answer = send(
            shop.http
                .post(format!("{}/api/orders/quote", shop.orders))
                .bearer_auth(&buyers[0].token)
                .json(&quote),
        )
        .await;
        if matches!(answer, Ok((200, _))) {
            break;
        }
        assert!(
            now() < until,
            "orders never learned the products: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("[{:.0?}] {BUYERS} customers check out", started.elapsed());

    let stop = Arc::new(AtomicBool::new(false));
    let products = Arc::new(products);
    let customers: Vec<_> = buyers
        .into_iter()
        .enumerate()
        .map(|(i, buyer)| {
            let (stop, products) = (stop.clone(), products.clone());
            tokio::spawn(async move {
                let mut n = i;
                while !stop.load(Ordering::Relaxed) {
                    buyer.order(n, &products).await;
                    n += BUYERS;
                }
            })
        })
        .collect();

    recovers(&backends, "the start", 0).await;
    for victim in ["kafka", "mongodb", "orders", "products", "payments"] {
        let before = completed(&backends).await;
        eprintln!(
            "[{:.0?}] SIGKILL {victim} ({} orders completed)",
            started.elapsed(),
            before
        );
        stack.kill(victim);
        tokio::time::sleep(Duration::from_secs(1)).await;
        stack.start(victim);
        stack.wait_ready(victim, &shop.http).await;
        eprintln!("[{:.0?}] {victim} is back", started.elapsed());
        recovers(&backends, victim, before).await;
    }
    tokio::time::sleep(TAIL).await;
    stop.store(true, Ordering::Relaxed);
    for customer in customers {
        customer.await.expect("a customer");
    }
    eprintln!(
        "[{:.0?}] the customers stopped; waiting for the shop to settle",
        started.elapsed()
    );

    let until = now() + SETTLE;
    loop {
        let left = unsettled(&backends).await;
        if left.is_empty() {
            break;
        }
        assert!(
            now() < until,
            "not settled {SETTLE:?} after the load stopped: {}",
            left.join("; ")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("[{:.0?}] settled", started.elapsed());

    // Every order final, and every one the customers saw is there.
    let orders = backends.all("orders", "orders").await;
    let by_id: BTreeMap<String, &Document> = orders
        .iter()
        .map(|o| (o.get_str("_id").unwrap_or_default().to_owned(), o))
        .collect();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    for id in &seen.orders {
        assert!(
            by_id.contains_key(id),
            "order {id} was answered but is not stored"
        );
    }
    let state = |o: &Document| o.get_str("state").unwrap_or_default().to_owned();
    let completed_orders: Vec<&Document> =
        orders.iter().filter(|o| state(o) == "completed").collect();
    let cancelled = orders.iter().filter(|o| state(o) == "cancelled").count();
    assert_eq!(
        completed_orders.len() + cancelled,
        orders.len(),
        "every order is completed or cancelled"
    );

    // Stock: nothing oversold, nothing left held, sold = the items of completed orders.
    let mut sold_by_product: BTreeMap<String, i64> = BTreeMap::new();
    for order in &completed_orders {
        for line in order.get_array("lines").into_iter().flatten() {
            if let Some(line) = line.as_document() {
                *sold_by_product
                    .entry(line.get_str("product_id").unwrap_or_default().to_owned())
                    .or_default() += line.get_i64("quantity").unwrap_or(0);
            }
        }
    }
    for product in backends.all("products", "products").await {
        let id = product.get_str("_id").unwrap_or_default();
        let Some(&initial) = initial.get(id) else {
            continue;
        };
        let stock = product.get_document("stock").expect("stock");
        let n = |k: &str| {
            stock
                .get_i64(k)
                .or_else(|_| stock.get_i32(k).map(i64::from))
                .unwrap_or(-1)
        };
        let (available, reserved, sold) = (n("available"), n("reserved"), n("sold"));
        assert!(
            available >= 0 && reserved == 0 && sold >= 0 && available + reserved + sold == initial,
            "product {id}: available {available} + reserved {reserved} + sold {sold} against {initial}"
        );
        assert_eq!(
            sold,
            sold_by_product.get(id).copied().unwrap_or(0),
            "product {id}: sold against the items of completed orders"
        );
    }

    // Money: every charge kept by one completed order, or refunded and recorded so.
    let intents: BTreeMap<String, String> = backends
        .stripe_list("payment_intents")
        .await
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap_or_default().to_owned(),
                i["metadata"]["order_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    let mut kept: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut refunded: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let charges = backends.stripe_list("charges").await;
    for charge in charges.iter().filter(|c| c["status"] == "succeeded") {
        let intent = charge["payment_intent"].as_str().unwrap_or_default();
        let order = intents.get(intent).cloned().unwrap_or_default();
        let into = if charge["refunded"] == true {
            &mut refunded
        } else {
            &mut kept
        };
        into.entry(order).or_default().push(intent.to_owned());
    }
    for (order_id, intents) in &kept {
        let order = by_id
            .get(order_id)
            .unwrap_or_else(|| panic!("a charge kept for {order_id:?}, which is no order"));
        assert_eq!(
            intents.len(),
            1,
            "order {order_id} is paid {} times",
            intents.len()
        );
        assert_eq!(
            state(order),
            "completed",
            "a charge kept for order {order_id}, which is not completed: {order}"
        );
        let recorded = order
            .get_document("payment")
            .and_then(|p| p.get_str("payment_intent_id"))
            .unwrap_or_default();
        assert_eq!(
            recorded, intents[0],
            "order {order_id} records another payment than the one kept"
        );
    }
    for order in &completed_orders {
        let id = order.get_str("_id").unwrap_or_default();
        assert!(
            kept.contains_key(id),
            "order {id} is completed with no charge kept"
        );
    }
    for order_id in refunded.keys() {
        let order = by_id
            .get(order_id)
            .unwrap_or_else(|| panic!("a charge refunded for {order_id:?}, which is no order"));
        let refund = order
            .get_document("refund")
            .and_then(|r| r.get_str("status"))
            .unwrap_or_default();
        if !kept.contains_key(order_id) {
            assert_eq!(state(order), "cancelled", "order {order_id}");
            assert_eq!(
                refund, "refunded",
                "order {order_id}'s refund is not recorded as done: {order}"
            );
        }
    }
    for order in orders.iter().filter(|o| state(o) == "cancelled") {
        if let Ok(refund) = order.get_document("refund") {
            assert_eq!(
                refund.get_str("status").unwrap_or_default(),
                "refunded",
                "{order}"
            );
        }
    }

    // Events: nothing behind (checked by `unsettled`), nothing dead-lettered.
    let bootstrap = backends.kafka.clone();
    let dead = tokio::task::spawn_blocking(move || kafka_state(&bootstrap))
        .await
        .expect("the Kafka check")
        .expect("the broker answers")
        .dead;
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    assert!(
        seen.unexpected.is_empty(),
        "answers no fault explains: {:#?}",
        seen.unexpected
    );

    eprintln!(
        "FIGURES {} orders ({} completed, {cancelled} cancelled; {} paid and {} cancelled by customers' answers); {} charges kept, {} refunded; {:.0?} in all",
        orders.len(),
        completed_orders.len(),
        seen.paid,
        seen.cancelled,
        kept.len(),
        refunded.values().map(Vec::len).sum::<usize>(),
        started.elapsed()
    );
}

/// A checkout the cart refused because its copy of the stock shows too little of every line it
/// names (`items[i].quantity`, "only N of … available").
fn sold_out(problem: &Value) -> bool {
    problem["errors"].as_array().is_some_and(|errors| {
        !errors.is_empty()
            && errors.iter().all(|e| {
                e["field"]
                    .as_str()
                    .is_some_and(|f| f.starts_with("items[") && f.ends_with("].quantity"))
            })
    })
}
