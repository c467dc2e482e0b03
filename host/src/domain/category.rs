//! Message categories: what a message is for, and so which opt-outs it obeys.
//!
//! Categories are free-form names (`transactional`, `marketing`, `order`, …) with two reserved
//! ones. `all` exists only on the opt-out side: opting out of `all` blocks every category.
//! `compliance` is the category of keyword confirmations (the reply to STOP, START, HELP), which
//! the law requires to reach even a number that just opted out. Neither can be chosen by a
//! caller for a message.

use serde::{Deserialize, Serialize};

/// The stored name of [`Category::All`].
const ALL_CATEGORIES: &str = "all";
/// The stored name of [`Category::Compliance`].
const COMPLIANCE: &str = "compliance";
/// The category of a message whose request and template name none.
const TRANSACTIONAL: &str = "transactional";
/// The longest category name accepted.
const MAX_LEN: usize = 64;

/// What a message is for; see the module documentation for the reserved variants.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Category {
    /// Reserved: an opt-out of every category. Never the category of a message.
    All,
    /// Reserved: keyword confirmations, sent whatever the recipient opted out of.
    Compliance,
    /// Any other category, by its lowercase name.
    Named(String),
}

/// Why a category name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CategoryError {
    /// Not 1–64 ASCII letters, digits, `_`, `-` or `.`.
    #[error("category `{0}` is not 1 to {MAX_LEN} ASCII letters, digits, `_`, `-` or `.`")]
    Invalid(String),
    /// `all` or `compliance`, where a message's category was expected.
    #[error("category `{0}` is reserved and cannot be used for a message")]
    Reserved(String),
}

impl Category {
    /// Parses any category name, reserved ones included; names are case-folded.
    pub fn parse(name: &str) -> Result<Self, CategoryError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid {
            return Err(CategoryError::Invalid(name.chars().take(MAX_LEN).collect()));
        }
        let name = name.to_ascii_lowercase();
        Ok(match name.as_str() {
            ALL_CATEGORIES => Self::All,
            COMPLIANCE => Self::Compliance,
            _ => Self::Named(name),
        })
    }

    /// Parses the category a caller chose for a message: reserved names are refused.
    pub fn for_message(name: &str) -> Result<Self, CategoryError> {
        match Self::parse(name)? {
            Self::Named(name) => Ok(Self::Named(name)),
            reserved => Err(CategoryError::Reserved(reserved.as_str().to_owned())),
        }
    }

    /// The category of a message that names none: `transactional`.
    #[must_use]
    pub fn transactional() -> Self {
        Self::Named(TRANSACTIONAL.to_owned())
    }

    /// The category's name, as stored and as the API shows it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::All => ALL_CATEGORIES,
            Self::Compliance => COMPLIANCE,
            Self::Named(name) => name,
        }
    }

    /// Whether messages of this category skip the opt-out check (keyword confirmations).
    #[must_use]
    pub fn ignores_opt_out(&self) -> bool {
        matches!(self, Self::Compliance)
    }
}

impl TryFrom<String> for Category {
    type Error = CategoryError;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::parse(&name)
    }
}

impl From<Category> for String {
    fn from(category: Category) -> Self {
        match category {
            Category::Named(name) => name,
            reserved => reserved.as_str().to_owned(),
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reserved names parse to their variants; others are case-folded names.
    #[test]
    fn parses_names() {
        assert_eq!(Category::parse("ALL"), Ok(Category::All));
        assert_eq!(Category::parse("compliance"), Ok(Category::Compliance));
        assert_eq!(
            Category::parse("Marketing"),
            Ok(Category::Named("marketing".into()))
        );
        assert_eq!(Category::transactional().as_str(), "transactional");
        for bad in ["", "two words", "ü", &"x".repeat(65)] {
            assert!(
                matches!(Category::parse(bad), Err(CategoryError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    /// A message may not claim a reserved category.
    #[test]
    fn messages_cannot_use_reserved_categories() {
        assert!(matches!(
            Category::for_message("all"),
            Err(CategoryError::Reserved(_))
        ));
        assert!(matches!(
            Category::for_message("Compliance"),
            Err(CategoryError::Reserved(_))
        ));
        assert_eq!(
            Category::for_message("order"),
            Ok(Category::Named("order".into()))
        );
        assert!(Category::Compliance.ignores_opt_out());
        assert!(!Category::transactional().ignores_opt_out());
    }
}
