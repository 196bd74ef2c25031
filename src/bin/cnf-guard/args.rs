//! Command-line parsing with clap: the subcommands, their flags, and what each
//! input flag accepts (a file, `-` for stdin, or the content itself).

use crate::failure::Failure;
use clap::builder::{OsStringValueParser, TypedValueParser as _};
use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

/// Where an input comes from: a file, standard input for `-`, or the
/// command-line value itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    File(PathBuf),
    Stdin,
    /// The value given on the command line; `what` names it in messages.
    Inline {
        what: &'static str,
        text: String,
    },
}

impl Input {
    /// A certificate: a PEM file, `-`, or the PEM text itself (plain or
    /// URL-encoded, as in `x-forwarded-client-cert`; pass it as
    /// `--cert="$PEM"`, since a value starting with `-` reads as a flag).
    fn certificate(value: OsString) -> Input {
        Input::file_or_inline(value, "inline PEM", |text| text.contains("-----BEGIN"))
    }

    /// A plugin configuration: a JSON file, `-`, or the JSON object itself.
    fn config(value: OsString) -> Input {
        Input::file_or_inline(value, "inline JSON", |text| {
            text.trim_start().starts_with('{')
        })
    }

    /// A token: `-`, an existing file holding it, or the token itself. A value
    /// that looks like a path stays a path even if no such file exists, so that
    /// reading it says so instead of calling the path a malformed token.
    fn token(value: OsString) -> Input {
        Input::file_or_inline(value, "token", |text| !looks_like_a_path(text))
    }

    /// `-` is stdin and an existing file wins; otherwise the value is the
    /// content itself when `is_content` says it looks like it, else a path
    /// (whose reading then reports that it is missing).
    fn file_or_inline(
        value: OsString,
        what: &'static str,
        is_content: impl Fn(&str) -> bool,
    ) -> Input {
        if value == "-" {
            return Input::Stdin;
        }
        let path = PathBuf::from(value);
        if path.exists() {
            return Input::File(path);
        }
        match path.to_str() {
            Some(text) if is_content(text) => Input::Inline {
                what,
                text: text.to_owned(),
            },
            _ => Input::File(path),
        }
    }
}

/// Whether a `--token` value that names no file was meant as one: it has a
/// path separator (never part of a compact JWS) or a token file's extension.
pub fn looks_like_a_path(value: &str) -> bool {
    value.contains(['/', '\\']) || value.ends_with(".jwt") || value.ends_with(".txt")
}

/// cnf-guard: debug RFC 8705 certificate-bound tokens the way the cnf-guard filter sees them.
#[derive(Debug, Parser)]
#[command(
    name = "cnf-guard",
    version,
    subcommand_required = true,
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Machine-readable output on stdout (errors too: {"error": "…"})
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The certificate's x5t#S256 and the hex digest Envoy reports
    #[command(verbatim_doc_comment)]
    ///
    /// The certificate's x5t#S256 (what a bound token's cnf.x5t#S256 must be) and
    /// the hex SHA-256 Envoy reports as connection.sha256_peer_certificate_digest.
    /// A chain's first certificate is the leaf.
    Thumbprint {
        /// A PEM certificate file, - for stdin, or the PEM itself (after --)
        #[arg(value_name = "CERT.pem|-", value_parser = OsStringValueParser::new().map(Input::certificate))]
        certificate: Input,

        /// The SubjectPublicKeyInfo variant (plugin setting thumbprint: spki)
        #[arg(long)]
        spki: bool,
    },

    /// Run the filter's own code on a token and a client certificate
    #[command(verbatim_doc_comment)]
    ///
    /// Decodes the token (the signature is NOT verified: in Envoy, jwt_authn does
    /// that), shows its cnf and the certificate's thumbprints, then runs the
    /// filter's own code on an emulated request: as if jwt_authn had verified
    /// this token and the connection had presented the certificate (no --cert:
    /// no client certificate). Prints the verdict, the problem slug and the
    /// reply the filter would send.
    Inspect(InspectArgs),

    /// Check a plugin configuration with the filter's own parser
    #[command(verbatim_doc_comment)]
    ///
    /// Parses a plugin configuration with the filter's own parser and prints the
    /// error line the filter would log at start.
    CheckConfig {
        /// Plugin configuration: a JSON file, - for stdin, or the JSON itself
        #[arg(value_name = "plugin.json|-", value_parser = OsStringValueParser::new().map(Input::config))]
        config: Input,
    },
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The token (a "Bearer " prefix is fine), a file holding it, or - for stdin
    #[arg(long, value_name = "TOKEN|FILE|-", value_parser = OsStringValueParser::new().map(Input::token))]
    pub token: Input,

    /// The client certificate the connection presents: a PEM file, - for stdin,
    /// or the PEM itself (--cert="$PEM")
    #[arg(long = "cert", value_name = "CERT.pem|-", value_parser = OsStringValueParser::new().map(Input::certificate))]
    pub certificate: Option<Input>,

    /// Plugin configuration: a JSON file, - for stdin, or the JSON itself [default: {}]
    #[arg(long, value_name = "plugin.json|-", value_parser = OsStringValueParser::new().map(Input::config))]
    pub config: Option<Input>,

    /// The request path [default: /]
    #[arg(long, value_name = "/p")]
    pub path: Option<String>,

    /// The request method [default: GET]
    #[arg(long, value_name = "GET")]
    pub method: Option<String>,

    /// The request's x-request-id
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,

    /// An extra request header; repeatable, and replaces a default of the same name
    #[arg(short = 'H', long = "header", value_name = "name: value", value_parser = header)]
    pub headers: Vec<(String, String)>,
}

impl InspectArgs {
    /// What clap cannot say: stdin feeds one input at most.
    pub fn check(&self) -> Result<(), Failure> {
        let stdin_users = [
            Some(&self.token),
            self.certificate.as_ref(),
            self.config.as_ref(),
        ];
        if stdin_users
            .iter()
            .filter(|input| **input == Some(&Input::Stdin))
            .count()
            > 1
        {
            return Err(Failure::usage("only one input can be read from stdin (-)"));
        }
        Ok(())
    }
}

/// `name: value`, the name lowercased as Envoy hands headers to filters.
fn header(header: &str) -> Result<(String, String), String> {
    let (name, value) = header
        .split_once(':')
        .ok_or_else(|| "not `name: value`".to_owned())?;
    Ok((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
}

const EXIT_CODES: &str = "\
EXIT CODES:
  0  allowed (inspect), valid (check-config), printed (thumbprint)
  1  the filter would deny (inspect; also a would-be denial in mode dry_run),
     invalid configuration (check-config)
  2  usage error or unusable input: unreadable file, not PEM, malformed token,
     invalid --config";
