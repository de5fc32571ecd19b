//! Helpers for domain newtypes: gather every field error of a request, clean free text, and
//! read a request's `Idempotency-Key`.

use axum::{extract::OptionalFromRequestParts, http::request::Parts};

use crate::{Error, FieldError};

/// The most characters an `Idempotency-Key` has.
pub const MAX_IDEMPOTENCY_KEY: usize = 100;

/// A request's `Idempotency-Key` header: 1 to [`MAX_IDEMPOTENCY_KEY`] visible ASCII characters
/// (surrounding spaces trimmed). A handler takes `Option<IdempotencyKey>` (a malformed key is
/// 400 before the handler runs; one that requires a key says so in its own words when it is
/// absent), or reads it with [`IdempotencyKey::of`] where the body must be read first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(pub String);

impl IdempotencyKey {
    /// The key of `headers`: `None` when absent, 400 when not 1 to 100 visible ASCII characters.
    pub fn of(headers: &axum::http::HeaderMap) -> Result<Option<Self>, Error> {
        let Some(value) = headers.get("idempotency-key") else {
            return Ok(None);
        };
        let key = value.to_str().unwrap_or_default().trim();
        if key.is_empty()
            || key.len() > MAX_IDEMPOTENCY_KEY
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Error::BadRequest(format!(
                "Idempotency-Key is 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
            )));
        }
        Ok(Some(IdempotencyKey(key.to_owned())))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for IdempotencyKey {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Error> {
        IdempotencyKey::of(&parts.headers)
    }
}

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

/// Characters that show nothing: white space, zero-width spaces and joiners, the byte-order mark,
/// soft hyphens, Hangul fillers and the like.
fn invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
        )
}

/// Combining marks (accents and the like): they show only on a character before them.
fn combining(c: char) -> bool {
    matches!(
        c,
        '\u{0300}'..='\u{036F}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE20}'..='\u{FE2F}'
    )
}

/// Bidirectional overrides and isolates: they reorder what follows them on screen, so a name can
/// show as something it is not.
fn reorders(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Trims `raw` (invisible characters too) and checks it: present when `required` — something
/// visible, not only zero-width characters —, at most `max` characters, no control characters
/// (`allow_newlines` lets line breaks through, for descriptions) and no bidirectional overrides.
pub fn text(
    raw: &str,
    what: &str,
    max: usize,
    required: bool,
    allow_newlines: bool,
) -> Result<String, String> {
    let value = raw.trim_matches(invisible);
    if required && value.chars().all(|c| invisible(c) || combining(c)) {
        return Err(if raw.trim().is_empty() {
            format!("{what} is required")
        } else {
            format!("{what} needs visible characters")
        });
    }
    if value.chars().any(reorders) {
        return Err(format!(
            "{what} must not contain characters that reorder text (bidirectional overrides)"
        ));
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

/// The largest page of every list.
pub const MAX_PER_PAGE: u64 = 100;
/// Deeper pages than this are refused: skip costs grow with depth, and a reader filters instead.
pub const MAX_PAGE: u64 = 1000;

/// A list's `?page=&per_page=` (taken as text, so `-1`, `1e9` or `x` is a 422 by its field like
/// any other invalid value): pages run from 1 to [`MAX_PAGE`], 1 to [`MAX_PER_PAGE`] items each,
/// `per_page` 20 by default. Errors go into `fields`; the answer is then meaningless.
pub fn paging(page: Option<&str>, per_page: Option<&str>, fields: &mut Fields) -> (u64, u64) {
    let mut number = |raw: Option<&str>, name: &str, default: u64, max: u64, rule: String| {
        let value = match raw.map(str::trim) {
            None | Some("") => Ok(default),
            Some(raw) => raw
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or(rule),
        };
        fields.check(name, value).unwrap_or(default)
    };
    (
        number(
            page,
            "page",
            1,
            MAX_PAGE,
            format!("a whole number from 1 to {MAX_PAGE}"),
        ),
        number(
            per_page,
            "per_page",
            20,
            MAX_PER_PAGE,
            format!("a whole number from 1 to {MAX_PER_PAGE}"),
        ),
    )
}

/// The longest window of days a dashboard's figures cover.
pub const MAX_DAYS: u32 = 90;

/// The query of a dashboard's figures (`?days=`); any other parameter is a 400.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DaysQuery {
    /// The days covered, up to and including today (UTC): 1 to 90, default 30.
    #[schemars(extend("type" = ["integer", "null"], "minimum" = 1, "maximum" = 90))]
    pub days: Option<String>,
}

impl DaysQuery {
    /// The days asked for (see [`days`]), or a 422 naming `days`.
    pub fn days(&self) -> Result<u32, Error> {
        let mut fields = Fields::default();
        let days = days(self.days.as_deref(), &mut fields);
        fields.finish()?;
        Ok(days)
    }
}

/// The first day of a window of `days` days (at least 1) that ends with `last`.
pub fn first_day(last: chrono::NaiveDate, days: u32) -> chrono::NaiveDate {
    last - chrono::Days::new(u64::from(days.max(1) - 1))
}

/// The `days` of a dashboard's figures: 1 to [`MAX_DAYS`], 30 when absent or empty; anything else
/// is a field problem (422), answered with the default.
pub fn days(raw: Option<&str>, fields: &mut Fields) -> u32 {
    let value = match raw.map(str::trim) {
        None | Some("") => Ok(30),
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_DAYS).contains(n))
            .ok_or(format!("a whole number from 1 to {MAX_DAYS}")),
    };
    fields.check("days", value).unwrap_or(30)
}

/// The longest text a list's `q` searches for.
pub const MAX_SEARCH_CHARS: usize = 100;

/// A list's `?q=`: trimmed, `None` when empty; longer than [`MAX_SEARCH_CHARS`] or with control
/// characters is an error on `q` in `fields`.
pub fn search(q: Option<&str>, fields: &mut Fields) -> Option<String> {
    match q.map(str::trim) {
        None | Some("") => None,
        Some(q) if q.chars().count() > MAX_SEARCH_CHARS => {
            fields.add(
                "q",
                format!("a search has at most {MAX_SEARCH_CHARS} characters"),
            );
            None
        }
        Some(q) if q.chars().any(char::is_control) => {
            fields.add("q", "a search must not contain control characters");
            None
        }
        Some(q) => Some(q.to_owned()),
    }
}

/// A regular expression that matches `text` literally (for a case-insensitive `$regex`): every
/// character but letters, digits and spaces escaped, so a search has no pattern syntax.
pub fn literal_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if !c.is_alphanumeric() && c != ' ' {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_idempotency_key_is_one_to_a_hundred_visible_characters() {
        use axum::http::{HeaderMap, HeaderValue};
        let with = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert("idempotency-key", HeaderValue::from_bytes(value).unwrap());
            IdempotencyKey::of(&headers)
        };
        assert_eq!(IdempotencyKey::of(&HeaderMap::new()).unwrap(), None);
        assert_eq!(with(b" k-1 ").unwrap(), Some(IdempotencyKey("k-1".into())));
        assert!(with(&[b'k'; 100]).unwrap().is_some());
        for bad in [
            &b""[..],
            b"   ",
            &[b'k'; 101],
            b"two words",
            "caf\u{e9}".as_bytes(),
        ] {
            let Err(Error::BadRequest(message)) = with(bad) else {
                panic!("{bad:?} was taken");
            };
            assert!(message.contains("visible ASCII"), "{message}");
        }
    }

    use super::*;

    #[test]
    fn text_that_shows_nothing_is_not_there() {
        for raw in [
            "\u{200B}\u{200B}",
            "\u{FEFF}",
            " \u{2060}\u{200D} ",
            "\u{3164}",
            "\u{2800}\u{2800}",
            "\u{0301}",
            "\u{0301}\u{0302}",
        ] {
            let error = text(raw, "a name", 10, true, false).unwrap_err();
            assert!(error.contains("visible"), "{raw:?}: {error}");
        }
        assert_eq!(
            text("\u{200B}Ada\u{200B}", "a name", 10, true, false).unwrap(),
            "Ada"
        );
        assert_eq!(
            text("e\u{0301}", "a name", 10, true, false).unwrap(),
            "e\u{0301}"
        );
        // Inside a word, a joiner is text (emoji sequences, some scripts).
        assert_eq!(
            text("a\u{200D}b", "a name", 10, true, false).unwrap(),
            "a\u{200D}b"
        );
        assert!(text("abc\u{202E}fdp.exe", "a name", 20, true, false).is_err());
        assert_eq!(text("\u{200B}", "a note", 10, false, false).unwrap(), "");
    }

    #[test]
    fn pages_are_checked_by_field() {
        let mut fields = Fields::default();
        assert_eq!(paging(None, None, &mut fields), (1, 20));
        assert_eq!(paging(Some("3"), Some("100"), &mut fields), (3, 100));
        assert!(fields.finish().is_ok());
        for (page, per_page, bad) in [
            ("0", "20", "page"),
            ("1e9", "20", "page"),
            ("1001", "20", "page"),
            ("1", "-1", "per_page"),
            ("1", "101", "per_page"),
            ("1", "x", "per_page"),
        ] {
            let mut fields = Fields::default();
            paging(Some(page), Some(per_page), &mut fields);
            match fields.finish() {
                Err(Error::Validation(errors)) => {
                    assert_eq!(errors.len(), 1, "{page} {per_page}");
                    assert_eq!(errors[0].field, bad, "{page} {per_page}");
                }
                other => panic!("{page} {per_page}: {other:?}"),
            }
        }
    }

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

    #[test]
    fn search_text_is_matched_literally() {
        assert_eq!(literal_pattern("mug"), "mug");
        assert_eq!(literal_pattern("a.b*"), "a\\.b\\*");
        assert_eq!(literal_pattern("(x|y)"), "\\(x\\|y\\)");
        assert_eq!(literal_pattern("tea cup"), "tea cup");
        assert_eq!(literal_pattern("$where"), "\\$where");
    }
}
