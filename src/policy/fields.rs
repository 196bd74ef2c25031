//! How the configuration names its fields: the error that names the field a
//! value is wrong in, the checks the blocks share, and values as spelled.

/// A configuration error, phrased for the log line that fails plugin start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the offending field (`.` for the document itself).
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid configuration at `{}`: {}",
            self.field, self.reason
        )
    }
}

/// A unit variant as the configuration spells it (`DryRun` → `dry_run`).
pub(crate) fn snake_name(value: &dyn std::fmt::Debug) -> String {
    let debug = format!("{value:?}");
    let mut snake = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    snake
}

pub(crate) fn invalid(field: &str, reason: &str) -> ConfigError {
    ConfigError {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

pub(crate) fn is_header_name(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
