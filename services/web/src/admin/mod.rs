//! `/admin`: products (search, create, edit with version conflicts shown, delete, images —
//! upload, delete, primary —, stock and its history), orders (by status, each with its lines,
//! payment and timeline, customers by name), users (search, block/unblock). Admins only; every
//! call goes out with the admin's token, so the services check the role again.
//!
//! By page: `products.rs`, `orders.rs`, `users.rs`, `deadletters.rs`.

use axum::response::Response;
use serde::Deserialize;

use crate::pages::PageError;

mod deadletters;
mod orders;
mod products;
mod users;

pub use deadletters::{dead_letters, handle_dead_letter};
pub use orders::{order, orders};
pub use products::{
    DeleteForm, ProductForm, StockForm, adjust_stock, change_image, create_product, delete_product,
    edit_product, new_product, products, update_product, upload_image,
};
pub use users::{block, users};

type PageResult = Result<Response, PageError>;
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    page: Option<i64>,
    status: Option<String>,
    #[serde(default)]
    q: String,
    /// What was just done, for the message that says so.
    saved: Option<String>,
}

impl PageQuery {
    fn page(&self) -> i64 {
        self.page.unwrap_or(1).clamp(1, 1000)
    }
}

/// A search as the admin typed it, or a note that it cannot be one: the services' own rule
/// (`storefront_kit::validate::search`), said as a sentence; the list then shows everything,
/// with the note.
fn search_text(q: &str) -> (String, Option<String>) {
    let mut fields = storefront_kit::validate::Fields::default();
    let text = storefront_kit::validate::search(Some(q), &mut fields);
    match fields.finish() {
        Ok(()) => (text.unwrap_or_default(), None),
        Err(storefront_kit::Error::Validation(errors)) => (
            String::new(),
            errors
                .first()
                .map(|e| format!("{}.", crate::pages::capitalised(&e.message))),
        ),
        Err(other) => (String::new(), Some(other.to_string())),
    }
}
