//! One error type for every handler, rendered as RFC 9457 `application/problem+json`.
//!
//! Handlers return `Result<_, Error>` and use `?`; the mapping to a status code, a stable `type`
//! and a human `detail` lives here only. Internal errors are logged with their cause and answered
//! with a generic 500 that leaks nothing.

use std::time::Duration;

use axum::{
    extract::{FromRequest, Request, rejection::JsonRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};

/// The base of every problem `type` URI; the slug after it is the stable part clients match on.
pub const PROBLEM_BASE: &str = "https://storefront.dev/problems/";

/// One invalid input field: which, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 422: the body parsed but some fields are invalid.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 400: the request is malformed (bad JSON, unknown fields, bad query).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid credentials. `kind` is the problem slug (`unauthenticated`, `token-expired`…).
    #[error("{detail}")]
    Unauthorized { kind: &'static str, detail: String },
    /// 403: authenticated, but not allowed.
    #[error("{detail}")]
    Forbidden { kind: &'static str, detail: String },
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: conflicts with current state (duplicate email, …).
    #[error("{detail}")]
    Conflict { kind: &'static str, detail: String },
    /// 402: the payment provider declined the payment; the detail is its reason.
    #[error("{0}")]
    PaymentDeclined(String),
    /// 412: the `If-Match` precondition failed (someone else changed the resource first).
    #[error("{0}")]
    PreconditionFailed(String),
    /// 428: the write must name the version it changes with `If-Match`.
    #[error("{0}")]
    PreconditionRequired(String),
    /// 413.
    #[error("request body exceeds this endpoint's size limit")]
    PayloadTooLarge,
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429 with `Retry-After`.
    #[error("too many attempts, retry in {} s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// 503: a dependency the request needs is down (we fail closed).
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected backend failure. Logged with its whole chain of causes,
    /// never shown.
    #[error("internal error: {0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// A 500 for `cause` (an error, kept whole with its sources, or a message).
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Internal(cause.into())
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Error::Validation(vec![FieldError::new(field, message)])
    }

    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Error::Unauthorized {
            kind: "unauthenticated",
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::PaymentDeclined(_) => StatusCode::PAYMENT_REQUIRED,
            Error::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Error::PreconditionRequired(_) => StatusCode::PRECONDITION_REQUIRED,
            Error::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable problem slug.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Validation(_) => "validation",
            Error::BadRequest(_) => "malformed-request",
            Error::Unauthorized { kind, .. }
            | Error::Forbidden { kind, .. }
            | Error::Conflict { kind, .. } => kind,
            Error::NotFound(_) => "not-found",
            Error::PaymentDeclined(_) => "card-declined",
            Error::PreconditionFailed(_) => "version-mismatch",
            Error::PreconditionRequired(_) => "if-match-required",
            Error::PayloadTooLarge => "payload-too-large",
            Error::UnsupportedMediaType(_) => "unsupported-media-type",
            Error::RateLimited { .. } => "rate-limited",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal",
        }
    }
}

/// The problem+json body (RFC 9457): every error answer of every service.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Problem<'a> {
    /// `https://storefront.dev/problems/{slug}`; the slug is the stable part to match on.
    #[serde(rename = "type")]
    type_uri: String,
    /// The status's reason phrase.
    title: &'a str,
    /// The HTTP status.
    status: u16,
    /// What went wrong, for a person.
    detail: String,
    /// A validation problem's invalid fields (422 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
}

/// `error` and each of its sources, `: `-separated (what a log line needs to say why).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        // A wrapper that prints its source's text already (`{0}`) adds nothing.
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            Error::Internal(cause) => {
                tracing::error!(error = %chain(cause.as_ref()), "internal error");
                "something went wrong on our side; it has been logged".to_owned()
            }
            Error::Unavailable(cause) => {
                tracing::warn!(error = %cause, "dependency unavailable");
                self.to_string()
            }
            Error::Validation(fields) => {
                let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
                format!("invalid fields: {}", names.join(", "))
            }
            _ => self.to_string(),
        };
        let problem = Problem {
            type_uri: format!("{PROBLEM_BASE}{}", self.kind()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            errors: match &self {
                Error::Validation(fields) => Some(fields),
                _ => None,
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            Error::RateLimited { retry_after } => {
                headers.insert(header::RETRY_AFTER, retry_after.as_secs().max(1).into());
            }
            Error::Unauthorized { .. } => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

/// Makes an error answer that is not problem+json yet one: axum's own (405 with an empty body and
/// `Allow`, a body extractor's text/plain 400/413/415, the timeout's empty 408). The status and
/// headers stay; a client error's text is the detail. HTML (web's pages) and JSON are left alone.
pub async fn problems_only(request: Request, next: axum::middleware::Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = next.run(request).await;
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| {
            v.as_bytes()
                .get(..10)
                .is_some_and(|t| t.eq_ignore_ascii_case(b"text/plain"))
        });
    if !plain || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let reason = status.canonical_reason().unwrap_or("Error");
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => format!("{method} is not allowed on {path}"),
        // What a server error says stays in the logs.
        _ if status.is_server_error() || text.is_empty() => reason.to_lowercase(),
        _ => text,
    };
    let kind = match status.as_u16() {
        400 => "malformed-request",
        404 => "not-found",
        405 => "method-not-allowed",
        408 => "request-timeout",
        413 => "payload-too-large",
        415 => "unsupported-media-type",
        503 => "unavailable",
        500..=599 => "internal",
        _ => "http-error",
    };
    let problem = Problem {
        type_uri: format!("{PROBLEM_BASE}{kind}"),
        title: reason,
        status: status.as_u16(),
        detail,
        errors: None,
    };
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(body))
}

impl From<mongodb::error::Error> for Error {
    fn from(e: mongodb::error::Error) -> Self {
        use mongodb::error::ErrorKind;
        match *e.kind {
            // The database did not answer (a restart, a network blip): 503, worth trying again.
            // A payment met a MongoDB restart mid-request and answered 500 (xtask/tests/faults.rs).
            ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::ServerSelection { .. } => Error::Unavailable(format!("mongodb: {e}")),
            _ => Error::internal(e),
        }
    }
}

impl From<JsonRejection> for Error {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::UnsupportedMediaType(
                "expected a body with Content-Type: application/json".into(),
            ),
            _ => Error::BadRequest(rejection.body_text()),
        }
    }
}

/// `axum::Json`, but a bad body is a problem+json answer: 400 for malformed JSON, unknown fields,
/// wrong types or an array where an object is expected, 413 over the body limit, 415 without a JSON content type or with a `charset` other
/// than UTF-8 (JSON is UTF-8, RFC 8259; a latin1 body would be read as something else).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(charset) = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(';')
                    .skip(1)
                    .filter_map(|p| p.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
                    .map(|(_, v)| v.trim().trim_matches('"').to_owned())
            })
            && !charset.eq_ignore_ascii_case("utf-8")
            && !charset.eq_ignore_ascii_case("utf8")
        {
            return Err(Error::UnsupportedMediaType(format!(
                "a JSON body is UTF-8; charset={charset} is not accepted"
            )));
        }
        let json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .is_some_and(|essence| {
                essence == "application/json"
                    || (essence.starts_with("application/") && essence.ends_with("+json"))
            });
        if !json {
            return Err(Error::UnsupportedMediaType(
                "expected a body with Content-Type: application/json".into(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge,
                _ => Error::BadRequest(rejection.body_text()),
            })?;
        // Every body here is an object; serde's derive would also take an array as a struct's
        // fields by position (`["Ada"]` for `{"name": "Ada"}`), which no client means.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(Error::BadRequest(
                "expected a JSON object, not an array".into(),
            ));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(rejection.into()),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query strings the same way: a bad one is a 400 problem, not a plain-text rejection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|rejection| Error::BadRequest(rejection.body_text()))
    }
}

/// Path parameters the same way.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|rejection| Error::BadRequest(rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outbox")]
    struct Outbox(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("store: {0}")]
    struct Repeats(#[source] std::io::Error);

    /// What a 500 logs says why, to the root: an error's sources are kept, not flattened into
    /// its first line.
    #[test]
    fn an_internal_error_keeps_its_causes() {
        let Error::Internal(cause) = Error::internal(Outbox(std::io::Error::other("disk full")))
        else {
            panic!("not internal");
        };
        assert_eq!(chain(cause.as_ref()), "outbox: disk full");
        let repeats = Repeats(std::io::Error::other("disk full"));
        assert_eq!(chain(&repeats), "store: disk full");
        let Error::Internal(text) = Error::internal("validated fields missing") else {
            panic!("not internal");
        };
        assert_eq!(chain(text.as_ref()), "validated fields missing");
    }
}
