//! Every customer page through the gateway of the running shop, with the services behind it:
//! what each shows, and what bad input and strangers get.

use reqwest::StatusCode;

use crate::helpers::{PASSWORD, Shop, Visitor, a_product, payment_method};

#[tokio::test]
async fn the_catalog_shows_what_products_answers_for_each_search_filter_sort_and_page() {
    let visitor = Visitor::new(&Shop::from_env());
    let home = visitor.get("/").await;
    home.ok()
        .contains("<h1>Shop</h1>")
        .contains("<label for=\"site-search\"");
    for query in [
        "",
        "q=mug",
        "category=kitchen",
        "sort=price_asc",
        "sort=price_desc&in_stock=true",
        "page=2",
    ] {
        let page = visitor.get(&format!("/?{query}")).await;
        page.ok();
        let mut api_query = format!("per_page=12&{query}");
        if query.is_empty() {
            api_query.pop();
        }
        let expected = visitor.api(&format!("/api/products?{api_query}")).await;
        let ids: Vec<&str> = expected["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(page.values("href", "/products/"), ids, "?{query}");
        let total = expected["total"].as_i64().unwrap();
        let noun = if total == 1 { "product" } else { "products" };
        page.contains(&format!("{total} {noun}</p>"));
    }
    let sorted = visitor.get("/?sort=price_asc").await;
    let prices: Vec<f64> = sorted
        .texts("<span class=\"price\">")
        .iter()
        .map(|p| p.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(prices.len() > 1 && prices.is_sorted(), "{prices:?}");

    // The services' refusals come back as the page's error, with a 4xx.
    for (query, message) in [
        (
            "sort=cheapest",
            "Sort: one of newest, price_asc, price_desc",
        ),
        ("category=kitchen_ware", "category"),
        ("page=99999", "page"),
    ] {
        let page = visitor.get(&format!("/?{query}")).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "?{query}");
        page.contains("role=\"alert\"").contains(message);
    }
    // A page number that is not a number: the same.
    let page = visitor.get("/?page=two").await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// A walk found the category filter a fixed list ("outdoor" found nothing, the catalog's own
/// categories were missing, a product's category link left it on "All") and no price filter.
#[tokio::test]
async fn the_catalog_filters_by_its_own_categories_and_by_price() {
    let visitor = Visitor::new(&Shop::from_env());
    let categories = visitor.api("/api/products/categories").await;
    let names: Vec<&str> = categories["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["category"].as_str().unwrap())
        .collect();
    assert!(names.len() > 1, "{categories}");
    let home = visitor.get("/").await;
    for name in &names {
        home.contains(&format!("<option value=\"{name}\">"));
    }
    // A product's category link chooses that category in the filter.
    let id = a_product(&visitor).await;
    let product = visitor.api(&format!("/api/products/{id}")).await;
    let category = product["category"].as_str().unwrap();
    visitor
        .get(&format!("/products/{id}"))
        .await
        .contains(&format!("href=\"/?category={category}\""));
    for typed in [category.to_owned(), category.to_uppercase()] {
        visitor
            .get(&format!("/?category={typed}"))
            .await
            .ok()
            .contains(&format!("<option value=\"{category}\" selected>"));
    }

    // Prices as a shopper types them, in dollars; the API's bounds are in cents.
    let expected = visitor
        .api("/api/products?min_price=1000&max_price=2000&per_page=12")
        .await;
    let page = visitor.get("/?min_price=10&max_price=20.00").await;
    page.ok()
        .contains("name=\"min_price\" inputmode=\"decimal\" size=\"6\" value=\"10\"");
    let ids: Vec<&str> = expected["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(!ids.is_empty(), "the demo has products between $10 and $20");
    assert_eq!(page.values("href", "/products/"), ids);
    let total = expected["total"].as_i64().unwrap();
    page.contains(&format!(
        "{total} {}</p>",
        if total == 1 { "product" } else { "products" }
    ));
    let page = visitor.get("/?min_price=ten").await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.contains("role=\"alert\"").contains("Price from");
    // The API's refusal in the form's words, not its field names.
    let page = visitor.get("/?min_price=30&max_price=10").await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.contains("Price to:");
    assert!(!page.body.contains("max_price:"), "{}", page.body);
}

#[tokio::test]
async fn a_product_page_shows_the_product_and_an_unknown_one_is_a_404_page() {
    let visitor = Visitor::new(&Shop::from_env());
    let id = a_product(&visitor).await;
    let product = visitor.api(&format!("/api/products/{id}")).await;
    let page = visitor.get(&format!("/products/{id}")).await;
    page.ok()
        .contains(&format!("<h1>{}</h1>", product["title"].as_str().unwrap()))
        .contains("available")
        .contains("<label for=\"quantity\">");
    for missing in [
        "/products/0190b8a0-0000-7000-8000-000000000000",
        "/products/not-a-product",
    ] {
        let page = visitor.get(missing).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{missing}");
        assert!(page.content_type.starts_with("text/html"));
        page.contains("Back to the shop");
    }
}

#[tokio::test]
async fn sign_up_sign_out_and_sign_in_with_every_refusal_shown_next_to_its_field() {
    let shop = Shop::from_env();
    let visitor = Visitor::new(&shop);
    visitor
        .get("/signup")
        .await
        .ok()
        .contains("<label for=\"password\">");

    // Too short a password: 422, the error by the field, what was typed kept (not the password).
    let page = visitor
        .post(
            "/signup",
            &[
                ("name", "Pat"),
                ("email", "pat-short@example.com"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.contains("id=\"password-error\"")
        .contains("value=\"pat-short@example.com\"");
    assert!(!page.body.contains("value=\"short\""));

    let email = visitor.sign_up().await;
    visitor.get("/").await.contains("Sign out").contains(&email);

    // The same email again, from someone else: 409 by the email field.
    let other = Visitor::new(&shop);
    let page = other
        .post(
            "/signup",
            &[("name", "Pat"), ("email", &email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    page.contains("id=\"email-error\"");

    // Sign out: the session ends, pages that need one send to sign-in and come back after.
    assert_eq!(visitor.post("/signout", &[]).await.redirect(), "/");
    assert_eq!(
        visitor.get("/orders").await.redirect(),
        "/signin?next=%2Forders"
    );
    let page = visitor.sign_in(&email, "wrong-password-1").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    page.contains("role=\"alert\"")
        .contains(&format!("value=\"{email}\""));
    let page = visitor
        .post(
            "/signin",
            &[
                ("email", &email),
                ("password", PASSWORD),
                ("next", "/orders"),
            ],
        )
        .await;
    assert_eq!(page.redirect(), "/orders");
    visitor.get("/orders").await.ok().contains("No orders yet.");
}

/// Signing in and signing out each give a new CSRF token: one seen before (in a page, a log) is
/// worth nothing after.
#[tokio::test]
async fn signing_in_and_out_renews_the_csrf_token() {
    let shop = Shop::from_env();
    let visitor = Visitor::new(&shop);
    let before = visitor.csrf().await;
    visitor.sign_up().await;
    let signed_in = visitor.csrf().await;
    assert_ne!(before, signed_in);
    let stale = Visitor::page(
        visitor
            .http
            .post(visitor.url("/signout"))
            .form(&[("csrf", before.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN);
    assert_eq!(visitor.post("/signout", &[]).await.redirect(), "/");
    let signed_out = visitor.csrf().await;
    assert_ne!(signed_in, signed_out);
    assert_ne!(before, signed_out);
}

#[tokio::test]
async fn the_cart_adds_updates_and_removes_and_refuses_bad_quantities_on_the_page() {
    let shop = Shop::from_env();
    let visitor = Visitor::new(&shop);
    let product = a_product(&visitor).await;

    // Not signed in: adding sends to sign-in, back to the product after.
    let page = visitor
        .post(
            "/cart/items",
            &[("product_id", &product), ("quantity", "1")],
        )
        .await;
    assert_eq!(
        page.redirect(),
        format!("/signin?next=%2Fproducts%2F{product}")
    );

    visitor.sign_up().await;
    visitor
        .get("/cart")
        .await
        .ok()
        .contains("Your cart is empty.");
    let page = visitor
        .post(
            "/cart/items",
            &[("product_id", &product), ("quantity", "2")],
        )
        .await;
    assert_eq!(page.redirect(), "/cart");
    let cart = visitor.get("/cart").await;
    // The subtotal, and what it would cost as an order (the shop's pricing function).
    cart.ok()
        .contains("id=\"subtotal\"")
        .contains("id=\"estimate\"")
        .contains("Shipping");
    assert_eq!(
        cart.values(
            &format!(
                "id=\"q-{product}\" name=\"quantity\" type=\"number\" min=\"1\" max=\"100\" value"
            ),
            ""
        ),
        ["2"]
    );
    visitor
        .get("/")
        .await
        .contains("aria-label=\"Cart, 2 items\"");

    // Bad quantities: the cart page again with the reason, 422.
    for bad in ["lots", "0", "101", "-1"] {
        let page = visitor
            .post(&format!("/cart/items/{product}"), &[("quantity", bad)])
            .await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        page.contains("role=\"alert\"");
    }
    let page = visitor
        .post(
            "/cart/items",
            &[("product_id", &product), ("quantity", "many")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.contains("id=\"quantity-error\"");
    // A product that does not exist.
    let page = visitor
        .post(
            "/cart/items",
            &[
                ("product_id", "0190b8a0-0000-7000-8000-000000000000"),
                ("quantity", "1"),
            ],
        )
        .await;
    assert!(page.status.is_client_error(), "{}", page.status);

    assert_eq!(
        visitor
            .post(&format!("/cart/items/{product}"), &[("quantity", "3")])
            .await
            .redirect(),
        "/cart"
    );
    visitor
        .get("/")
        .await
        .contains("aria-label=\"Cart, 3 items\"");
    assert_eq!(
        visitor
            .post(&format!("/cart/items/{product}/remove"), &[])
            .await
            .redirect(),
        "/cart"
    );
    visitor.get("/cart").await.contains("Your cart is empty.");
    // Checking out an empty cart: refused on the cart page.
    let page = visitor
        .post("/cart/checkout", &[("checkout_key", "empty-cart-key-1")])
        .await;
    assert!(page.status.is_client_error(), "{}", page.status);
}

#[tokio::test]
async fn checkout_pay_by_card_and_the_order_completes_with_its_notifications() {
    let shop = Shop::from_env();
    let visitor = Visitor::new(&shop);
    visitor.sign_up().await;
    let product = a_product(&visitor).await;
    let order = visitor.buy(&product, 1).await;
    let path = format!("/orders/{order}");
    // The line left the cart for the order: the cart page says where it is.
    visitor
        .get("/cart")
        .await
        .ok()
        .contains("Your cart is empty.")
        .contains("1 item is checked out")
        .contains(&format!("href=\"/orders/{order}\""));
    let page = visitor.get(&path).await;
    page.ok()
        .contains("class=\"charge\"")
        .contains("Tax (8%)")
        .contains("id=\"payment-form\"")
        .contains("data-stripe-key=\"pk_test_storefront_local\"")
        .contains("/js.stripe.com/v3/")
        // The state in words, and until when it can be paid.
        .contains(">Awaiting payment<")
        .contains("id=\"pay-by\"");
    // Called by its own number, not by the start of its id.
    let number = visitor.api(&format!("/api/orders/{order}")).await["number"]
        .as_i64()
        .expect("an order number");
    page.contains(&format!("<h1>Order {number}</h1>"));
    let by = page.texts("<p id=\"pay-by\" data-payable>Pay by <strong>");
    assert!(by.first().is_some_and(|t| t.contains(" UTC on ")), "{by:?}");
    visitor
        .get("/orders")
        .await
        .ok()
        .contains(&format!("href=\"/orders/{order}\">{number}</a>"))
        .contains(">Awaiting payment<");

    // Someone else's order is not there for them (and the 404 page keeps their header).
    let stranger = Visitor::new(&shop);
    stranger.sign_up().await;
    let missing = stranger.get(&path).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains(">Sign out<"), "{}", missing.body);
    let page = stranger
        .post(&format!("{path}/pay"), &[("payment_method", "pm_x")])
        .await;
    assert!(page.status.is_client_error(), "{}", page.status);

    // No card (no JavaScript): asked for one. A card the bank declines at the charge (Stripe's
    // 4000000000000341, which the stand-in also declines): its answer by the field.
    let page = visitor.post(&format!("{path}/pay"), &[]).await;
    assert_eq!(page.status, StatusCode::PAYMENT_REQUIRED);
    page.contains("id=\"card-error\" role=\"alert\">Enter your card");
    // The decline comes back as a redirect to the order page (POST-redirect-GET: a reload does not
    // send the card again), which says why, from the payment.
    let declined = payment_method("4000000000000341").await;
    let page = visitor
        .post(&format!("{path}/pay"), &[("payment_method", &declined)])
        .await;
    assert_eq!(page.redirect(), path);
    visitor
        .get(&path)
        .await
        .ok()
        .contains("Your last payment did not go through")
        .contains("declined. Try again");
    visitor.get(&path).await.contains("id=\"payment-form\"");

    let card = payment_method("4242424242424242").await;
    let page = visitor
        .post(&format!("{path}/pay"), &[("payment_method", &card)])
        .await;
    assert_eq!(page.redirect(), path);
    visitor
        .wait_for(&path, "data-status=\"completed\"")
        .await
        .contains("id=\"thanks\"");
    assert!(!visitor.get(&path).await.body.contains("payment-form"));
    let notes = visitor.wait_for("/notifications", "complete").await;
    notes.contains("confirmed").contains(&path);
    let home = visitor.get("/").await;
    assert!(
        !home.body.contains("Notifications, 0 unread"),
        "the bell counts the unread"
    );
    assert_eq!(
        visitor.post("/notifications/read", &[]).await.redirect(),
        "/notifications"
    );
    visitor.get("/").await.contains("Notifications, 0 unread");

    // A paid order cannot be cancelled: the order page says why.
    let page = visitor.post(&format!("{path}/cancel"), &[]).await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.body);
    page.contains("id=\"order-error\"");
}

#[tokio::test]
async fn cancelling_an_unpaid_order_cancels_it_and_says_so() {
    let visitor = Visitor::new(&Shop::from_env());
    visitor.sign_up().await;
    let product = a_product(&visitor).await;
    let order = visitor.buy(&product, 1).await;
    let path = format!("/orders/{order}");
    assert_eq!(
        visitor
            .post(&format!("{path}/cancel"), &[])
            .await
            .redirect(),
        path
    );
    visitor.wait_for(&path, "data-status=\"cancelled\"").await;
    visitor.get(&path).await.ok().contains(">Cancelled<");
    visitor.wait_for("/notifications", "cancelled").await;
    // Paying it now is refused on the page.
    let card = payment_method("4242424242424242").await;
    let page = visitor
        .post(&format!("{path}/pay"), &[("payment_method", &card)])
        .await;
    assert!(page.status.is_client_error(), "{}", page.status);
    // An order id that is not one.
    assert_eq!(
        visitor.get("/orders/not-an-order").await.status,
        StatusCode::NOT_FOUND
    );
}

/// A probe signed up with `next` holding a newline: the account was made, then web answered 500
/// (a control character cannot go into a `Location` header). Such a `next` goes home.
#[tokio::test]
async fn signing_up_or_in_with_a_next_no_browser_should_follow_goes_home() {
    let shop = Shop::from_env();
    let email = format!("{}@example.com", storefront_kit::testing::unique("next"));
    let page = Visitor::new(&shop)
        .post(
            "/signup",
            &[
                ("name", "Nel Next"),
                ("email", &email),
                ("password", PASSWORD),
                ("next", "/\n/evil.example"),
            ],
        )
        .await;
    assert_eq!(page.redirect(), "/", "sign-up");
    for next in ["/\t/evil.example", "/orders\r\u{0}"] {
        let page = Visitor::new(&shop)
            .post(
                "/signin",
                &[("email", &email), ("password", PASSWORD), ("next", next)],
            )
            .await;
        assert_eq!(page.redirect(), "/", "sign-in, next {next:?}");
    }
}

/// A browser walk found the 404 and 403 pages showing a signed-in customer the signed-out header
/// ("Sign in", no cart, no bell), and no icon anywhere.
#[tokio::test]
async fn error_pages_keep_the_visitors_header_and_the_shop_has_an_icon() {
    let shop = Shop::from_env();
    let visitor = Visitor::new(&shop);
    visitor.sign_up().await;
    for (path, status) in [
        ("/no-such-page", StatusCode::NOT_FOUND),
        ("/admin/products", StatusCode::FORBIDDEN),
    ] {
        let page = visitor.get(path).await;
        assert_eq!(page.status, status, "{path}");
        assert!(page.body.contains(">Sign out<"), "{path}: {}", page.body);
        assert!(page.body.contains("id=\"cart-count\""), "{path}");
        assert!(!page.body.contains("href=\"/signin\""), "{path}");
    }
    // Signed out, the same page offers to sign in.
    let page = Visitor::new(&shop).get("/no-such-page").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("href=\"/signin\""));

    visitor
        .get("/")
        .await
        .ok()
        .contains("<link rel=\"icon\" href=\"/static/favicon.svg\"");
    for path in ["/static/favicon.svg", "/favicon.ico"] {
        let icon = visitor.get(path).await;
        assert_eq!(icon.status, StatusCode::OK, "{path}");
        assert_eq!(icon.content_type, "image/svg+xml", "{path}");
        assert!(icon.body.starts_with("<svg"), "{path}");
    }
}

/// The profile the API always had, on a page: name, phone and address, each refusal by its field,
/// "Saved." after a change (post-redirect-get), and emptied fields clear what they held.
#[tokio::test]
async fn the_account_page_keeps_the_customers_name_phone_and_address() {
    let shop = Shop::from_env();
    let signed_out = Visitor::new(&shop).get("/account").await;
    assert!(
        signed_out.redirect().starts_with("/signin?next=%2Faccount"),
        "{:?}",
        signed_out.location
    );

    let visitor = Visitor::new(&shop);
    let email = visitor.sign_up().await;
    visitor
        .get("/")
        .await
        .ok()
        .contains("<a href=\"/account\">Account</a>");
    visitor
        .get("/account")
        .await
        .ok()
        .contains(&email)
        .contains("value=\"Sam Shopper\"");

    let address = [
        ("line1", "12 Chausseestraße"),
        ("line2", ""),
        ("city", "Berlin"),
        ("postal_code", "10115"),
        ("country", "de"),
    ];
    let mut form = vec![("name", "Ada Lovelace"), ("phone", "+49 (30) 123-4567")];
    form.extend_from_slice(&address);
    assert_eq!(
        visitor.post("/account", &form).await.redirect(),
        "/account?saved=1"
    );
    visitor
        .get("/account?saved=1")
        .await
        .ok()
        .contains("id=\"saved\"")
        .contains("value=\"Ada Lovelace\"")
        .contains("value=\"+49301234567\"")
        .contains("value=\"Berlin\"")
        .contains("value=\"DE\"");
    let profile = visitor.api("/api/users/profile").await;
    assert_eq!(profile["name"], "Ada Lovelace");
    assert_eq!(profile["address"]["city"], "Berlin");

    // Refusals by their fields, what was typed kept; nothing saved.
    let page = visitor
        .post(
            "/account",
            &[
                ("name", "Ada Lovelace"),
                ("phone", "12"),
                ("line1", "1 Main Street"),
                ("city", ""),
                ("postal_code", ""),
                ("country", "Germany"),
            ],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.body
    );
    for field in ["phone-error", "city-error", "country-error"] {
        assert!(page.body.contains(&format!("id=\"{field}\"")), "{field}");
    }
    // In words a person uses, as a sentence (not "postal_code is required").
    let errors = page.texts("<p class=\"error\" id=\"postal_code-error\">");
    assert_eq!(errors, ["The postal code is required"]);
    assert!(page.body.contains("value=\"1 Main Street\""));
    assert_eq!(
        visitor.api("/api/users/profile").await["phone"],
        "+49301234567"
    );

    // Emptied, the phone and the address are gone.
    assert_eq!(
        visitor
            .post("/account", &[("name", "Ada Lovelace"), ("phone", "")])
            .await
            .redirect(),
        "/account?saved=1"
    );
    let profile = visitor.api("/api/users/profile").await;
    assert!(profile["phone"].is_null(), "{profile}");
    assert!(profile["address"].is_null(), "{profile}");
}

/// A browser walk found the cart's totals silently leaving out a line marked "Only 12 available"
/// (more asked for than there is): the page says so, beside the totals.
#[tokio::test]
async fn a_line_left_out_of_the_totals_is_said_to_be() {
    let shop = Shop::from_env();
    let visitor = Visitor::new(&shop);
    visitor.sign_up().await;
    // A demo product with less in stock than a cart line may ask for (100).
    let list = visitor
        .api("/api/products?in_stock=true&per_page=100")
        .await;
    let (product, available) = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|p| {
            let available = p["available"].as_i64()?;
            (1..100)
                .contains(&available)
                .then(|| (p["id"].as_str().unwrap().to_owned(), available))
        })
        .expect("a product with 1 to 99 in stock");
    let add = |quantity: String| {
        let (visitor, product) = (&visitor, product.clone());
        async move {
            visitor
                .post(
                    "/cart/items",
                    &[("product_id", &product), ("quantity", &quantity)],
                )
                .await
        }
    };
    assert_eq!(add("1".into()).await.redirect(), "/cart");
    let cart = visitor.get("/cart").await;
    assert!(!cart.ok().body.contains("id=\"not-counted\""));
    assert_eq!(add(available.to_string()).await.redirect(), "/cart");
    visitor
        .get("/cart")
        .await
        .ok()
        .contains("available</span>")
        .contains("id=\"not-counted\"");
}
