//! A database and user per service, on the test stack's MongoDB that demands authentication
//! (SecantusDB `--auth`): the service logs in with the connection string the operator writes,
//! works in its own database and is refused in another's.

use mongodb::{
    Client,
    bson::{Document, doc},
    error::ErrorKind,
};
use storefront_operator::databases::{
    DatabaseError, connect, drop, ensure_user, generate_password, service_uri,
};
use support::{unique, var};

mod support;

fn admin_uri() -> String {
    var("STOREFRONT_TEST_MONGODB_ADMIN_URI")
}

/// A database name no other test run uses.
fn database(service: &str) -> String {
    format!("{}_{service}", unique("t", '_'))
}

/// Logs in as the service and writes one document into `database`.
async fn write_as(uri: &str, database: &str) -> Result<(), mongodb::error::Error> {
    let client = Client::with_uri_str(uri).await?;
    client
        .database(database)
        .collection::<Document>("probe")
        .insert_one(doc! { "ok": true })
        .await
        .map(|_| ())
}

fn code(e: &mongodb::error::Error) -> Option<i32> {
    match *e.kind {
        ErrorKind::Command(ref c) => Some(c.code),
        _ => None,
    }
}

fn is_auth_failure(e: &mongodb::error::Error) -> bool {
    matches!(*e.kind, ErrorKind::Authentication { .. }) || code(e) == Some(18)
}

#[tokio::test]
async fn each_service_reaches_its_own_database_and_no_other() {
    let admin = admin_uri();
    let mongo = connect(&admin).await.unwrap();
    let (cart, orders) = (database("cart"), database("orders"));
    let cart_password = generate_password().unwrap();
    let orders_password = generate_password().unwrap();

    assert!(
        ensure_user(&mongo, &cart, "cart", &cart_password, true)
            .await
            .unwrap()
    );
    assert!(
        ensure_user(&mongo, &orders, "orders", &orders_password, true)
            .await
            .unwrap()
    );
    let cart_uri = service_uri(&admin, &cart, "cart", &cart_password).unwrap();
    assert!(
        cart_uri.contains(&format!("authSource={cart}")),
        "{cart_uri}"
    );
    assert!(!cart_uri.contains("root"), "{cart_uri}");

    write_as(&cart_uri, &cart).await.unwrap();
    let refused = write_as(&cart_uri, &orders).await.unwrap_err();
    assert_eq!(code(&refused), Some(13), "{refused}");
    let refused = write_as(&cart_uri, "admin").await.unwrap_err();
    assert_eq!(code(&refused), Some(13), "{refused}");

    // A wrong password is refused at login.
    let wrong = service_uri(&admin, &cart, "cart", "not-the-password").unwrap();
    assert!(is_auth_failure(&write_as(&wrong, &cart).await.unwrap_err()));

    // The user of orders with cart's password gets nowhere either.
    let crossed = service_uri(&admin, &orders, "orders", &cart_password).unwrap();
    assert!(is_auth_failure(
        &write_as(&crossed, &orders).await.unwrap_err()
    ));

    for (database, user) in [(&cart, "cart"), (&orders, "orders")] {
        drop(&mongo, database, user).await.unwrap();
    }
}

#[tokio::test]
async fn a_user_keeps_its_password_until_the_operator_resets_it() {
    let admin = admin_uri();
    let mongo = connect(&admin).await.unwrap();
    let products = database("products");
    let first = generate_password().unwrap();
    assert!(
        ensure_user(&mongo, &products, "products", &first, false)
            .await
            .unwrap()
    );
    // Steady state: the user exists, nothing is written, and another password is not taken.
    let second = generate_password().unwrap();
    assert!(
        !ensure_user(&mongo, &products, "products", &second, false)
            .await
            .unwrap()
    );
    let uri = |password: &str| service_uri(&admin, &products, "products", password).unwrap();
    write_as(&uri(&first), &products).await.unwrap();

    // The Secret was lost: the operator made a new password and resets the user to it.
    assert!(
        ensure_user(&mongo, &products, "products", &second, true)
            .await
            .unwrap()
    );
    write_as(&uri(&second), &products).await.unwrap();
    assert!(is_auth_failure(
        &write_as(&uri(&first), &products).await.unwrap_err()
    ));

    // Deletion drops the user and the database; dropping again is not an error.
    drop(&mongo, &products, "products").await.unwrap();
    assert!(is_auth_failure(
        &write_as(&uri(&second), &products).await.unwrap_err()
    ));
    let names = mongo.list_database_names().await.unwrap();
    assert!(!names.contains(&products), "{names:?}");
    drop(&mongo, &products, "products").await.unwrap();
}

#[tokio::test]
async fn a_wrong_administrator_or_a_dead_server_is_named() {
    let admin = admin_uri();
    let wrong = admin.replace("storefront-test-root", "wrong-password");
    assert_ne!(wrong, admin);
    match connect(&wrong).await {
        Err(DatabaseError::Refused(message)) => {
            assert!(message.to_lowercase().contains("auth"), "{message}")
        }
        other => panic!("{other:?}"),
    }

    // No administrator at all: the server answers, but not to a stranger.
    let anonymous = {
        let at = admin.find('@').unwrap();
        format!("mongodb://{}", &admin[at + 1..]).replace("&authSource=admin", "")
    };
    let refused = match connect(&anonymous).await {
        Ok(client) => ensure_user(&client, &database("auth"), "auth", "pw", false)
            .await
            .unwrap_err(),
        Err(e) => e,
    };
    assert!(
        matches!(
            refused,
            DatabaseError::Refused(_) | DatabaseError::Database { .. }
        ),
        "{refused:?}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    std::mem::drop(closed);
    let started = std::time::Instant::now();
    match connect(&format!(
        "mongodb://127.0.0.1:{port}/?directConnection=true"
    ))
    .await
    {
        Err(DatabaseError::Unreachable(message)) => assert!(!message.is_empty()),
        other => panic!("{other:?}"),
    }
    // Bounded: a reconcile never hangs on a MongoDB that is down.
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}
