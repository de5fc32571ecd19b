//! Helpers for domain newtypes: gather every field error of a request, and clean free text.

use crate::{Error, FieldError};

/// Collects field errors from several parses, so a form shows every problem at once.
#[derive(Default)]
pub struct Fields(Vec<FieldError>);

impl Fields {
    /// The parsed value, or `None` with the error recorded under `field`.
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, String>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(message) => {
                self.0.push(FieldError::new(field, message));
                None
            }
        }
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// `Ok` when nothing failed, else a 422 listing every field.
    pub fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self.0))
        }
    }
}

/// Trims `raw` and checks it: present when `required`, at most `max` characters, no control
/// characters (`allow_newlines` lets line breaks through, for descriptions).
pub fn text(
    raw: &str,
    what: &str,
    max: usize,
    required: bool,
    allow_newlines: bool,
) -> Result<String, String> {
    let value = raw.trim();
    if required && value.is_empty() {
        return Err(format!("{what} is required"));
    }
    if value.chars().count() > max {
        return Err(format!("{what} has at most {max} characters"));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !(allow_newlines && matches!(c, '\n' | '\r' | '\t')))
    {
        return Err(format!("{what} must not contain control characters"));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_trims_and_bounds() {
        assert_eq!(text("  Ada ", "a name", 10, true, false).unwrap(), "Ada");
        assert!(text("   ", "a name", 10, true, false).is_err());
        assert_eq!(text("", "a note", 10, false, false).unwrap(), "");
        assert!(text("abcdefghijk", "a name", 10, true, false).is_err());
        assert!(text("a\u{0}b", "a name", 10, true, false).is_err());
        assert!(text("a\nb", "a name", 10, true, false).is_err());
        assert_eq!(text("a\nb", "a text", 10, true, true).unwrap(), "a\nb");
    }

    #[test]
    fn fields_gather_every_error() {
        let mut fields = Fields::default();
        assert_eq!(fields.check("a", Ok::<_, String>(1)), Some(1));
        assert_eq!(fields.check::<i32>("b", Err("bad b".into())), None);
        fields.add("c", "bad c");
        match fields.finish() {
            Err(Error::Validation(errors)) => {
                let names: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(names, ["b", "c"]);
            }
            _ => panic!("expected a validation error"),
        }
    }
}
