//! Identifiers of namespaces, containers, execs, ...: containerd's rule, so a name one accepts
//! the other accepts too. Letters and digits, in runs joined by single `.`, `_` or `-`, at most
//! 76 bytes (identifiers become file names and parts of socket paths).

/// The longest identifier.
pub const MAX_LENGTH: usize = 76;

/// Why an identifier is refused (InvalidArgument on the wire).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("identifier must not be empty")]
    Empty,
    #[error("identifier {0:?} is longer than {MAX_LENGTH} characters")]
    TooLong(String),
    #[error("identifier {0:?} must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$")]
    Invalid(String),
}

/// Checks `id` against containerd's identifier rule.
pub fn validate(id: &str) -> Result<(), IdentifierError> {
    if id.is_empty() {
        return Err(IdentifierError::Empty);
    }
    if id.len() > MAX_LENGTH {
        return Err(IdentifierError::TooLong(id.to_string()));
    }
    let mut after_separator = true;
    for b in id.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => after_separator = false,
            b'.' | b'_' | b'-' if !after_separator => after_separator = true,
            _ => return Err(IdentifierError::Invalid(id.to_string())),
        }
    }
    if after_separator {
        return Err(IdentifierError::Invalid(id.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        for good in ["a", "default", "k8s.io", "my-ns_1.x", "0"] {
            assert_eq!(validate(good), Ok(()), "{good}");
        }
        for bad in ["", "-a", "a-", "a..b", "a/b", "../x", "a b", "ä", "a-.b"] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            validate(&"a".repeat(77)),
            Err(IdentifierError::TooLong(_))
        ));
        assert_eq!(validate(&"a".repeat(76)), Ok(()));
    }

    proptest! {
        /// The hand-written check agrees with containerd's regular expression on any input.
        #[test]
        fn agrees_with_containerds_regex(id in "[A-Za-z0-9._/ -]{0,80}") {
            let re = regex::Regex::new(r"^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$").unwrap();
            let expected = re.is_match(&id) && id.len() <= MAX_LENGTH;
            prop_assert_eq!(validate(&id).is_ok(), expected);
        }

        #[test]
        fn never_panics(id in any::<String>()) {
            let _ = validate(&id);
        }
    }
}
