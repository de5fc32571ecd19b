//! The Ed25519 key that signs access tokens, and the JWKS that publishes its public half.
//!
//! The key is a PKCS#8 PEM (`SIGNING_KEY_FILE` or `SIGNING_KEY_PEM`); in a cluster the operator
//! generates it once into a Secret, locally `cargo xtask up` does (`auth generate-key`). The key id
//! is derived from the public key, so it is stable across restarts and changes only with the key.

use std::collections::HashMap;
use storefront_events::UserId;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use ring::{
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair},
};
use serde_json::json;
use sha2::{Digest, Sha256};
use storefront_kit::auth::{Claims, ISSUER, Role};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the signing key is not a PEM file: {0}")]
    Pem(#[from] pem::PemError),
    #[error("the signing key is not an Ed25519 PKCS#8 private key")]
    NotEd25519,
    #[error("cannot generate a key")]
    Generate,
}

pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public key, base64url: the JWK `x`.
    x: String,
}

impl SigningKey {
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let pem = pem::parse(text)?;
        if pem.tag() != "PRIVATE KEY" {
            return Err(KeyError::NotEd25519);
        }
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pem.contents())
            .map_err(|_| KeyError::NotEd25519)?;
        let public = pair.public_key().as_ref();
        let x = URL_SAFE_NO_PAD.encode(public);
        let kid = hex(&Sha256::digest(public)[..8]);
        let encoding =
            EncodingKey::from_ed_pem(text.as_bytes()).map_err(|_| KeyError::NotEd25519)?;
        let decoding = DecodingKey::from_ed_components(&x).map_err(|_| KeyError::NotEd25519)?;
        Ok(SigningKey {
            kid,
            encoding,
            decoding,
            x,
        })
    }

    /// A fresh key as PKCS#8 PEM.
    pub fn generate_pem() -> Result<String, KeyError> {
        let der =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Generate)?;
        Ok(pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            der.as_ref().to_vec(),
        )))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The verification keys by `kid`, for auth's own [`storefront_kit::auth::Authenticator`].
    pub fn decoding_keys(&self) -> HashMap<String, DecodingKey> {
        HashMap::from([(self.kid.clone(), self.decoding.clone())])
    }

    /// The JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "use": "sig",
                "kid": self.kid,
                "x": self.x,
            }]
        })
    }

    /// Signs an access token for `user` in session `sid`, valid for `ttl` from `now`.
    pub fn access_token(
        &self,
        user: &TokenSubject,
        sid: Uuid,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> (String, Claims) {
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub: user.id,
            email: user.email.clone(),
            role: user.role,
            jti: Uuid::new_v4(),
            sid,
            iat: now.timestamp(),
            exp: (now + ttl).timestamp(),
        };
        (self.sign(&claims), claims)
    }

    /// Signs arbitrary claims (tests mint expired or odd tokens with this).
    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .expect("Ed25519 signing of serialisable claims cannot fail")
    }
}

/// Who a token is for.
pub struct TokenSubject {
    pub id: UserId,
    pub email: String,
    pub role: Role,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An opaque refresh token: 32 random bytes, base64url. Only its SHA-256 is stored.
pub fn new_refresh_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn refresh_token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_have_a_stable_kid() {
        let pem = SigningKey::generate_pem().unwrap();
        let a = SigningKey::from_pem(&pem).unwrap();
        let b = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(a.kid(), b.kid());
        assert_eq!(a.jwks()["keys"][0]["x"], b.jwks()["keys"][0]["x"]);
    }

    #[test]
    fn non_keys_are_refused() {
        assert!(SigningKey::from_pem("not a pem").is_err());
        let cert = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
        assert!(matches!(
            SigningKey::from_pem(&cert),
            Err(KeyError::NotEd25519)
        ));
    }
}
