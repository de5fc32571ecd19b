//! The customer shop: catalog, product, sign up/in/out, cart, checkout, payment, orders,
//! notifications.
//!
//! By page: `catalog.rs`, `signin.rs`, `cart.rs`, `orders.rs`, `notifications.rs`.

use axum::response::Response;

use crate::pages::PageError;

mod cart;
mod catalog;
mod notifications;
mod orders;
mod signin;

pub use cart::{
    AddForm, CheckoutForm, QuantityForm, add_to_cart, cart, checkout, remove_from_cart,
    set_quantity,
};
pub use catalog::{CatalogQuery, catalog, product};
pub use notifications::{notifications, read_all};
pub use orders::{PageQuery, PayForm, cancel, order, orders, pay};
pub use signin::{
    ClientAddress, NextQuery, SignInForm, SignUpForm, signin, signin_form, signout, signup,
    signup_form,
};

type PageResult = Result<Response, PageError>;

// ---------------------------------------------------------------- catalog
#[cfg(test)]
mod tests {
    use super::catalog::minor_units;

    #[test]
    fn prices_are_typed_in_major_units() {
        assert_eq!(minor_units("12"), Ok(1200));
        assert_eq!(minor_units(" 12.5 "), Ok(1250));
        assert_eq!(minor_units("$0.07"), Ok(7));
        for bad in ["", "ten", "1.234", "-1", "1e3", ".5", "123456789"] {
            assert!(minor_units(bad).is_err(), "{bad:?}");
        }
    }
}
