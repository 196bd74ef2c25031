//! `cnf-guard`: a command-line companion to the filter for debugging bindings.
//!
//! Every verdict comes from the filter's own code (`cnf_guard::filter::Filter`)
//! running against an emulated Envoy, so the CLI cannot disagree with the
//! filter about a token and a certificate.
//!
//! The CLI is native only: its argument parser (clap) is kept out of wasm32
//! builds, where `cargo build --target wasm32-wasip1` still compiles this binary
//! but as a stub that says how to build the real one.

#[cfg(not(target_arch = "wasm32"))]
mod args;
#[cfg(not(target_arch = "wasm32"))]
mod check_config;
#[cfg(not(target_arch = "wasm32"))]
mod emulated_envoy;
#[cfg(not(target_arch = "wasm32"))]
mod failure;
#[cfg(not(target_arch = "wasm32"))]
mod inputs;
#[cfg(not(target_arch = "wasm32"))]
mod inspect;
#[cfg(not(target_arch = "wasm32"))]
mod report;
#[cfg(not(target_arch = "wasm32"))]
mod thumbprint;

use std::process::ExitCode;

#[cfg(target_arch = "wasm32")]
fn main() -> ExitCode {
    eprintln!(
        "cnf-guard: the CLI is not built for wasm32; build it natively: cargo build --release --bin cnf-guard"
    );
    ExitCode::from(2)
}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> ExitCode {
    native::main()
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use crate::args::{Cli, Command};
    use crate::failure::{Failure, EXIT_INPUT};
    use crate::report::Report;
    use crate::{check_config, inspect, thumbprint};
    use clap::error::ErrorKind;
    use clap::Parser as _;
    use std::io::Write as _;
    use std::process::ExitCode;

    pub fn main() -> ExitCode {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        // Read before parsing, so that usage errors come out as JSON too.
        let json = args.iter().skip(1).any(|arg| arg == "--json");
        let result = match Cli::try_parse_from(args) {
            Ok(cli) => run(cli.command),
            Err(error) => match error.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion if json => {
                    Ok(plain(error.render().to_string()))
                }
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    // Help on stdout (in colour on a terminal), exit 0.
                    let _ = error.print();
                    return ExitCode::SUCCESS;
                }
                _ if json => Err(Failure::usage(clap_message(&error))),
                _ => {
                    let _ = error.print();
                    return ExitCode::from(EXIT_INPUT);
                }
            },
        };
        match result {
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
            Command::Thumbprint { certificate, spki } => thumbprint::run(&certificate, spki),
            Command::Inspect(inspect_args) => {
                inspect_args.check()?;
                inspect::run(&inspect_args)
            }
            Command::CheckConfig { config } => check_config::run(&config),
        }
    }

    /// clap's error on one line, without its `error: ` prefix and usage
    /// footer: `{"error": "unexpected argument '--frob' found"}`.
    fn clap_message(error: &clap::Error) -> String {
        let rendered = error.render().to_string();
        let first_paragraph = rendered.split("\n\n").next().unwrap_or_default();
        let message = first_paragraph
            .strip_prefix("error: ")
            .unwrap_or(first_paragraph);
        message.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn plain(text: String) -> Report {
        Report {
            json: serde_json::json!({"text": text}),
            text,
            exit_code: 0,
        }
    }
}
