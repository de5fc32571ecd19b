//! A customer's orders, an order's page, paying and cancelling.

use askama::Template;
use axum::{
    Extension, Form,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect},
};
use serde::Deserialize;
use storefront_events::orders::OrderState;

use super::PageResult;
use crate::{
    AppState,
    api::{ApiError, Order, Page, Paid},
    pages::{Layout, Pager, render, status_of, token, with_status},
    session::Visitor,
};

#[derive(Template)]
#[template(path = "orders.html")]
struct OrdersPage {
    layout: Layout,
    orders: Page<Order>,
    pager: Pager,
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    page: Option<i64>,
}

pub async fn orders(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let token = token(&visitor, "/orders")?;
    // The layout first: its notification cursor must not be newer than the statuses shown.
    let layout = Layout::of(&state, &visitor, "Your orders").await;
    let orders = state
        .api
        .orders(token, query.page.unwrap_or(1).clamp(1, 1000))
        .await?;
    let pager = Pager::of("/orders", &[], &orders);
    Ok(render(&OrdersPage {
        layout,
        orders,
        pager,
    }))
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    layout: Layout,
    order: Order,
    /// Why the last action failed: next to the card field while the order can be paid, above
    /// the order otherwise.
    problem: Option<String>,
}

impl OrderPage {
    fn payable(&self) -> bool {
        payable(&self.order)
    }
}

/// How long the order page waits for a pending order's stock to be reserved.
const RESERVE_WAIT_SECS: u64 = 3;
/// How long paying waits for orders to complete the order it paid.
const PAID_WAIT_SECS: u64 = 5;
fn payable(order: &Order) -> bool {
    order.state.is_open()
}

/// The order page; `problem` is the status and message of an action that failed.
async fn order_page(
    state: &AppState,
    visitor: &Visitor,
    id: &str,
    problem: Option<(StatusCode, String)>,
) -> PageResult {
    let token = token(visitor, &format!("/orders/{}", crate::api::encode(id)))?;
    // The layout first: its notification cursor must not be newer than the status shown.
    let mut layout = Layout::of(state, visitor, "Your order").await;
    let mut order = state.api.order(token, id).await?;
    if order.state == OrderState::Pending {
        // Reserving takes a moment: wait for it (orders' long-poll) rather than show "pending"
        // and reload.
        if let Some(moved) = state
            .api
            .order_changed(token, id, order.version, RESERVE_WAIT_SECS)
            .await?
        {
            order = moved;
        }
    }
    let (status, mut problem) = match problem {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    if payable(&order) {
        layout = layout.with_stripe(state);
        // A declined card or a failed 3-D Secure step comes back here (POST-redirect-GET): say
        // why, from the payment itself.
        if problem.is_none() {
            match state.api.payment_failure(token, id).await {
                Ok(Some(reason)) => {
                    let reason = reason.trim().trim_end_matches('.');
                    problem = Some(format!(
                        "Your last payment did not go through: {reason}. Try again, or use another card."
                    ));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::info!(error = %e, "the payment's state is not known; the page goes without it")
                }
            }
        }
    }
    let page = OrderPage {
        layout,
        order,
        problem,
    };
    Ok(with_status(render(&page), status))
}

pub async fn order(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
) -> PageResult {
    order_page(&state, &visitor, &id, None).await
}

#[derive(Debug, Deserialize)]
pub struct PayForm {
    #[serde(default)]
    payment_method: String,
}

pub async fn pay(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    Form(form): Form<PayForm>,
) -> PageResult {
    let token = token(&visitor, &format!("/orders/{}", crate::api::encode(&id)))?;
    if form.payment_method.is_empty() {
        let message = "Enter your card: paying needs JavaScript for the secure card field.";
        let problem = (StatusCode::PAYMENT_REQUIRED, message.to_owned());
        return order_page(&state, &visitor, &id, Some(problem)).await;
    }
    match state.api.pay(token, &id, &form.payment_method).await {
        Ok(Paid::Succeeded) => {
            // orders completes the order a moment after the charge: follow it (long-poll) so
            // the page shows it paid, not still awaiting payment.
            let mut order = state.api.order(token, &id).await?;
            let deadline =
                tokio::time::Instant::now() + std::time::Duration::from_secs(PAID_WAIT_SECS);
            while order.state == OrderState::AwaitingPayment
                && tokio::time::Instant::now() < deadline
            {
                match state
                    .api
                    .order_changed(token, &id, order.version, PAID_WAIT_SECS)
                    .await?
                {
                    Some(moved) => order = moved,
                    None => break,
                }
            }
            Ok(Redirect::to(&format!("/orders/{}", crate::api::encode(&id))).into_response())
        }
        // The bank's step runs on the order page (GET), so reloading it never sends the payment
        // again; the client secret rides in the fragment, which never reaches a server or a log.
        Ok(Paid::RequiresAction(secret)) => Ok(Redirect::to(&format!(
            "/orders/{}#authenticate={secret}",
            crate::api::encode(&id)
        ))
        .into_response()),
        // Declined: the order page says why (from the payment), and a reload does not pay again.
        Err(ApiError::Problem(p)) if p.status == 402 => {
            Ok(Redirect::to(&format!("/orders/{}", crate::api::encode(&id))).into_response())
        }
        Err(ApiError::Problem(p)) if [409, 422].contains(&p.status) => {
            let problem = (status_of(&p), p.detail);
            order_page(&state, &visitor, &id, Some(problem)).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn cancel(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
) -> PageResult {
    let token = token(&visitor, &format!("/orders/{}", crate::api::encode(&id)))?;
    match state.api.cancel_order(token, &id).await {
        Ok(_) => Ok(Redirect::to(&format!("/orders/{}", crate::api::encode(&id))).into_response()),
        Err(ApiError::Problem(p)) if p.status == 409 => {
            let problem = (StatusCode::CONFLICT, p.detail);
            order_page(&state, &visitor, &id, Some(problem)).await
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------- notifications
