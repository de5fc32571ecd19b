//! The Secrets the operator writes: the token signing key, the admin's password, each
//! service's database credentials.

use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta};

use super::{ADMIN_SECRET, SIGNING_KEY_SECRET, metadata};
use crate::shop::Shop;

/// auth's signing key (`signing-key.pem`, an Ed25519 PKCS#8 PEM as `auth generate-key` writes).
pub fn signing_key_secret(shop: &Shop, pem: &str) -> Secret {
    opaque_secret(
        metadata(shop, shop.object_name(SIGNING_KEY_SECRET), "auth"),
        &[("signing-key.pem", pem)],
    )
}

/// The shop's first administrator: `admin@{host}` (`admin@{host}.local` for a one-label host
/// such as `localhost`: an e-mail domain needs a dot) and a generated password.
pub fn admin_secret(shop: &Shop, password: &str) -> Secret {
    let domain = if shop.host.contains('.') {
        shop.host.clone()
    } else {
        format!("{}.local", shop.host)
    };
    opaque_secret(
        metadata(shop, shop.object_name(ADMIN_SECRET), "auth"),
        &[
            ("email", &format!("admin@{domain}")),
            ("password", password),
        ],
    )
}

pub(super) fn opaque_secret(metadata: ObjectMeta, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata,
        type_: Some("Opaque".into()),
        data: Some(
            data.iter()
                .map(|(key, value)| {
                    let bytes = k8s_openapi::ByteString(value.as_bytes().to_vec());
                    ((*key).to_owned(), bytes)
                })
                .collect(),
        ),
        ..Secret::default()
    }
}

/// The Secret with a service's MongoDB connection string (key `uri`), written by the operator
/// when it creates the service's database user.
pub fn database_secret_name(shop: &Shop, service: &str) -> String {
    shop.object_name(&format!("{service}-mongodb"))
}

/// A service's database credentials: `uri` (what the service reads), and the parts of it.
pub fn database_secret(shop: &Shop, service: &str, password: &str, uri: &str) -> Secret {
    opaque_secret(
        metadata(shop, database_secret_name(shop, service), service),
        &[
            ("uri", uri),
            ("database", &shop.database_name(service)),
            ("username", service),
            ("password", password),
        ],
    )
}
