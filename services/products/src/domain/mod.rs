//! The products domain: values valid by construction, the stock rules, an order's reservation
//! and the image rules. No I/O.

mod image;
mod product;
mod reservation;
mod stock;

pub use image::{Encoded, File, ImageError, ImageKind, ImageRules, Inspected, Prepared};
pub use product::{Category, Currency, Description, Price, Title};
pub use reservation::{
    Ending, Hold, InventoryOp, ReservationState, Unheld, check_lines, rejection_reason,
};
pub use stock::{Quantity, StockChange, StockReason, merge_lines};
pub use storefront_kit::validate::Fields;
