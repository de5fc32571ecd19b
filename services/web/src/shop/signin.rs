//! Signing in, signing up and signing out.

use askama::Template;
use axum::{
    Extension, Form,
    extract::{Query, State},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::PageResult;
use crate::{
    AppState,
    api::{ApiError, Session},
    pages::{FormErrors, Layout, render, safe_next, status_of, with_status},
    session::{SetCookies, Visitor, cleared_cookies, fresh_csrf_cookie, session_cookies},
};

#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    layout: Layout,
    email: String,
    next: String,
    errors: FormErrors,
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignUpPage {
    layout: Layout,
    email: String,
    name: String,
    next: String,
    errors: FormErrors,
}

impl SignInPage {
    fn next_encoded(&self) -> String {
        crate::api::encode(&self.next)
    }
}

pub async fn signin_form(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<NextQuery>,
) -> Response {
    let layout = Layout::of(&state, &visitor, "Sign in").await;
    render(&SignInPage {
        layout,
        email: String::new(),
        next: safe_next(query.next.as_deref()),
        errors: FormErrors::none(),
    })
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    email: String,
    password: String,
    next: Option<String>,
}

/// The visitor's address (from the gateway's `X-Real-IP` when web trusts it), passed on to auth
/// so its per-address sign-in limit counts each visitor, not web itself: a walk found every form
/// sign-in sharing web's own address, so 60 wrong passwords from anyone locked everyone out.
pub struct ClientAddress(Option<std::net::IpAddr>);
impl axum::extract::FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(storefront_kit::server::client_ip(
            parts,
            state.config.http.trust_proxy_headers,
        )))
    }
}

pub async fn signin(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    ClientAddress(address): ClientAddress,
    Form(form): Form<SignInForm>,
) -> PageResult {
    let next = safe_next(form.next.as_deref());
    let address = address.map(|ip| ip.to_string());
    match state
        .api
        .signin(form.email.trim(), &form.password, address.as_deref())
        .await
    {
        Ok(session) => Ok(signed_in(&state, &session, &next)),
        Err(ApiError::Problem(problem)) => {
            let layout = Layout::of(&state, &visitor, "Sign in").await;
            let status = status_of(&problem);
            let page = SignInPage {
                layout,
                email: form.email,
                next,
                errors: FormErrors::of(problem),
            };
            Ok(with_status(render(&page), status))
        }
        Err(e) => Err(e.into()),
    }
}

/// A new session: its cookies, and on to where the visitor was going.
fn signed_in(state: &AppState, session: &Session, next: &str) -> Response {
    let secure = state.config.http.cookie_secure;
    let mut cookies = session_cookies(session, secure);
    cookies.push(fresh_csrf_cookie(secure));
    (Extension(SetCookies(cookies)), Redirect::to(next)).into_response()
}

pub async fn signup_form(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<NextQuery>,
) -> Response {
    let layout = Layout::of(&state, &visitor, "Create an account").await;
    render(&SignUpPage {
        layout,
        email: String::new(),
        name: String::new(),
        next: safe_next(query.next.as_deref()),
        errors: FormErrors::none(),
    })
}

#[derive(Debug, Deserialize)]
pub struct SignUpForm {
    email: String,
    name: String,
    password: String,
    next: Option<String>,
}

pub async fn signup(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Form(form): Form<SignUpForm>,
) -> PageResult {
    let next = safe_next(form.next.as_deref());
    match state
        .api
        .signup(form.email.trim(), &form.password, form.name.trim())
        .await
    {
        Ok(session) => Ok(signed_in(&state, &session, &next)),
        Err(ApiError::Problem(mut problem)) => {
            if problem.status == 409 && problem.errors.is_empty() {
                // The email is taken: say so by the email field.
                problem.errors.push(crate::api::FieldProblem {
                    field: "email".into(),
                    message: problem.detail.clone(),
                });
            }
            let layout = Layout::of(&state, &visitor, "Create an account").await;
            let status = status_of(&problem);
            let page = SignUpPage {
                layout,
                email: form.email,
                name: form.name,
                next,
                errors: FormErrors::of(problem),
            };
            Ok(with_status(render(&page), status))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn signout(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
) -> Response {
    if let Some(token) = &visitor.token
        && let Err(e) = state.api.signout(token).await
    {
        tracing::info!(error = %e, "signout at auth failed; clearing the cookies anyway");
    }
    let secure = state.config.http.cookie_secure;
    let mut cookies = cleared_cookies(secure);
    cookies.push(fresh_csrf_cookie(secure));
    (Extension(SetCookies(cookies)), Redirect::to("/")).into_response()
}

// ---------------------------------------------------------------- cart and checkout
