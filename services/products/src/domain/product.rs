//! A product's editable details.

use storefront_events::Money;
use storefront_kit::validate::text;

/// 1 to 200 characters, trimmed, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(raw: &str) -> Result<Self, String> {
        text(raw, "a title", 200, true, false).map(Title)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Up to 5,000 characters; line breaks allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub fn parse(raw: &str) -> Result<Self, String> {
        text(raw, "a description", 5000, false, true).map(Description)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A category slug: 1 to 50 of `a-z`, `0-9` and inner `-` (e.g. `kitchen`, `t-shirts`). Input is
/// lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category(String);

impl Category {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let slug = raw.trim().to_ascii_lowercase();
        if slug.is_empty() || slug.len() > 50 {
            return Err("a category has 1 to 50 characters".into());
        }
        if !slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || slug.starts_with('-')
            || slug.ends_with('-')
        {
            return Err("a category uses only a-z, 0-9 and inner dashes".into());
        }
        Ok(Category(slug))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An ISO 4217 code this shop sells in (three upper-case letters from the list below).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency(&'static str);

/// The currencies Stripe settles that this shop accepts; all have two minor digits.
const CURRENCIES: [&str; 10] = [
    "USD", "EUR", "GBP", "CHF", "CAD", "AUD", "SEK", "NOK", "DKK", "PLN",
];

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let code = raw.trim().to_ascii_uppercase();
        CURRENCIES
            .iter()
            .find(|c| **c == code)
            .map(|c| Currency(c))
            .ok_or_else(|| {
                format!(
                    "{raw:?} is not a currency this shop sells in ({})",
                    CURRENCIES.join(", ")
                )
            })
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

/// A price: a positive number of minor units, at most 1,000,000.00, in a known currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    amount: i64,
    currency: Currency,
}

impl Price {
    pub const MAX_MINOR: i64 = 100_000_000;

    pub fn new(amount: i64, currency: Currency) -> Result<Self, String> {
        if amount <= 0 {
            return Err("a price is a positive amount in minor units (cents)".into());
        }
        if amount > Self::MAX_MINOR {
            return Err(format!(
                "a price is at most {} minor units",
                Self::MAX_MINOR
            ));
        }
        Ok(Price { amount, currency })
    }

    pub fn amount(&self) -> i64 {
        self.amount
    }

    pub fn money(&self) -> Money {
        Money {
            amount: self.amount,
            currency: self.currency.as_str().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        assert_eq!(Title::parse("  Mug ").unwrap().into_inner(), "Mug");
        assert!(Title::parse("").is_err());
        assert!(Title::parse(&"x".repeat(201)).is_err());
        assert!(Title::parse("a\u{7}b").is_err());
    }

    #[test]
    fn descriptions_keep_line_breaks() {
        assert_eq!(
            Description::parse("one\ntwo").unwrap().into_inner(),
            "one\ntwo"
        );
        assert!(Description::parse(&"x".repeat(5001)).is_err());
    }

    #[test]
    fn categories_are_slugs() {
        assert_eq!(Category::parse("Kitchen").unwrap().as_str(), "kitchen");
        assert_eq!(Category::parse("t-shirts").unwrap().as_str(), "t-shirts");
        for bad in ["", "-a", "a-", "a b", "ä", "a/b", &"a".repeat(51)] {
            assert!(Category::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prices_are_positive_bounded_minor_units() {
        let usd = Currency::parse("usd").unwrap();
        assert_eq!(usd.as_str(), "USD");
        assert!(Currency::parse("XXX").is_err());
        assert!(Currency::parse("").is_err());
        assert_eq!(Price::new(1999, usd).unwrap().money().amount, 1999);
        assert!(Price::new(0, usd).is_err());
        assert!(Price::new(-5, usd).is_err());
        assert!(Price::new(Price::MAX_MINOR + 1, usd).is_err());
    }
}
