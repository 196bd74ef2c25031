//! Command-line parsing, std only: three subcommands with a handful of flags
//! do not justify a parser dependency.

use crate::failure::Failure;
use std::path::PathBuf;

/// Where an input comes from: a file, or standard input for `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    File(PathBuf),
    Stdin,
}

impl Input {
    fn from_arg(arg: String) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::File(PathBuf::from(arg))
        }
    }
}

#[derive(Debug)]
pub enum Command {
    Help,
    Version,
    Thumbprint { certificate: Input, spki: bool },
    Inspect(InspectArgs),
    CheckConfig { config: Input },
}

#[derive(Debug, Default)]
pub struct InspectArgs {
    /// The token itself, or `None` for `-` (read from standard input).
    pub token: Option<String>,
    pub certificate: Option<Input>,
    pub config: Option<Input>,
    pub path: Option<String>,
    pub method: Option<String>,
    pub request_id: Option<String>,
    /// Extra request headers, `name: value`.
    pub headers: Vec<(String, String)>,
}

/// Parses everything but `--json`, which may stand anywhere and is read by `main`.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, Failure> {
    let mut words = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--json" => {}
            "-h" | "--help" | "help" if words.is_empty() => return Ok(Command::Help),
            "-V" | "--version" if words.is_empty() => return Ok(Command::Version),
            _ => words.push(arg),
        }
    }
    let mut words = words.into_iter();
    let command = match words.next().as_deref() {
        None => return Err(Failure::usage("no command given")),
        Some("thumbprint") => thumbprint(words)?,
        Some("inspect") => inspect(words)?,
        Some("check-config") => check_config(words)?,
        Some(other) => return Err(Failure::usage(format!("unknown command `{other}`"))),
    };
    Ok(command)
}

fn thumbprint(words: impl Iterator<Item = String>) -> Result<Command, Failure> {
    let mut certificate = None;
    let mut spki = false;
    for word in words {
        match word.as_str() {
            "--spki" => spki = true,
            "-h" | "--help" => return Ok(Command::Help),
            flag if is_flag(flag) => return Err(unknown_flag("thumbprint", flag)),
            _ => set_once(&mut certificate, Input::from_arg(word), "CERT.pem")?,
        }
    }
    let certificate =
        certificate.ok_or_else(|| Failure::usage("thumbprint needs a certificate: CERT.pem"))?;
    Ok(Command::Thumbprint { certificate, spki })
}

fn inspect(mut words: impl Iterator<Item = String>) -> Result<Command, Failure> {
    let mut args = InspectArgs::default();
    let mut token_given = false;
    while let Some(word) = words.next() {
        let mut value = |flag: &str| {
            words
                .next()
                .ok_or_else(|| Failure::usage(format!("{flag} needs a value")))
        };
        match word.as_str() {
            "--token" => {
                if token_given {
                    return Err(Failure::usage("--token given twice"));
                }
                token_given = true;
                let token = value("--token")?;
                args.token = (token != "-").then_some(token);
            }
            "--cert" => set_once(
                &mut args.certificate,
                Input::from_arg(value("--cert")?),
                "--cert",
            )?,
            "--config" => set_once(
                &mut args.config,
                Input::from_arg(value("--config")?),
                "--config",
            )?,
            "--path" => set_once(&mut args.path, value("--path")?, "--path")?,
            "--method" => set_once(&mut args.method, value("--method")?, "--method")?,
            "--request-id" => {
                set_once(&mut args.request_id, value("--request-id")?, "--request-id")?
            }
            "-H" | "--header" => {
                let header = value("--header")?;
                let (name, value) = header.split_once(':').ok_or_else(|| {
                    Failure::usage(format!("--header `{header}` is not `name: value`"))
                })?;
                args.headers
                    .push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(unknown_flag("inspect", other)),
        }
    }
    if !token_given {
        return Err(Failure::usage(
            "inspect needs --token TOKEN (or - for stdin)",
        ));
    }
    let stdin_users = [
        args.token.is_none(),
        args.certificate == Some(Input::Stdin),
        args.config == Some(Input::Stdin),
    ];
    if stdin_users.iter().filter(|uses| **uses).count() > 1 {
        return Err(Failure::usage("only one input can be read from stdin (-)"));
    }
    Ok(Command::Inspect(args))
}

fn check_config(words: impl Iterator<Item = String>) -> Result<Command, Failure> {
    let mut config = None;
    for word in words {
        match word.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            flag if is_flag(flag) => return Err(unknown_flag("check-config", flag)),
            _ => set_once(&mut config, Input::from_arg(word), "plugin.json")?,
        }
    }
    let config =
        config.ok_or_else(|| Failure::usage("check-config needs a file: plugin.json (or -)"))?;
    Ok(Command::CheckConfig { config })
}

fn is_flag(word: &str) -> bool {
    word.starts_with('-') && word != "-"
}

fn unknown_flag(command: &str, flag: &str) -> Failure {
    Failure::usage(format!("{command}: unknown argument `{flag}`"))
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), Failure> {
    if slot.is_some() {
        return Err(Failure::usage(format!("{name} given twice")));
    }
    *slot = Some(value);
    Ok(())
}

pub const HELP: &str = "\
cnf-guard: debug RFC 8705 certificate-bound tokens the way the cnf-guard filter sees them.

USAGE:
  cnf-guard thumbprint CERT.pem [--spki]
      The certificate's x5t#S256 (what a bound token's cnf.x5t#S256 must be) and the
      hex SHA-256 Envoy reports as connection.sha256_peer_certificate_digest.
      --spki: the SubjectPublicKeyInfo variant (plugin setting thumbprint: spki).

  cnf-guard inspect --token TOKEN|- [--cert CERT.pem] [--config plugin.json]
                    [--path /p] [--method GET] [--request-id ID] [-H 'name: value']...
      Decodes the token (the signature is NOT verified: in Envoy, jwt_authn does that),
      shows its cnf and the certificate's thumbprints, then runs the filter's own code
      on an emulated request: as if jwt_authn had verified this token and the
      connection had presented CERT.pem (no --cert: no client certificate).
      Prints the verdict, the problem slug and the reply the filter would send.

  cnf-guard check-config plugin.json|-
      Parses a plugin configuration with the filter's own parser and prints the
      error line the filter would log at start.

OPTIONS:
  --json          machine-readable output on stdout (errors too)
  -h, --help      this help
  -V, --version   the version

EXIT CODES:
  0  allowed (inspect), valid (check-config), printed (thumbprint)
  1  the filter would deny (inspect; also a would-be denial in mode dry_run),
     invalid configuration (check-config)
  2  usage error or unusable input: unreadable file, not PEM, malformed token,
     invalid --config
";
