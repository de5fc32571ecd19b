//! Every order, and one order as the admin sees it.

use askama::Template;
use axum::{
    Extension,
    extract::{Path, Query, State},
};
use storefront_events::orders::OrderState;

use super::{PageQuery, PageResult};
use crate::{
    AppState,
    api::{ApiError, Order, Page, Payment, User, encode},
    pages::{Layout, PageError, Pager, admin_token, render},
    session::Visitor,
};

#[derive(Template)]
#[template(path = "admin/orders.html")]
struct OrdersPage {
    layout: Layout,
    orders: Page<Order>,
    status: String,
    statuses: [OrderState; 4],
    customers: std::collections::HashMap<String, User>,
    pager: Pager,
}

impl OrdersPage {
    /// `Name <email>` of an order's customer, or their id if auth did not say.
    fn customer(&self, order: &Order) -> String {
        customer_text(self.customers.get(&order.user_id), &order.user_id)
    }
}

fn customer_text(user: Option<&User>, id: &str) -> String {
    match user {
        Some(user) if user.name.is_empty() => user.email.clone(),
        Some(user) => format!("{} <{}>", user.name, user.email),
        None => id.to_owned(),
    }
}

pub async fn orders(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let token = admin_token(&visitor, "/admin/orders")?;
    let page = query.page();
    let status = query.status.unwrap_or_default();
    let orders = state
        .api
        .all_orders(token, Some(status.as_str()).filter(|s| !s.is_empty()), page)
        .await?;
    let ids: Vec<&str> = orders.items.iter().map(|o| o.user_id.as_str()).collect();
    // Names are a help: without auth the list still shows each customer's id.
    let customers = state.api.users_by_id(token, &ids).await.unwrap_or_default();
    let layout = Layout::of(&state, &visitor, "Admin · Orders").await;
    let pager = Pager::of("/admin/orders", &[("status", &status)], &orders);
    Ok(render(&OrdersPage {
        layout,
        orders,
        status,
        statuses: OrderState::ALL,
        customers,
        pager,
    }))
}

#[derive(Template)]
#[template(path = "admin/order.html")]
struct OrderPage {
    layout: Layout,
    order: Order,
    customer: String,
    /// The order's payment (`None`: none was made), or why payments could not say.
    payment: Result<Option<Payment>, String>,
}

/// `GET /admin/orders/{id}`: one order with its lines, charges, payment and timeline.
pub async fn order(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
) -> PageResult {
    let token = admin_token(&visitor, &format!("/admin/orders/{}", encode(&id)))?;
    let order = match state.api.order(token, &id).await {
        Ok(order) => order,
        Err(ApiError::Problem(p)) if p.status == 404 => return Err(PageError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let users = state
        .api
        .users_by_id(token, &[order.user_id.as_str()])
        .await
        .unwrap_or_default();
    let customer = customer_text(users.get(&order.user_id), &order.user_id);
    // Payments down leaves its part of the page blank, not the page.
    let payment = state
        .api
        .payment(token, &order.id)
        .await
        .map_err(|e| e.to_string());
    let layout = Layout::of(&state, &visitor, format!("Admin · Order {}", order.label())).await;
    Ok(render(&OrderPage {
        layout,
        order,
        customer,
        payment,
    }))
}
