//! The dereference step: the Secrets a Storefront refers to — the object store's keys, and each
//! database's administrator (the connection string an external database is given by, or the
//! password generated for a managed one) — read once, before the workloads and the external
//! resources are touched, so the steps after it work from values rather than from the API. A
//! reference that cannot be followed (no such Secret, no such key) is kept as the reason, for the
//! condition it turns false. The API failing on a database's administrator Secret fails the
//! reconcile; on the object store's, it is that condition's reason too (`StorageReady`), as a
//! bucket that cannot be made must not hold up the rest of the shop.

use super::*;

/// What the Storefront's references hold.
pub(super) struct Dereferenced {
    /// The object store's keys (`objectStorage.credentialsSecret`).
    pub(super) storage: Result<Credentials, StorageError>,
    /// Each database service's administrator connection string, by service.
    pub(super) database_admins: BTreeMap<&'static str, Result<String, DatabaseError>>,
}

/// Reads what `shop` refers to. A managed database's administrator password is the operator's
/// own Secret, generated before this step (`ensure_admin_password`).
pub(super) async fn dereference(secrets: &Api<Secret>, shop: &Shop) -> Result<Dereferenced, Error> {
    let storage = storage_credentials(secrets, shop).await;
    let mut database_admins = BTreeMap::new();
    // An external database's one connection string serves every service: read it once.
    let external = matches!(shop.databases, Databases::External { .. });
    let mut first: Option<Result<String, DatabaseError>> = None;
    for planned in shop.database_services() {
        let service = planned.service.name;
        let admin = match &first {
            Some(read) if external => read.clone(),
            _ => admin_uri(secrets, shop, service).await?,
        };
        first.get_or_insert_with(|| admin.clone());
        database_admins.insert(service, admin);
    }
    Ok(Dereferenced {
        storage,
        database_admins,
    })
}
