//! The resources outside the cluster's API a shop needs — Kafka topics, a database and user
//! per service, the bucket — and the Secrets they are reached with.

use super::*;

/// What became of the external resources in this reconcile.
pub(super) struct External {
    pub(super) topics: Result<Topics, TopicError>,
    /// The databases made ready.
    pub(super) databases: Result<Vec<String>, DatabaseError>,
    pub(super) bucket: Result<(), StorageError>,
}

/// Makes the bucket with the object store's keys (read in the dereference step).
pub(super) async fn ensure_bucket(
    shop: &Shop,
    credentials: &Credentials,
) -> Result<bool, StorageError> {
    storage::ensure_bucket(
        &shop.object_storage.endpoint,
        credentials,
        &shop.object_storage.bucket,
    )
    .await
}

/// The object store's keys from `objectStorage.credentialsSecret` (the dereference step).
pub(super) async fn storage_credentials(
    secrets: &Api<Secret>,
    shop: &Shop,
) -> Result<Credentials, StorageError> {
    let name = &shop.object_storage.credentials_secret;
    let problem = |reason: String| StorageError::Credentials {
        secret: name.clone(),
        reason,
    };
    let value = |key: &str| {
        let reference = SecretKeyRef {
            name: name.clone(),
            key: key.to_owned(),
        };
        async move {
            secret_value(secrets, &reference)
                .await
                .map_err(|e| match e {
                    // The condition names the Secret already.
                    Error::Secret { source, .. } => problem(source.to_string()),
                    other => problem(other.to_string()),
                })?
                .map_err(problem)
        }
    };
    Ok(Credentials {
        access_key: value("accessKey").await?,
        secret_key: value("secretKey").await?,
    })
}

/// The value of a Secret's key, trimmed (a dereference of the spec).
pub(super) async fn secret_value(
    api: &Api<Secret>,
    reference: &SecretKeyRef,
) -> Result<Result<String, String>, Error> {
    let Some(secret) = api
        .get_opt(&reference.name)
        .await
        .map_err(Error::secret(&reference.name))?
    else {
        return Ok(Err("not found".into()));
    };
    Ok(secret
        .data
        .unwrap_or_default()
        .get(&reference.key)
        .map(|bytes| String::from_utf8_lossy(&bytes.0).trim().to_owned())
        .filter(|value| !value.is_empty())
        .ok_or_else(|| format!("no key {}", reference.key)))
}

/// The administrator's connection string for a service's database: the Secret the spec names
/// (`external`), or the managed database's own (`managed`).
pub(super) async fn admin_uri(
    api: &Api<Secret>,
    shop: &Shop,
    service: &str,
) -> Result<Result<String, DatabaseError>, Error> {
    let reference = admin_reference(shop, service);
    Ok(match secret_value(api, &reference).await? {
        Ok(password) if matches!(shop.databases, Databases::Managed { .. }) => {
            Ok(build::database_admin_uri(shop, service, &password))
        }
        Ok(uri) => Ok(uri),
        Err(reason) => Err(DatabaseError::Credentials {
            secret: reference.name,
            reason,
        }),
    })
}

/// Where the administrator's credentials for a service's database are: the connection string
/// the spec names (`external`), or the managed database's generated password (`managed`).
pub(super) fn admin_reference(shop: &Shop, service: &str) -> SecretKeyRef {
    match &shop.databases {
        Databases::External { admin_uri } => admin_uri.clone(),
        Databases::Managed { .. } => SecretKeyRef {
            name: build::database_admin_secret_name(shop, service),
            key: "password".into(),
        },
    }
}

/// Each service's database user, made with the administrator's connection and written as the
/// Secret `{name}-{service}-mongodb` the service reads (`uri`). The user is made before its Secret,
/// so a Secret always holds a password the database knows; a Secret that is gone gets a new
/// password. Answers the databases made ready; Kubernetes API errors fail the reconcile, the
/// database's own errors go to `DatabasesReady`.
pub(super) async fn ensure_databases(
    to: &Target<'_>,
    shop: &Shop,
    mut admins: BTreeMap<&'static str, Result<String, DatabaseError>>,
) -> Result<Result<Vec<String>, DatabaseError>, Error> {
    let secrets: Api<Secret> = to.api();
    let mut connected: Option<(String, mongodb::Client)> = None;
    let mut ready = Vec::new();
    for planned in shop.database_services() {
        let service = planned.service.name;
        // Read in the dereference step, for every service `database_services` names.
        let admin = match admins.remove(service).unwrap_or_else(|| {
            Err(DatabaseError::Credentials {
                secret: admin_reference(shop, service).name,
                reason: "not read".into(),
            })
        }) {
            Ok(uri) => uri,
            Err(e) => return Ok(Err(e)),
        };
        let mongo = match connected.take() {
            Some((uri, client)) if uri == admin => client,
            _ => match databases::connect(&admin).await {
                Ok(client) => client,
                Err(e) => return Ok(Err(e)),
            },
        };
        let database = shop.database_name(service);
        let name = build::database_secret_name(shop, service);
        let known = secrets
            .get_opt(&name)
            .await
            .map_err(Error::secret(&name))?
            .and_then(|secret| {
                secret
                    .data?
                    .get("password")
                    .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
                    .filter(|password| !password.is_empty())
            });
        let (password, reset) = match known {
            Some(password) => (password, false),
            None => (
                databases::generate_password().map_err(|_| Error::KeyGeneration)?,
                true,
            ),
        };
        let uri = match databases::service_uri(&admin, &database, service, &password) {
            Ok(uri) => uri,
            Err(reason) => {
                return Ok(Err(DatabaseError::Credentials {
                    secret: admin_reference(shop, service).name,
                    reason,
                }));
            }
        };
        match databases::ensure_user(&mongo, &database, service, &password, reset).await {
            Ok(true) => {
                let note = format!("user {service} on database {database}");
                to.event(Normal, "DatabaseUserReady", "MongoDB", note).await;
            }
            Ok(false) => {}
            Err(e) => return Ok(Err(e)),
        }
        ensure(to, build::database_secret(shop, service, &password, &uri)).await?;
        connected = Some((admin, mongo));
        ready.push(database);
    }
    Ok(Ok(ready))
}

/// Drops each service's user and database (`deletionPolicy: Delete`), one attempt each.
pub(super) async fn drop_databases(
    client: &Client,
    namespace: &str,
    shop: &Shop,
) -> Result<(), String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut failures = Vec::new();
    for planned in shop.database_services() {
        let service = planned.service.name;
        let database = shop.database_name(service);
        let result = async {
            let admin = admin_uri(&secrets, shop, service)
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let mongo = databases::connect(&admin)
                .await
                .map_err(|e| e.to_string())?;
            databases::drop(&mongo, &database, service)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = result {
            failures.push(format!("{database}: {e}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// A managed database's administrator password, generated once into `{name}-{service}-db-admin`
/// (the database is initialised with it on its first start, so it must never change).
pub(super) async fn ensure_admin_password(
    to: &Target<'_>,
    shop: &Shop,
    service: &str,
) -> Result<(), Error> {
    create_once(
        to,
        &build::database_admin_secret_name(shop, service),
        || {
            let password = databases::generate_password().map_err(|_| Error::KeyGeneration)?;
            Ok(build::database_admin_secret(shop, service, &password))
        },
    )
    .await
}

/// Creates the Secret `name` with what `make` answers, unless it exists; never changes one that
/// does (another replica's or a person's stays). `make` runs only when the Secret is missing.
pub(super) async fn create_once(
    to: &Target<'_>,
    name: &str,
    make: impl FnOnce() -> Result<Secret, Error>,
) -> Result<(), Error> {
    let api: Api<Secret> = to.api();
    if api
        .get_metadata_opt(name)
        .await
        .map_err(Error::secret(name))?
        .is_some()
    {
        return Ok(());
    }
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    match api.create(&params, &make()?).await {
        Ok(_) => {
            to.child_event::<Secret>("Created", "Create", name).await;
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(Error::secret(name)(e)),
    }
}

/// auth's signing key, generated once into `{name}-jwt`. Created, never applied: an existing
/// Secret is left exactly as it is, because a new key would sign every customer out (rotation is
/// a deliberate act: replace the Secret's key by hand).
pub(super) async fn ensure_signing_key(to: &Target<'_>, shop: &Shop) -> Result<(), Error> {
    create_once(to, &shop.object_name(build::SIGNING_KEY_SECRET), || {
        let random = ring::rand::SystemRandom::new();
        let der = ring::signature::Ed25519KeyPair::generate_pkcs8(&random)
            .map_err(|_| Error::KeyGeneration)?;
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
        Ok(build::signing_key_secret(shop, &pem))
    })
    .await
}

/// The shop's first administrator, generated once into `{name}-admin` (`admin@{host}` and a
/// random password) unless the platform engineer made that Secret first with their own.
pub(super) async fn ensure_shop_admin(to: &Target<'_>, shop: &Shop) -> Result<(), Error> {
    create_once(to, &shop.object_name(build::ADMIN_SECRET), || {
        let password = databases::generate_password().map_err(|_| Error::KeyGeneration)?;
        Ok(build::admin_secret(shop, &password))
    })
    .await
}
