//! `/account`: the signed-in customer's own details — name, phone and postal address — read from
//! and written to auth (`GET|PATCH /api/users/profile`).

use askama::Template;
use axum::{
    Extension, Form,
    extract::{Query, State},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use crate::{
    AppState,
    api::{Address, ApiError},
    pages::{FormErrors, Layout, PageError, render, status_of, token, with_status},
    session::Visitor,
};

type PageResult = Result<Response, PageError>;

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    layout: Layout,
    email: String,
    form: AccountForm,
    errors: FormErrors,
    saved: bool,
}

impl AccountPage {
    /// auth names an address part's error `address.{part}`.
    fn address_error(&self, part: &str) -> Option<String> {
        self.errors.field(&format!("address.{part}"))
    }
}

/// The form as sent (and as shown again with its errors). An empty phone clears it; an address
/// with every part empty clears it.
#[derive(Debug, Default, Deserialize)]
pub struct AccountForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    line1: String,
    #[serde(default)]
    line2: String,
    #[serde(default)]
    city: String,
    #[serde(default)]
    postal_code: String,
    #[serde(default)]
    country: String,
}

impl AccountForm {
    fn address(&self) -> Option<Address> {
        let parts = [
            &self.line1,
            &self.line2,
            &self.city,
            &self.postal_code,
            &self.country,
        ];
        if parts.iter().all(|p| p.trim().is_empty()) {
            return None;
        }
        Some(Address {
            line1: self.line1.clone(),
            line2: Some(self.line2.clone()).filter(|l| !l.trim().is_empty()),
            city: self.city.clone(),
            postal_code: self.postal_code.clone(),
            country: self.country.clone(),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Saved {
    #[serde(default)]
    saved: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<Saved>,
) -> PageResult {
    let token = token(&visitor, "/account")?;
    let layout = Layout::of(&state, &visitor, "Your account").await;
    let profile = state.api.profile(token).await?;
    let address = profile.address.unwrap_or_default();
    let page = AccountPage {
        layout,
        email: profile.email,
        form: AccountForm {
            name: profile.name,
            phone: profile.phone.unwrap_or_default(),
            line1: address.line1,
            line2: address.line2.unwrap_or_default(),
            city: address.city,
            postal_code: address.postal_code,
            country: address.country,
        },
        errors: FormErrors::none(),
        saved: query.saved.is_some(),
    };
    Ok(render(&page))
}

/// Saves the form; then back to the page, which says so (post-redirect-get: a reload does not
/// send it again). Refusals are shown by their fields.
pub async fn update(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Form(form): Form<AccountForm>,
) -> PageResult {
    let token = token(&visitor, "/account")?;
    let phone = Some(form.phone.trim()).filter(|p| !p.is_empty());
    let address = form.address();
    match state
        .api
        .update_profile(token, form.name.trim(), phone, address.as_ref())
        .await
    {
        Ok(_) => Ok(Redirect::to("/account?saved=1").into_response()),
        Err(ApiError::Problem(problem)) if problem.status == 422 || problem.status == 400 => {
            let layout = Layout::of(&state, &visitor, "Your account").await;
            let email = state
                .api
                .profile(token)
                .await
                .map(|p| p.email)
                .unwrap_or_default();
            let status = status_of(&problem);
            let page = AccountPage {
                layout,
                email,
                form,
                errors: FormErrors::of(problem),
                saved: false,
            };
            Ok(with_status(render(&page), status))
        }
        Err(e) => Err(e.into()),
    }
}
