//! `cnf-guard check-config`: the filter's own parser on a plugin configuration.

use crate::args::Input;
use crate::failure::{Failure, EXIT_DENIED};
use crate::report::Report;
use cnf_guard::policy::config::Config;
use serde_json::json;

pub fn run(input: &Input) -> Result<Report, Failure> {
    let raw = input.read()?;
    Ok(match Config::parse(&raw) {
        Ok(config) => Report {
            text: format!("{}: valid\nconfigured: {config}\n", input.name()),
            json: json!({"file": input.name(), "valid": true, "configured": config.to_string()}),
            exit_code: 0,
        },
        Err(error) => Report {
            text: format!(
                "{}: invalid\nthe filter would log: {}\n",
                input.name(),
                start_failure_line(&error.to_string())
            ),
            json: json!({
                "file": input.name(),
                "valid": false,
                "field": error.field,
                "reason": error.reason,
                "log": start_failure_line(&error.to_string()),
            }),
            exit_code: EXIT_DENIED,
        },
    })
}

/// The error-level line the wasm glue logs when `on_configure` fails.
pub fn start_failure_line(error: &str) -> String {
    format!("{error}; the plugin will not start")
}
