use std::fmt;

/// An email address, trimmed and lower-cased: two spellings of one address are one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim().to_lowercase();
        let invalid = || format!("{:?} is not a valid email address", raw.trim());
        if email.is_empty() {
            return Err("an email address is required".into());
        }
        if email.len() > 254 {
            return Err("an email address has at most 254 characters".into());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let domain_ok = domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if local_ok && domain_ok {
            Ok(Email(email))
        } else {
            Err(invalid())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password that meets the policy. Never logged, never stored: only its argon2id hash is.
pub struct Password(String);

pub const PASSWORD_MIN_CHARS: usize = 10;
pub const PASSWORD_MAX_CHARS: usize = 128;

impl Password {
    /// The policy: 10 to 128 characters, with letters and at least one digit or symbol, and not
    /// the email address itself.
    pub fn parse(raw: &str, email: Option<&Email>) -> Result<Self, String> {
        let chars = raw.chars().count();
        if chars < PASSWORD_MIN_CHARS {
            return Err(format!(
                "use at least {PASSWORD_MIN_CHARS} characters (this one has {chars})"
            ));
        }
        if chars > PASSWORD_MAX_CHARS {
            return Err(format!("use at most {PASSWORD_MAX_CHARS} characters"));
        }
        let letters = raw.chars().any(char::is_alphabetic);
        let others = raw.chars().any(|c| !c.is_alphabetic());
        if !(letters && others) {
            return Err("mix letters with at least one digit or symbol".into());
        }
        if email.is_some_and(|e| raw.trim().eq_ignore_ascii_case(e.as_str())) {
            return Err("the password must not be your email address".into());
        }
        Ok(Password(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_case_insensitive_and_trimmed() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@exa_mple.com",
            "ada@@example.com",
            ".ada@example.com",
            "ada@-example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn password_policy_explains_itself() {
        assert!(
            Password::parse("short1", None)
                .unwrap_err()
                .contains("at least 10")
        );
        assert!(
            Password::parse("onlyletterslong", None)
                .unwrap_err()
                .contains("digit or symbol")
        );
        assert!(
            Password::parse(&"a1".repeat(65), None)
                .unwrap_err()
                .contains("at most")
        );
        let email = Email::parse("ada1@example.com").unwrap();
        assert!(Password::parse("ada1@example.com", Some(&email)).is_err());
        assert!(Password::parse("correct horse 9", None).is_ok());
    }
}
