//! Auth's domain: values that can only exist when valid (parse, don't validate). No I/O here.

mod account;
mod profile;

pub use account::{Email, Password};
pub use profile::{Address, DisplayName, Phone};

pub use storefront_kit::validate::Fields;
