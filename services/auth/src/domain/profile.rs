use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fn clean(raw: &str, what: &str, max: usize, required: bool) -> Result<String, String> {
    storefront_kit::validate::text(raw, what, max, required, false)
}

/// The name shown on orders and in the shop: 1 to 100 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        clean(raw, "a name", 100, true).map(DisplayName)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A phone number, normalised to `+` and digits (E.164 shape: 7 to 15 digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        let (plus, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => ("+", rest),
            None => ("", trimmed),
        };
        let mut digits = String::new();
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '(' | ')' | '.' => {}
                _ => return Err(format!("{trimmed:?} is not a phone number")),
            }
        }
        if !(7..=15).contains(&digits.len()) {
            return Err("a phone number has 7 to 15 digits".into());
        }
        Ok(Phone(format!("{plus}{digits}")))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// The officially assigned ISO 3166-1 alpha-2 codes (249; from the standard's list as pycountry
/// carries it). A user-assigned code such as `XX` or `ZZ` names no country to ship to.
const COUNTRIES: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// A shipping address as the customer gives it; the country is an ISO 3166-1 alpha-2 code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "UserAddress")]
pub struct Address {
    /// Street and number: 1 to 200 characters.
    pub line1: String,
    /// More of the address, up to 200 characters; absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    /// 1 to 100 characters.
    pub city: String,
    /// 1 to 20 letters, digits, spaces and dashes.
    pub postal_code: String,
    /// An ISO 3166-1 alpha-2 code, such as `DE` (stored upper-cased).
    pub country: String,
}

impl Address {
    /// Checks and normalises every part; errors name the part (`address.city`).
    pub fn parse(raw: Address) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        // The field is named by its key; the message by what a person calls it.
        let mut part = |name: &str, what: &str, value: &str, max: usize, required: bool| {
            clean(value, what, max, required).unwrap_or_else(|e| {
                errors.push((format!("address.{name}"), e));
                String::new()
            })
        };
        let line1 = part("line1", "the street and number", &raw.line1, 200, true);
        let line2 = raw
            .line2
            .as_deref()
            .map(|l| part("line2", "the second address line", l, 200, false))
            .filter(|l| !l.is_empty());
        let city = part("city", "the city", &raw.city, 100, true);
        let postal_code = part("postal_code", "the postal code", &raw.postal_code, 20, true);
        if !postal_code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-')
        {
            errors.push((
                "address.postal_code".into(),
                "letters, digits, spaces and dashes only".into(),
            ));
        }
        let country = raw.country.trim().to_ascii_uppercase();
        if COUNTRIES.binary_search(&country.as_str()).is_err() {
            errors.push((
                "address.country".into(),
                "a two-letter ISO 3166 country code, like DE".into(),
            ));
        }
        if errors.is_empty() {
            Ok(Address {
                line1,
                line2,
                city,
                postal_code,
                country,
            })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_normalise_to_digits() {
        assert_eq!(
            Phone::parse(" +49 (30) 123-4567 ").unwrap().into_inner(),
            "+49301234567"
        );
        assert!(Phone::parse("call me").is_err());
        assert!(Phone::parse("123").is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
        assert!(DisplayName::parse("bad\u{0007}").is_err());
        assert_eq!(DisplayName::parse(" Ada ").unwrap().into_inner(), "Ada");
    }

    #[test]
    fn address_errors_name_the_part() {
        let errors = Address::parse(Address {
            line1: "".into(),
            line2: None,
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: "Germany".into(),
        })
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["address.line1", "address.country"]);
    }

    /// A walk found `XX` accepted as a country.
    #[test]
    fn a_country_is_one_that_exists() {
        let with = |country: &str| {
            Address::parse(Address {
                line1: "Unter den Linden 1".into(),
                line2: None,
                city: "Berlin".into(),
                postal_code: "10117".into(),
                country: country.into(),
            })
        };
        assert_eq!(with(" de ").unwrap().country, "DE");
        for country in ["US", "GB", "ZW", "AD"] {
            assert!(with(country).is_ok(), "{country}");
        }
        for country in ["XX", "ZZ", "UK", "EU", "D", "DEU", "", "1A"] {
            assert!(with(country).is_err(), "{country}");
        }
        assert!(
            COUNTRIES.windows(2).all(|w| w[0] < w[1]),
            "sorted, for the search"
        );
    }
}
