//! A MongoDB database and user per service (the MongoDB Community operator's pattern): the user
//! has `readWrite` on its own database and nothing else, and its connection string is written into
//! a Secret the service mounts. Made with the `mongodb` driver and an admin connection string.

use std::time::Duration;

use mongodb::{
    Client,
    bson::{Document, doc},
    error::ErrorKind,
    options::ClientOptions,
};

/// MongoDB's error codes the operator tells apart.
const UNAUTHORIZED: i32 = 13;
const USER_NOT_FOUND: i32 = 11;
const USER_EXISTS: i32 = 51003;

fn code(e: &mongodb::error::Error) -> Option<i32> {
    match *e.kind {
        ErrorKind::Command(ref c) => Some(c.code),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error, Clone)]
pub enum DatabaseError {
    #[error("secret {secret}: {reason}")]
    Credentials { secret: String, reason: String },
    #[error("MongoDB unreachable: {0}")]
    Unreachable(String),
    #[error("MongoDB refused the administrator: {0}")]
    Refused(String),
    #[error("database {database}: {reason}")]
    Database { database: String, reason: String },
}

/// How long one attempt may wait for the server: a reconcile must not hang on a MongoDB that is
/// down; the condition says so and the next reconcile tries again.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A client with the admin connection string, checked with a `ping`.
pub async fn connect(admin_uri: &str) -> Result<Client, DatabaseError> {
    let mut options = ClientOptions::parse(admin_uri)
        .await
        .map_err(|e| DatabaseError::Unreachable(format!("connection string: {e}")))?;
    options.app_name = Some("storefront-operator".into());
    options.server_selection_timeout = Some(TIMEOUT);
    options.connect_timeout = Some(TIMEOUT);
    let client =
        Client::with_options(options).map_err(|e| DatabaseError::Unreachable(e.to_string()))?;
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .map_err(|e| match *e.kind {
            ErrorKind::Authentication { .. } => DatabaseError::Refused(e.to_string()),
            ErrorKind::Command(ref c) if c.code == UNAUTHORIZED => {
                DatabaseError::Refused(e.to_string())
            }
            _ => DatabaseError::Unreachable(e.to_string()),
        })?;
    Ok(client)
}

fn failed(database: &str) -> impl Fn(mongodb::error::Error) -> DatabaseError + '_ {
    move |e| DatabaseError::Database {
        database: database.to_owned(),
        reason: e.to_string(),
    }
}

/// Whether `user` (defined on `database`) exists.
async fn user_exists(client: &Client, database: &str, user: &str) -> Result<bool, DatabaseError> {
    let info = client
        .database(database)
        .run_command(doc! { "usersInfo": user })
        .await
        .map_err(failed(database))?;
    Ok(info.get_array("users").is_ok_and(|users| !users.is_empty()))
}

/// What the user may do: read and write its own database, nothing more.
fn roles(database: &str) -> Vec<Document> {
    vec![doc! { "role": "readWrite", "db": database }]
}

/// Makes `user` exist on `database` with `password`. A user that exists keeps its password unless
/// `reset` (the operator made a new password because the Secret holding the old one is gone).
/// Answers whether it wrote anything.
pub async fn ensure_user(
    client: &Client,
    database: &str,
    user: &str,
    password: &str,
    reset: bool,
) -> Result<bool, DatabaseError> {
    let db = client.database(database);
    let update = doc! { "updateUser": user, "pwd": password, "roles": roles(database) };
    if user_exists(client, database, user).await? {
        if !reset {
            return Ok(false);
        }
        db.run_command(update).await.map_err(failed(database))?;
        return Ok(true);
    }
    let create = doc! { "createUser": user, "pwd": password, "roles": roles(database) };
    match db.run_command(create).await {
        Ok(_) => Ok(true),
        // Made meanwhile by another writer: ours is the password to keep only if we were to reset.
        Err(e) if code(&e) == Some(USER_EXISTS) && reset => {
            db.run_command(update).await.map_err(failed(database))?;
            Ok(true)
        }
        Err(e) if code(&e) == Some(USER_EXISTS) => Ok(false),
        Err(e) => Err(failed(database)(e)),
    }
}

/// Drops the user and its database (`deletionPolicy: Delete`). Either may already be gone.
pub async fn drop(client: &Client, database: &str, user: &str) -> Result<(), DatabaseError> {
    let db = client.database(database);
    if let Err(e) = db.run_command(doc! { "dropUser": user }).await
        && code(&e) != Some(USER_NOT_FOUND)
    {
        return Err(failed(database)(e));
    }
    db.drop().await.map_err(failed(database))
}

/// The service's connection string: the admin string's hosts and options, with the service's
/// user, its database as the path and as `authSource` (the admin's credentials, `authSource` and
/// mechanism are not carried over).
pub fn service_uri(
    admin_uri: &str,
    database: &str,
    user: &str,
    password: &str,
) -> Result<String, String> {
    let (scheme, rest) = admin_uri
        .split_once("://")
        .filter(|(scheme, _)| matches!(*scheme, "mongodb" | "mongodb+srv"))
        .ok_or("not a mongodb:// or mongodb+srv:// connection string")?;
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    if hosts.is_empty() {
        return Err("the connection string names no host".into());
    }
    let query = tail.split_once('?').map_or("", |(_, query)| query);
    let mut options: Vec<String> = query
        .split('&')
        .filter(|option| {
            let name = option.split('=').next().unwrap_or("").to_ascii_lowercase();
            !option.is_empty() && !name.starts_with("authsource") && !name.starts_with("authmech")
        })
        .map(str::to_owned)
        .collect();
    options.push(format!("authSource={database}"));
    Ok(format!(
        "{scheme}://{}:{}@{hosts}/{database}?{}",
        encode(user),
        encode(password),
        options.join("&")
    ))
}

/// Percent-encodes what may not stand in a connection string's user information.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A new password: 32 random bytes, hex.
pub fn generate_password() -> Result<String, ring::error::Unspecified> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_string_keeps_hosts_and_options_but_not_the_admin() {
        assert_eq!(
            service_uri(
                "mongodb://root:s3cret@db-0.db:27017,db-1.db:27017/admin?replicaSet=rs0&authSource=admin&authMechanism=SCRAM-SHA-1",
                "prod_shop_cart",
                "cart",
                "p@ss",
            )
            .unwrap(),
            "mongodb://cart:p%40ss@db-0.db:27017,db-1.db:27017/prod_shop_cart?replicaSet=rs0&authSource=prod_shop_cart"
        );
        assert_eq!(
            service_uri("mongodb+srv://cluster.example.com", "d", "u", "p").unwrap(),
            "mongodb+srv://u:p@cluster.example.com/d?authSource=d"
        );
        assert!(service_uri("postgres://x", "d", "u", "p").is_err());
        assert!(service_uri("mongodb://user@/x", "d", "u", "p").is_err());
    }

    #[test]
    fn passwords_are_long_and_different() {
        let (a, b) = (generate_password().unwrap(), generate_password().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
