//! Auth's domain: values that can only exist when valid (parse, don't validate). No I/O here.

mod account;
mod profile;

pub use account::{Email, Password};
pub use profile::{Address, DisplayName, Phone};

/// Collects field errors from several parses, so a form shows every problem at once.
#[derive(Default)]
pub struct Fields(Vec<storefront_kit::FieldError>);

impl Fields {
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, String>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(message) => {
                self.0.push(storefront_kit::FieldError::new(field, message));
                None
            }
        }
    }

    pub fn add(&mut self, field: String, message: String) {
        self.0.push(storefront_kit::FieldError::new(field, message));
    }

    /// `Ok` when nothing failed.
    pub fn finish(self) -> Result<(), storefront_kit::Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(storefront_kit::Error::Validation(self.0))
        }
    }
}
