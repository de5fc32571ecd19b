//! The admin pages through the running shop: the gate, products (create, edit with a version
//! conflict, stock, images), orders by status, users (block/unblock).

use reqwest::{StatusCode, multipart};
use storefront_kit::testing::unique;
use storefront_products::demo::png;

use crate::helpers::{PASSWORD, Shop, Visitor, a_product};

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
    assert_eq!(admin.post(&edit, &first).await.redirect(), edit);
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
        edit
    );
    admin.get(&edit).await.contains("12 available");

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
    assert_eq!(page.redirect(), edit);
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
    assert_eq!(page.redirect(), edit, "{}", page.body);
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

#[tokio::test]
async fn admin_orders_filter_by_status_and_users_can_be_blocked_and_unblocked() {
    let shop = Shop::from_env();
    let admin = Visitor::admin(&shop).await;
    let customer = Visitor::new(&shop);
    let email = customer.sign_up().await;
    let product = a_product(&customer).await;
    let order = customer.buy(&product, 1).await;

    let page = admin.get("/admin/orders?status=awaiting_payment").await;
    page.ok();
    let statuses = page.values("data-status", "");
    assert!(!statuses.is_empty());
    assert!(
        statuses.iter().all(|s| s == "awaiting_payment"),
        "{statuses:?}"
    );
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
