//! auth's HTTP API under `/api/users`. Each handler is a few lines: parse into domain types, call
//! the store, map to a response; errors are `storefront_kit::Error` and render as problem+json.

mod account;
mod admin;
mod cookies;
mod profile;
mod views;

use axum::{
    Router,
    routing::{get, post},
};
use serde_json::{Value, json};
use storefront_kit::openapi::{Access, Api};

use crate::AppState;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/users/signup", post(account::signup))
        .route("/api/users/signin", post(account::signin))
        .route("/api/users/signout", post(account::signout))
        .route("/api/users/refresh", post(account::refresh))
        .route("/api/users/currentuser", get(account::current_user))
        .route(
            "/api/users/profile",
            get(profile::show).patch(profile::update),
        )
        .route("/api/users/admin/users", get(admin::list))
        .route("/api/users/admin/users/{id}/block", post(admin::block))
        .route("/api/users/admin/users/{id}/unblock", post(admin::unblock))
        .route("/api/users/.well-known/jwks.json", get(account::jwks))
        .merge(storefront_kit::openapi::route(
            "/api/users/openapi.json",
            openapi,
        ))
        .with_state(state)
}

/// What every answer carrying a session sets, besides its body.
const SESSION_COOKIES: &str = "The answer also sets the cookies `sf_access` (the access token, \
    `Path=/`) and `sf_refresh` (the refresh token, `Path=/api/users`), both `HttpOnly; \
    SameSite=Lax` (and `Secure` unless the shop serves plain http), for browsers.";

/// auth's OpenAPI document: the operations above, in their order.
pub fn openapi() -> Value {
    let mut api = Api::new(
        "Storefront users",
        "Accounts, sessions and the keys every other service verifies access tokens with \
         (docs/api/auth.md).",
    );
    api.operation(
        "POST",
        "/api/users/signup",
        "signUp",
        "Create an account and sign in",
        |op| {
            op.access(Access::Public)
                .describe(&format!(
                    "Creates a customer account and a session for it. {SESSION_COOKIES}"
                ))
                .json::<account::SignupRequest>()
                .ok::<views::SessionView>(201, "The account, signed in")
                .problem(409, "An account with this email exists (`email-taken`).");
        },
    )
    .operation("POST", "/api/users/signin", "signIn", "Sign in", |op| {
        op.access(Access::Public)
            .describe(&format!(
                "Starts a session. Rate-limited: wrong passwords per email and attempts per \
                 client address are counted in fixed windows (5 per 15 minutes and 60 per \
                 minute by default); over either, 429 with `Retry-After` (seconds). \
                 {SESSION_COOKIES}"
            ))
            .json::<account::SigninRequest>()
            .ok::<views::SessionView>(200, "Signed in")
            .problem(
                401,
                "Wrong email or password, never which (`invalid-credentials`).",
            )
            .problem(403, "The account is blocked (`account-blocked`).")
            .problem(
                429,
                "Too many attempts from this address or failures for this email \
                 (`rate-limited`); `Retry-After` says when to try again.",
            );
    })
    .operation("POST", "/api/users/signout", "signOut", "Sign out", |op| {
        op.customer()
            .describe(
                "Revokes the access token (Bearer, or the `sf_access` cookie) at once in every \
                 service and ends its session, so its refresh token no longer works. Clears both \
                 cookies (`sf_access`, `sf_refresh`) with `Max-Age=0`.",
            )
            .empty(204, "Signed out");
    })
    .operation(
        "POST",
        "/api/users/refresh",
        "refreshSession",
        "Trade a refresh token for new tokens",
        |op| {
            op.access(Access::Public)
                .describe(&format!(
                    "The refresh token comes from the body `{{\"refresh_token\": \"…\"}}`, or, \
                     with an empty body, from the `sf_refresh` cookie (then the request needs \
                     this site's `Origin`, or `Sec-Fetch-Site: same-origin`, else 403 \
                     `cross-origin`). A non-empty body is read as JSON whatever its \
                     `Content-Type`. The token is spent and a new one returned; presenting a \
                     spent one again ends its whole session. {SESSION_COOKIES}"
                ))
                .body("application/json", refresh_body_schema())
                .ok::<views::SessionView>(200, "New tokens for the same session")
                .problem(
                    400,
                    "A body that is not JSON of this shape (`malformed-request`).",
                )
                .problem(413, "The body is larger than this endpoint takes.")
                .problem(
                    401,
                    "No refresh token in the body or the cookie (`unauthenticated`); unknown, \
                     expired or its session over (`invalid-refresh-token`); spent before, and \
                     its session is now ended (`refresh-token-reused`).",
                )
                .problem(
                    403,
                    "The account is blocked (`account-blocked`), or a cookie refresh from \
                     another origin (`cross-origin`).",
                );
        },
    )
    .operation(
        "GET",
        "/api/users/currentuser",
        "showCurrentUser",
        "Who the access token says you are",
        |op| {
            op.customer()
                .describe("Read from the token alone (no database read).")
                .ok::<views::CurrentUserView>(200, "The token's user and session");
        },
    )
    .operation(
        "GET",
        "/api/users/profile",
        "showProfile",
        "The signed-in user's account",
        |op| {
            op.customer()
                .ok::<views::UserView>(200, "The account")
                .problem(404, "The account no longer exists.");
        },
    )
    .operation(
        "PATCH",
        "/api/users/profile",
        "updateProfile",
        "Change name, phone or address",
        |op| {
            op.customer()
                .describe(
                    "Changes the fields present; `null` clears `phone` or `address`. At least \
                     one change is needed.",
                )
                .json::<profile::ProfilePatch>()
                .ok::<views::UserView>(200, "The account after the change")
                .problem(400, "Nothing to change (an empty object).")
                .problem(
                    422,
                    "Fields such as `name`, `phone` or `address.city` are named in `errors`.",
                )
                .problem(404, "The account no longer exists.");
        },
    )
    .operation(
        "GET",
        "/api/users/admin/users",
        "listUsers",
        "List users (admin)",
        |op| {
            op.admin()
                .problem(403, "Not an administrator (`admin-only`).")
                .query::<admin::ListQuery>()
                .ok::<admin::UserList>(200, "A page of users, oldest first")
                .problem(
                    400,
                    "An unknown query parameter, a repeated one, or `blocked` not `true`/`false` \
                     (`malformed-request`).",
                )
                .problem(
                    422,
                    "`page` or `per_page` is not a whole number in range, `q` is too long or has \
                     control characters, or `ids` is not up to 100 user ids (`validation`).",
                );
        },
    )
    .operation(
        "POST",
        "/api/users/admin/users/{id}/block",
        "blockUser",
        "Block a user (admin)",
        |op| {
            op.admin()
                .problem(403, "Not an administrator (`admin-only`).")
                .describe(
                    "Ends every session of the user and revokes their live access tokens; they \
                     cannot sign in or refresh until unblocked. Blocking a blocked user again \
                     is harmless. No body.",
                )
                .id("id", "The user")
                .ok::<views::UserView>(200, "The user, blocked")
                .problem(400, "The id is not valid percent-encoded UTF-8.")
                .problem(404, "No such user (or not a UUID).")
                .problem(
                    409,
                    "An admin cannot block their own account (`cannot-block-self`).",
                );
        },
    )
    .operation(
        "POST",
        "/api/users/admin/users/{id}/unblock",
        "unblockUser",
        "Unblock a user (admin)",
        |op| {
            op.admin()
                .problem(403, "Not an administrator (`admin-only`).")
                .describe("Unblocking an unblocked user again is harmless. No body.")
                .id("id", "The user")
                .ok::<views::UserView>(200, "The user, unblocked")
                .problem(400, "The id is not valid percent-encoded UTF-8.")
                .problem(404, "No such user (or not a UUID).");
        },
    )
    .operation(
        "GET",
        "/api/users/.well-known/jwks.json",
        "showJwks",
        "The public keys access tokens are signed with",
        |op| {
            op.access(Access::Public)
                .describe(
                    "A JSON Web Key Set (RFC 7517) of Ed25519 keys; every service verifies \
                     access tokens with it. Cacheable for 5 minutes.",
                )
                .answer(
                    200,
                    "The key set",
                    Some(("application/json", jwks_schema())),
                );
        },
    );
    let mut document = api.document();
    // The refresh token may come from the `sf_refresh` cookie instead, with no body at all.
    document["paths"]["/api/users/refresh"]["post"]["requestBody"]["required"] = false.into();
    document
}

/// The refresh body, inline: the handler reads it itself (any `Content-Type`, or none), so it
/// does not bring what [`storefront_kit::openapi::Operation::json`] does.
fn refresh_body_schema() -> Value {
    let mut schema = schemars::schema_for!(account::RefreshRequest).to_value();
    if let Some(schema) = schema.as_object_mut() {
        schema.remove("$schema");
    }
    schema
}

/// What `SigningKey::jwks` answers.
fn jwks_schema() -> Value {
    json!({
        "type": "object",
        "required": ["keys"],
        "properties": {
            "keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["kty", "crv", "alg", "use", "kid", "x"],
                    "properties": {
                        "kty": { "const": "OKP" },
                        "crv": { "const": "Ed25519" },
                        "alg": { "const": "EdDSA" },
                        "use": { "const": "sig" },
                        "kid": { "type": "string", "description": "The key id access tokens name in their header." },
                        "x": { "type": "string", "description": "The public key, base64url without padding." },
                    },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_openapi_document_is_whole() {
        let document = super::openapi();
        storefront_kit::openapi::assert_whole(&document, 11);
    }

    #[test]
    fn the_jwks_schema_names_what_the_key_set_has() {
        let pem = crate::keys::SigningKey::generate_pem().unwrap();
        let jwks = crate::keys::SigningKey::from_pem(&pem).unwrap().jwks();
        let key = jwks["keys"][0].as_object().unwrap();
        let schema = super::jwks_schema();
        let item = &schema["properties"]["keys"]["items"];
        let mut names: Vec<&str> = key.keys().map(String::as_str).collect();
        let mut required: Vec<&str> = item["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n.as_str())
            .collect();
        names.sort_unstable();
        required.sort_unstable();
        assert_eq!(names, required);
        for (name, value) in key {
            if let Some(constant) = item["properties"][name].get("const") {
                assert_eq!(constant, value, "{name}");
            }
        }
    }
}
