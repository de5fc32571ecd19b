//! The admin pages through the running shop: the gate, products (search, create, edit with a
//! version conflict, stock and its history, images, delete), orders by status and one order's
//! page, users (search, block/unblock).

use reqwest::{StatusCode, multipart};
use storefront_kit::testing::unique;
use storefront_products::demo::png;

use crate::helpers::{PASSWORD, Shop, Visitor, a_product, payment_method};

#[tokio::test]
async fn admin_pages_are_for_admins_only() {
    let shop = Shop::from_env();
    let anonymous = Visitor::new(&shop);
    for path in ["/admin/products", "/admin/orders", "/admin/users"] {
        let page = anonymous.get(path).await;
        assert!(
            page.redirect().starts_with("/signin?next="),
            "{path}: {:?}",
            page.location
        );
    }
    let customer = Visitor::new(&shop);
    customer.sign_up().await;
    for path in [
        "/admin/products",
        "/admin/products/new",
        "/admin/orders",
        "/admin/users",
    ] {
        assert_eq!(
            customer.get(path).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    let page = customer
        .post(
            "/admin/products",
            &[
                ("title", "Sneaky"),
                ("category", "home"),
                ("price", "1.00"),
                ("currency", "USD"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    // The admin sees the nav link; a customer does not.
    assert!(!customer.get("/").await.body.contains("href=\"/admin\""));
    Visitor::admin(&shop)
        .await
        .get("/")
        .await
        .contains("href=\"/admin\"");
}

#[tokio::test]
async fn an_admin_creates_edits_restocks_and_illustrates_a_product() {
    let shop = Shop::from_env();
    let admin = Visitor::admin(&shop).await;
    admin
        .get("/admin/products/new")
        .await
        .ok()
        .contains("<label for=\"title\">")
        .contains("<label for=\"price\">");

    // The form's own checks and the service's, each by its field; what was typed stays.
    let title = unique("Teapot");
    let page = admin
        .post(
            "/admin/products",
            &[
                ("title", &title),
                ("category", "kitchen"),
                ("price", "twelve"),
                ("currency", "USD"),
                ("stock", "5"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.contains(&format!("value=\"{title}\""))
        .contains("<p class=\"error\">");
    let page = admin
        .post(
            "/admin/products",
            &[
                ("title", &title),
                ("category", "kitchen_ware"),
                ("price", "12.50"),
                ("currency", "USD"),
                ("stock", "5"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.contains("value=\"kitchen_ware\"");

    let page = admin
        .post(
            "/admin/products",
            &[
                ("title", &title),
                ("description", "Holds a litre."),
                ("category", "kitchen"),
                ("price", "12.50"),
                ("currency", "usd"),
                ("stock", "5"),
            ],
        )
        .await;
    let edit = page.redirect().to_owned();
    let id = edit.strip_prefix("/admin/products/").unwrap().to_owned();
    let form = admin.get(&edit).await;
    form.ok()
        .contains("Version 1")
        .contains("value=\"12.50\"")
        .contains("5 available");
    admin
        .get("/admin/products")
        .await
        .ok()
        .contains(&format!("href=\"/admin/products/{id}\""));

    // Two admins edit version 1; the second to save sees what the first saved.
    let renamed = format!("{title} (large)");
    let fields = |title: &str, price: &str| {
        vec![
            ("title".to_owned(), title.to_owned()),
            ("description".to_owned(), "Holds a litre.".to_owned()),
            ("category".to_owned(), "kitchen".to_owned()),
            ("price".to_owned(), price.to_owned()),
            ("currency".to_owned(), "USD".to_owned()),
            ("version".to_owned(), "1".to_owned()),
        ]
    };
    let first = fields(&renamed, "14.00");
    let first: Vec<(&str, &str)> = first
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        admin.post(&edit, &first).await.redirect(),
        format!("{edit}?saved=details")
    );
    admin
        .get(&format!("{edit}?saved=details"))
        .await
        .ok()
        .contains("<p class=\"ok\" role=\"status\" id=\"saved\">Saved.</p>");
    // Without the query, nothing claims to be saved.
    assert!(!admin.get(&edit).await.body.contains("id=\"saved\""));
    let other = Visitor::admin(&shop).await;
    let second = fields(&title, "9.99");
    let second: Vec<(&str, &str)> = second
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let page = other.post(&edit, &second).await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.body);
    page.contains("id=\"conflict\"")
        .contains(&renamed)
        .contains("value=\"9.99\"")
        .contains("name=\"version\" value=\"2\"");
    let shown = admin.get(&format!("/products/{id}")).await;
    shown.ok().contains(&renamed).contains("14.00 USD");

    // Stock: a number and a reason.
    let page = admin
        .post(
            &format!("{edit}/stock"),
            &[("adjust", "lots"), ("reason", "delivery")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.contains("Enter a whole number");
    let page = admin
        .post(
            &format!("{edit}/stock"),
            &[("adjust", "-99"), ("reason", "shrinkage")],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.body
    );
    assert_eq!(
        admin
            .post(
                &format!("{edit}/stock"),
                &[("adjust", "7"), ("reason", "delivery")],
            )
            .await
            .redirect(),
        format!("{edit}?saved=stock")
    );
    // The stock's history, newest first: the delivery, then the initial stock.
    let page = admin.get(&edit).await;
    page.contains("12 available")
        .contains("id=\"stock-history\"");
    let history = &page.body[page.body.find("id=\"stock-history\"").unwrap()..];
    let delivery = history
        .find("delivery")
        .expect("the delivery is in the history");
    let initial = history
        .find("initial stock")
        .expect("so is the initial stock");
    assert!(delivery < initial, "newest first");
    assert!(history.contains("<td>+7</td>"), "{history}");

    // Images: a real PNG is stored and shown in the shop; a text file and no file are refused.
    let csrf = admin.csrf().await;
    let upload = |bytes: Vec<u8>, name: &'static str, mime: &'static str| {
        let form = multipart::Form::new().text("csrf", csrf.clone()).part(
            "file",
            multipart::Part::bytes(bytes)
                .file_name(name)
                .mime_str(mime)
                .unwrap(),
        );
        admin
            .http
            .post(admin.url(&format!("{edit}/images")))
            .multipart(form)
            .send()
    };
    let page = Visitor::page(
        upload(b"hello".to_vec(), "a.png", "image/png")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.body
    );
    page.contains("role=\"alert\"");
    let page = Visitor::page(
        upload(
            png(64, 64, [200, 40, 40], [40, 40, 200]),
            "a.png",
            "image/png",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(page.redirect(), format!("{edit}?saved=image"));
    // A camera-sized file (3 MB: over the 2 MiB a multipart parser takes by default) goes
    // through too, its CSRF field found before the file.
    let page = Visitor::page(
        upload(
            png(1000, 1000, [90, 10, 10], [10, 90, 200]),
            "big.png",
            "image/png",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        page.redirect(),
        format!("{edit}?saved=image"),
        "{}",
        page.body
    );
    let product = admin.api(&format!("/api/products/{id}")).await;
    let url = product["images"][0]["url"].as_str().unwrap();
    let shown = admin.get(&format!("/products/{id}")).await;
    // Served by products on the shop's origin, the same URL on every page.
    shown.contains(&format!("src=\"{url}\""));
    let image = admin.http.get(admin.url(url)).send().await.unwrap();
    assert_eq!(image.status(), StatusCode::OK);
    assert_eq!(image.headers()["content-type"], "image/jpeg");
    assert_eq!(image.headers()["x-content-type-options"], "nosniff");
    let empty = multipart::Form::new()
        .text("csrf", csrf.clone())
        .text("note", "no file");
    let page = Visitor::page(
        admin
            .http
            .post(admin.url(&format!("{edit}/images")))
            .multipart(empty)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.contains("Choose an image file");
    // Without the CSRF field, or with the token in the URL (where logs and Referers would keep
    // it): refused before anything is stored. The form never puts it in its action.
    let edit_page = admin.get(&edit).await;
    assert!(!edit_page.body.contains("csrf="), "{}", edit_page.body);
    for path in [
        format!("{edit}/images"),
        format!("{edit}/images?csrf={csrf}"),
    ] {
        let page = Visitor::page(
            admin
                .http
                .post(admin.url(&path))
                .multipart(
                    multipart::Form::new().part(
                        "file",
                        multipart::Part::bytes(png(64, 64, [0, 0, 0], [255, 255, 255]))
                            .file_name("b.png"),
                    ),
                )
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
    }

    // Unknown products.
    let missing = "/admin/products/0190b8a0-0000-7000-8000-000000000000";
    assert_eq!(admin.get(missing).await.status, StatusCode::NOT_FOUND);
    let page = admin
        .post(
            &format!("{missing}/stock"),
            &[("adjust", "1"), ("reason", "x")],
        )
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
}

/// An admin, and a new customer (with their email) who ordered one of a product (its id) in an
/// order (its id) awaiting payment.
async fn an_admin_and_an_order(shop: &Shop) -> (Visitor, Visitor, String, String, String) {
    let admin = Visitor::admin(shop).await;
    let customer = Visitor::new(shop);
    let email = customer.sign_up().await;
    let product = a_product(&customer).await;
    let order = customer.buy(&product, 1).await;
    (admin, customer, email, product, order)
}

#[tokio::test]
async fn admin_orders_filter_by_status_and_users_can_be_blocked_and_unblocked() {
    let shop = Shop::from_env();
    let (admin, customer, email, _, order) = an_admin_and_an_order(&shop).await;

    let page = admin.get("/admin/orders?status=awaiting_payment").await;
    page.ok();
    let statuses = page.values("data-status", "");
    assert!(!statuses.is_empty());
    assert!(
        statuses.iter().all(|s| s == "awaiting_payment"),
        "{statuses:?}"
    );
    // The filter says which status it shows, in words.
    page.contains("<option value=\"awaiting_payment\" selected>Awaiting payment</option>");
    // Shown in words.
    let shown = page.texts("data-status=\"awaiting_payment\">");
    assert!(shown.iter().all(|s| s == "Awaiting payment"), "{shown:?}");
    // The newest order is listed first.
    assert_eq!(
        page.values("data-order-id", "").first().map(String::as_str),
        Some(order.as_str())
    );
    let completed = admin.get("/admin/orders?status=completed").await;
    assert!(!completed.body.contains(&order));
    let page = admin.get("/admin/orders?status=lost").await;
    assert!(page.status.is_client_error(), "{}", page.status);
    admin.get("/admin/orders").await.ok().contains(&order);

    let me = customer.api("/api/users/currentuser").await;
    let id = me["user"]["id"].as_str().unwrap().to_owned();
    admin
        .get("/admin/users")
        .await
        .ok()
        .contains("<h1>Users</h1>");
    assert_eq!(
        admin
            .post(&format!("/admin/users/{id}/block"), &[])
            .await
            .redirect(),
        "/admin/users"
    );
    // Blocked: the session ends and signing in is refused.
    let again = Visitor::new(&shop);
    let page = again.sign_in(&email, PASSWORD).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert_eq!(
        admin
            .post(&format!("/admin/users/{id}/unblock"), &[])
            .await
            .redirect(),
        "/admin/users"
    );
    assert_eq!(again.sign_in(&email, PASSWORD).await.redirect(), "/");
    // Neither an unknown action nor an unknown user.
    let page = admin.post(&format!("/admin/users/{id}/delete"), &[]).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let page = admin
        .post(
            "/admin/users/0190b8a0-0000-7000-8000-000000000000/block",
            &[],
        )
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
}

/// A walk found the admin's lists stopping at 50 rows with no search, orders shown by customer
/// id and opening nothing, images that could be neither deleted nor made primary, and no way
/// to delete a product.
#[tokio::test]
async fn admins_search_open_an_order_and_manage_images_and_deletion() {
    let shop = Shop::from_env();
    let (admin, customer, email, product, order) = an_admin_and_an_order(&shop).await;

    // The order list names the customer and opens the order.
    let list = admin.get("/admin/orders").await;
    list.ok()
        .contains(&format!("href=\"/admin/orders/{order}\""))
        .contains(&format!("Sam Shopper &#60;{email}&#62;"));
    let path = format!("/admin/orders/{order}");
    let page = admin.get(&path).await;
    page.ok()
        .contains(&format!("id=\"customer\">Sam Shopper &#60;{email}&#62;"))
        .contains(&format!("href=\"/admin/products/{product}\""))
        .contains("Awaiting payment")
        .contains("No payment yet.")
        .contains("<strong>Placed</strong> — 1 line for");
    // Paid: the payment and each step are on the page.
    let card = payment_method("4242424242424242").await;
    let customer_path = format!("/orders/{order}");
    let paid = customer
        .post(
            &format!("{customer_path}/pay"),
            &[("payment_method", &card)],
        )
        .await;
    assert_eq!(paid.redirect(), customer_path);
    let page = admin.wait_for(&path, "<strong>Completed</strong>").await;
    page.contains("data-status=\"succeeded\"")
        .contains("<strong>Paid</strong>");
    let timeline = &page.body[page.body.find("id=\"timeline\"").unwrap()..];
    let placed = timeline.find("Placed").unwrap();
    let paid = timeline.find("Paid").unwrap();
    let completed = timeline.find("Completed").unwrap();
    assert!(placed < paid && paid < completed, "{timeline}");
    // Orders that do not exist, and the customer's own view of the admin page.
    for missing in [
        "/admin/orders/0190b8a0-0000-7000-8000-000000000000",
        "/admin/orders/not-an-order",
    ] {
        assert_eq!(
            admin.get(missing).await.status,
            StatusCode::NOT_FOUND,
            "{missing}"
        );
    }
    assert_eq!(customer.get(&path).await.status, StatusCode::FORBIDDEN);

    // Users by email or name.
    let found = admin
        .get(&format!("/admin/users?q={}", email.to_uppercase()))
        .await;
    found.ok().contains(&email).contains("1 user matches");
    let long = "x".repeat(101);
    admin
        .get(&format!("/admin/users?q={long}"))
        .await
        .ok()
        .contains("A search has at most 100 characters.");

    // A product with two pictures, found by a search.
    let title = unique("Lantern");
    let edit = admin
        .post(
            "/admin/products",
            &[
                ("title", &title),
                ("category", "home"),
                ("price", "30.00"),
                ("currency", "USD"),
                ("stock", "2"),
            ],
        )
        .await
        .redirect()
        .to_owned();
    let id = edit.strip_prefix("/admin/products/").unwrap().to_owned();
    let csrf = admin.csrf().await;
    for shade in [40, 200] {
        let form = multipart::Form::new().text("csrf", csrf.clone()).part(
            "file",
            multipart::Part::bytes(png(64, 64, [shade, 90, 10], [10, 90, shade]))
                .file_name("lantern.png")
                .mime_str("image/png")
                .unwrap(),
        );
        let page = Visitor::page(
            admin
                .http
                .post(admin.url(&format!("{edit}/images")))
                .multipart(form)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(page.redirect(), format!("{edit}?saved=image"));
    }
    admin
        .get(&format!("/admin/products?q={}", title.to_lowercase()))
        .await
        .ok()
        .contains(&format!("href=\"/admin/products/{id}\""))
        .contains("1 product matches");

    let keys = |product: &serde_json::Value| -> Vec<(String, bool)> {
        product["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["key"].as_str().unwrap().to_owned(),
                    i["primary"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    let images = keys(&admin.api(&format!("/api/products/{id}")).await);
    assert_eq!(
        images.iter().map(|i| i.1).collect::<Vec<_>>(),
        [true, false]
    );
    let (first, second) = (images[0].0.clone(), images[1].0.clone());
    let page = admin.get(&edit).await;
    page.contains(&format!("action=\"{edit}/images/{second}/primary\""))
        .contains(&format!("action=\"{edit}/images/{first}/delete\""));
    assert_eq!(
        admin
            .post(&format!("{edit}/images/{second}/primary"), &[])
            .await
            .redirect(),
        format!("{edit}?saved=primary")
    );
    admin
        .get(&format!("{edit}?saved=primary"))
        .await
        .contains("Primary image chosen.");
    assert_eq!(
        keys(&admin.api(&format!("/api/products/{id}")).await),
        [(first.clone(), false), (second.clone(), true)]
    );
    assert_eq!(
        admin
            .post(&format!("{edit}/images/{first}/delete"), &[])
            .await
            .redirect(),
        format!("{edit}?saved=image-deleted")
    );
    assert_eq!(
        keys(&admin.api(&format!("/api/products/{id}")).await),
        [(second.clone(), true)]
    );
    // An image that is gone, an action that does not exist, and no CSRF field.
    for path in [
        format!("{edit}/images/{first}/delete"),
        format!("{edit}/images/{second}/rotate"),
    ] {
        assert_eq!(
            admin.post(&path, &[]).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let forged = Visitor::page(
        admin
            .http
            .post(admin.url(&format!("{edit}/images/{second}/delete")))
            .form(&[("x", "1")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    // Deleting what the admin saw: an older version is refused with what changed.
    let page = admin
        .post(&format!("{edit}/delete"), &[("version", "1")])
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.body);
    page.contains("id=\"stale-delete\"")
        .contains("Press Delete again");
    assert!(!page.body.contains("save again"), "not the edit's conflict");
    let version = admin.api(&format!("/api/products/{id}")).await["version"].to_string();
    assert_eq!(
        admin
            .post(&format!("{edit}/delete"), &[("version", &version)])
            .await
            .redirect(),
        "/admin/products?saved=deleted"
    );
    admin
        .get("/admin/products?saved=deleted")
        .await
        .contains("Product deleted.");
    assert_eq!(
        admin.get(&format!("/products/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(admin.get(&edit).await.status, StatusCode::NOT_FOUND);
}

/// An event no consumer could apply (here: not even JSON) on the shop's products topic: the
/// admin finds it on the dead-letter page with its error, cannot replay it, and discards it once.
#[tokio::test]
async fn an_admin_finds_a_dead_letter_and_discards_it() {
    use rdkafka::{
        ClientConfig,
        producer::{FutureProducer, FutureRecord},
        util::Timeout,
    };
    let shop = Shop::from_env();
    let admin = Visitor::admin(&shop).await;
    let key = unique("poison");
    let producer: FutureProducer = ClientConfig::new()
        .set(
            "bootstrap.servers",
            std::env::var("STOREFRONT_TEST_KAFKA_BOOTSTRAP").unwrap(),
        )
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to("storefront.products")
                .key(&key)
                .payload("{not an event"),
            Timeout::After(std::time::Duration::from_secs(10)),
        )
        .await
        .unwrap();
    // Cart follows the products topic: its group dead-letters what it cannot read (so do
    // orders and notifications, in their own time).
    let find = |list: &serde_json::Value| {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["key"] == key.as_str())
            .cloned()
    };
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let letter = loop {
        if let Some(letter) = find(&admin.api("/api/cart/admin/dead-letters").await) {
            break letter;
        }
        assert!(
            std::time::Instant::now() < until,
            "cart never dead-lettered it"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(letter["status"], "open");
    assert!(
        letter["error"]
            .as_str()
            .unwrap()
            .contains("malformed event"),
        "{letter}"
    );
    let id = letter["id"].as_str().unwrap();
    let encoded: String = id.replace(':', "%3A");
    let base = format!("/admin/dead-letters/cart/{encoded}");
    let page = admin.get("/admin/dead-letters").await;
    page.ok()
        .contains(&format!("action=\"{base}/replay\""))
        .contains("id=\"group-cart\"");

    let page = admin.post(&format!("{base}/replay"), &[]).await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.body);
    page.contains("id=\"problem\"").contains("not an event");
    assert_eq!(
        admin.post(&format!("{base}/discard"), &[]).await.redirect(),
        "/admin/dead-letters?saved=discard"
    );
    admin
        .get("/admin/dead-letters?saved=discard")
        .await
        .contains("Discarded.")
        .contains(&format!(
            "data-dead-letter=\"{id}\" data-status=\"discarded\""
        ));
    let page = admin.post(&format!("{base}/discard"), &[]).await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    page.contains("discarded already");

    // Not a consuming service, not an action, not a letter; and not for customers.
    for path in [
        format!("/admin/dead-letters/auth/{encoded}/discard"),
        format!("{base}/forget"),
        "/admin/dead-letters/cart/storefront.products.dlq.cart%3A0%3A99999999/discard".to_owned(),
    ] {
        assert_eq!(
            admin.post(&path, &[]).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let customer = Visitor::new(&shop);
    customer.sign_up().await;
    assert_eq!(
        customer.get("/admin/dead-letters").await.status,
        StatusCode::FORBIDDEN
    );
    let response = customer
        .http
        .get(customer.url("/api/cart/admin/dead-letters"))
        .bearer_auth(customer.access_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // The other groups' copies are discarded too, so the shared shop keeps no open poison.
    let token = admin.access_token().unwrap();
    for service in ["orders", "notifications"] {
        let list = admin
            .api(&format!("/api/{service}/admin/dead-letters"))
            .await;
        if let Some(letter) = find(&list) {
            let id = letter["id"].as_str().unwrap().replace(':', "%3A");
            let response = admin
                .http
                .post(admin.url(&format!("/api/{service}/admin/dead-letters/{id}/discard")))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{service}");
        }
    }
}

/// The dashboard shows any window the services accept, and says so when it cannot (a walk found
/// `?days=14` and `?days=abc` both silently showing 30 days).
#[tokio::test]
async fn the_dashboard_shows_the_days_asked_for_or_says_why_not() {
    let shop = Shop::from_env();
    let admin = Visitor::admin(&shop).await;
    let page = admin.get("/admin?days=14").await;
    page.ok().contains("The last 14 days");
    assert!(!page.body.contains("id=\"days-note\""));
    for bad in ["abc", "0", "91", "-1", "1e1"] {
        let page = admin.get(&format!("/admin?days={bad}")).await;
        page.ok()
            .contains("The last 30 days")
            .contains("id=\"days-note\"")
            .contains("from 1 to 90");
    }
    // A customer is refused the page.
    let customer = Visitor::new(&shop);
    customer.sign_up().await;
    let page = customer.get("/admin").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
}
