//! What a command prints, in both forms, and the exit code it ends with.

use serde_json::Value;

pub struct Report {
    pub text: String,
    pub json: Value,
    pub exit_code: u8,
}
