//! Why the CLI could not do what it was asked, and the exit code that says so.

/// The filter would deny, or the configuration is invalid.
pub const EXIT_DENIED: u8 = 1;
/// Bad usage or unusable input.
pub const EXIT_INPUT: u8 = 2;

#[derive(Debug)]
pub struct Failure {
    pub message: String,
    /// Usage mistakes also print a pointer to `--help`.
    pub usage: bool,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            usage: true,
        }
    }

    pub fn input(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            usage: false,
        }
    }
}
