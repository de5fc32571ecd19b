//! The cart page and its forms, and checkout.

use askama::Template;
use axum::{
    Extension, Form,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect},
};
use serde::Deserialize;

use super::{PageResult, catalog::ProductPage};
use crate::{
    AppState,
    api::{ApiError, Cart},
    pages::{FormErrors, Layout, render, token, with_status},
    session::Visitor,
};

#[derive(Template)]
#[template(path = "cart.html")]
struct CartPage {
    layout: Layout,
    cart: Cart,
    checkout_key: String,
    error: Option<String>,
}

async fn cart_page(state: &AppState, visitor: &Visitor, error: Option<String>) -> PageResult {
    let token = token(visitor, "/cart")?;
    let cart = state.api.cart(token).await?;
    let layout = Layout::of(state, visitor, "Your cart").await;
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = CartPage {
        layout,
        cart,
        checkout_key: uuid::Uuid::new_v4().to_string(),
        error,
    };
    Ok(with_status(render(&page), status))
}

pub async fn cart(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
) -> PageResult {
    cart_page(&state, &visitor, None).await
}

#[derive(Debug, Deserialize)]
pub struct AddForm {
    product_id: String,
    quantity: String,
}

fn quantity(text: &str) -> Result<i64, String> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| "the quantity must be a whole number".to_owned())
}

pub async fn add_to_cart(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Form(form): Form<AddForm>,
) -> PageResult {
    let back = format!("/products/{}", crate::api::encode(&form.product_id));
    let token = token(&visitor, &back)?;
    let added = match quantity(&form.quantity) {
        Ok(n) => state.api.add_to_cart(token, &form.product_id, n).await,
        Err(message) => Err(ApiError::Problem(crate::api::Problem {
            status: 422,
            detail: message.clone(),
            errors: vec![crate::api::FieldProblem {
                field: "quantity".into(),
                message,
            }],
            ..Default::default()
        })),
    };
    match added {
        Ok(_) => Ok(Redirect::to("/cart").into_response()),
        Err(ApiError::Problem(problem)) if problem.status == 422 || problem.status == 409 => {
            let product = state
                .api
                .product(visitor.token.as_deref(), &form.product_id)
                .await?;
            let layout = Layout::of(&state, &visitor, product.title.clone()).await;
            let page = ProductPage {
                layout,
                product,
                errors: FormErrors::of(problem),
            };
            Ok(with_status(render(&page), StatusCode::UNPROCESSABLE_ENTITY))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
pub struct QuantityForm {
    quantity: String,
}

pub async fn set_quantity(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path(product): Path<String>,
    Form(form): Form<QuantityForm>,
) -> PageResult {
    let token = token(&visitor, "/cart")?;
    let result = match quantity(&form.quantity) {
        Ok(n) => state.api.set_quantity(token, &product, n).await.map(|_| ()),
        Err(message) => return cart_page(&state, &visitor, Some(message)).await,
    };
    match result {
        Ok(()) => Ok(Redirect::to("/cart").into_response()),
        Err(ApiError::Problem(p)) if p.status == 422 || p.status == 404 => {
            cart_page(
                &state,
                &visitor,
                Some(p.field("quantity").unwrap_or(&p.detail).to_owned()),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn remove_from_cart(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path(product): Path<String>,
) -> PageResult {
    let token = token(&visitor, "/cart")?;
    match state.api.remove_from_cart(token, &product).await {
        Ok(()) => Ok(Redirect::to("/cart").into_response()),
        Err(ApiError::Problem(p)) if p.status == 404 => Ok(Redirect::to("/cart").into_response()),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
pub struct CheckoutForm {
    checkout_key: String,
}

pub async fn checkout(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Form(form): Form<CheckoutForm>,
) -> PageResult {
    let token = token(&visitor, "/cart")?;
    match state.api.checkout(token, &form.checkout_key).await {
        Ok(order) => Ok(Redirect::to(&format!("/orders/{}", order.id)).into_response()),
        Err(ApiError::Problem(p)) if p.status == 422 || p.status == 409 || p.status == 400 => {
            // A line the cart cannot order says which and why ("only 3 of … available").
            let message = if p.errors.is_empty() {
                p.detail
            } else {
                let reasons: Vec<&str> = p.errors.iter().map(|e| e.message.as_str()).collect();
                format!("Nothing was ordered: {}.", reasons.join("; "))
            };
            cart_page(&state, &visitor, Some(message)).await
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------- orders and payment
