//! `cnf-guard`: a command-line companion to the filter for debugging bindings.
//!
//! Every verdict comes from the filter's own code (`cnf_guard::filter::Filter`)
//! running against an emulated Envoy, so the CLI cannot disagree with the
//! filter about a token and a certificate.

mod args;
mod check_config;
mod emulated_envoy;
mod failure;
mod inputs;
mod inspect;
mod report;
mod thumbprint;

use args::Command;
use failure::{Failure, EXIT_INPUT};
use report::Report;
use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|arg| arg == "--json");
    match args::parse(args).and_then(run) {
        Ok(report) => {
            let printed = if json {
                format!("{}\n", report.json)
            } else {
                report.text
            };
            // A closed stdout (`| head`) is not worth a panic.
            let _ = std::io::stdout().write_all(printed.as_bytes());
            ExitCode::from(report.exit_code)
        }
        Err(failure) => {
            if json {
                println!("{}", serde_json::json!({"error": failure.message}));
            }
            eprintln!("cnf-guard: {}", failure.message);
            if failure.usage {
                eprintln!("run `cnf-guard --help` for usage");
            }
            ExitCode::from(EXIT_INPUT)
        }
    }
}

fn run(command: Command) -> Result<Report, Failure> {
    match command {
        Command::Help => Ok(plain(args::HELP)),
        Command::Version => Ok(plain(&format!("cnf-guard {}\n", env!("CARGO_PKG_VERSION")))),
        Command::Thumbprint { certificate, spki } => thumbprint::run(&certificate, spki),
        Command::Inspect(inspect_args) => inspect::run(&inspect_args),
        Command::CheckConfig { config } => check_config::run(&config),
    }
}

fn plain(text: &str) -> Report {
    Report {
        text: text.to_owned(),
        json: serde_json::json!({"text": text}),
        exit_code: 0,
    }
}
