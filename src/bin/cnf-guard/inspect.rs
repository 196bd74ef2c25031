//! `cnf-guard inspect`: the token, its `cnf`, the certificate, and the verdict
//! the filter itself reaches on an emulated request carrying both.

use crate::args::InspectArgs;
use crate::emulated_envoy::EmulatedEnvoy;
use crate::failure::{Failure, EXIT_DENIED};
use crate::inputs::{Certificate, Token};
use crate::report::Report;
use cnf_guard::dpop::replay_store::StoreResponse;
use cnf_guard::filter::{Filter, Verdict};
use cnf_guard::host::log_capture;
use cnf_guard::policy::config::Config;
use cnf_guard::reply::stats::{Counter, PendingCounts};
use cnf_guard::reply::Reply;
use serde_json::{json, Value};
use std::fmt::Write as _;

pub fn run(args: &InspectArgs) -> Result<Report, Failure> {
    let token = Token::load(&args.token)?;
    let certificate = args
        .certificate
        .as_ref()
        .map(Certificate::load)
        .transpose()?;
    let config = match &args.config {
        None => Config::default(),
        Some(input) => Config::parse(&input.read()?)
            .map_err(|error| Failure::input(format!("{}: {error}", input.name())))?,
    };

    let headers = request_headers(args, &token);
    let envoy = EmulatedEnvoy::new(
        &config.claims.metadata_key,
        &token.payload,
        certificate.as_ref(),
        headers,
    );
    let counts = PendingCounts::default();
    // The filter logs through the `log` facade; keep its lines for the report.
    log_capture::install();
    log_capture::take();
    let filter = Filter::new(config.clone());
    let verdict = match filter.on_request_headers(&envoy, &counts) {
        Verdict::AwaitingReplayStore(awaiting) => {
            log::info!(
                "the proof passed every local check; inspect does not reach the replay store \
                 (dpop.replay_store) and answers as it does for a first use"
            );
            let first_use = StoreResponse {
                status: Some(200),
                body: br#"{"SET":[true,"OK"]}"#.to_vec(),
            };
            filter.on_replay_store_answer(&envoy, *awaiting, &first_use, &counts)
        }
        verdict => verdict,
    };
    let outcome = Outcome::from_counts(&counts.drain(), verdict);
    let reply = envoy.reply.borrow().clone();
    let log = log_capture::take();

    let json = json!({
        "token": {
            "signature_verified": false,
            "header": token.header,
            "claims": token.payload,
        },
        "cnf": token.cnf(),
        "certificate": certificate.as_ref().map(|c| json!({
            "source": c.source,
            "subject": c.subject,
            "x5t#S256": c.thumbprint.to_x5t(),
            "sha256_hex": c.hex_digest(),
            "spki_x5t#S256": c.spki_thumbprint.to_x5t(),
        })),
        "configured": config.to_string(),
        "verdict": outcome.verdict(),
        "outcome": outcome.name(),
        "slug": outcome.slug(),
        "reply": reply.as_ref().map(reply_json),
        "log": log.iter().map(|(level, line)| json!({"level": level_name(*level), "message": line})).collect::<Vec<_>>(),
    });
    let text = render_text(
        &token,
        certificate.as_ref(),
        &config,
        &outcome,
        reply.as_ref(),
        &log,
    );
    Ok(Report {
        text,
        json,
        exit_code: if outcome.slug().is_some() {
            EXIT_DENIED
        } else {
            0
        },
    })
}

/// The request as Envoy would hand it to the filter. jwt_authn is assumed to
/// forward the header (`forward: true`), which only the header source needs.
fn request_headers(args: &InspectArgs, token: &Token) -> Vec<(String, String)> {
    let mut headers = vec![
        (
            ":method".to_owned(),
            args.method.clone().unwrap_or_else(|| "GET".to_owned()),
        ),
        (
            ":path".to_owned(),
            args.path.clone().unwrap_or_else(|| "/".to_owned()),
        ),
        (":scheme".to_owned(), "https".to_owned()),
        (":authority".to_owned(), "localhost".to_owned()),
        ("authorization".to_owned(), format!("Bearer {}", token.text)),
    ];
    if let Some(id) = &args.request_id {
        headers.push(("x-request-id".to_owned(), id.clone()));
    }
    // Later -H values replace defaults of the same name.
    for (name, value) in &args.headers {
        headers.retain(|(existing, _)| existing != name);
        headers.push((name.clone(), value.clone()));
    }
    headers
}

/// What the filter did, read from the counter it bumped: every request bumps one.
enum Outcome {
    Allowed,
    AllowedUnbound,
    Denied(&'static str),
    DryRun(&'static str),
    /// No counter moved; should not happen, and is reported rather than guessed.
    Unknown(Verdict),
}

impl Outcome {
    fn from_counts(counts: &[(Counter, u64)], verdict: Verdict) -> Outcome {
        match counts {
            [(Counter::Allowed, 1)] => Outcome::Allowed,
            [(Counter::AllowedUnbound, 1)] => Outcome::AllowedUnbound,
            [(Counter::Denied(kind), 1)] => Outcome::Denied(kind.slug()),
            [(Counter::DryRun(kind), 1)] => Outcome::DryRun(kind.slug()),
            _ => Outcome::Unknown(verdict),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::AllowedUnbound => "allowed_unbound",
            Outcome::Denied(_) => "denied",
            Outcome::DryRun(_) => "dry_run",
            Outcome::Unknown(_) => "unknown",
        }
    }

    /// `allow` or `deny`: what happens to the request.
    fn verdict(&self) -> &'static str {
        match self {
            Outcome::Allowed | Outcome::AllowedUnbound | Outcome::DryRun(_) => "allow",
            Outcome::Denied(_) => "deny",
            Outcome::Unknown(Verdict::Continue) => "allow",
            Outcome::Unknown(Verdict::Stop | Verdict::AwaitingReplayStore(_)) => "deny",
        }
    }

    fn slug(&self) -> Option<&'static str> {
        match self {
            Outcome::Denied(slug) | Outcome::DryRun(slug) => Some(slug),
            _ => None,
        }
    }

    fn summary(&self) -> String {
        match self {
            Outcome::Allowed => "ALLOW: every binding the token carries was proven".to_owned(),
            Outcome::AllowedUnbound => {
                "ALLOW: unbound token let through by binding: optional".to_owned()
            }
            Outcome::Denied(slug) => format!("DENY: {slug} (401 problem+json)"),
            Outcome::DryRun(slug) => {
                format!("WOULD DENY: {slug} (mode: dry_run logs it and lets the request through)")
            }
            Outcome::Unknown(verdict) => format!("no outcome counted; filter verdict {verdict:?}"),
        }
    }
}

fn reply_json(reply: &Reply) -> Value {
    let body: Value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&reply.body).into_owned()));
    json!({
        "status": reply.status,
        "headers": reply.headers.iter().map(|(name, value)| ((*name).to_owned(), Value::String(value.clone()))).collect::<serde_json::Map<_, _>>(),
        "body": body,
    })
}

fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Trace => "trace",
        log::Level::Debug => "debug",
        log::Level::Info => "info",
        log::Level::Warn => "warn",
        log::Level::Error => "error",
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

fn render_text(
    token: &Token,
    certificate: Option<&Certificate>,
    config: &Config,
    outcome: &Outcome,
    reply: Option<&Reply>,
    log: &[(log::Level, String)],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "token (signature NOT verified here; in Envoy jwt_authn verifies it)\n header:"
    );
    out.push_str(&indent(&pretty(&token.header)));
    out.push_str(" claims:\n");
    out.push_str(&indent(&pretty(&token.payload)));
    let token_x5t = token
        .cnf()
        .and_then(|cnf| cnf.get(cnf_guard::token::binding::X5T_S256))
        .and_then(Value::as_str);
    match token.cnf() {
        None => out.push_str("cnf: none (the token is not sender-constrained)\n"),
        Some(cnf) => {
            let _ = writeln!(out, "cnf: {cnf}");
        }
    }
    match certificate {
        None => out.push_str("certificate: none (the connection presents no client certificate)\n"),
        Some(certificate) => {
            let compare = |x5t: &str| match token_x5t {
                Some(expected) if expected == x5t => "  = token",
                Some(_) => "  ≠ token",
                None => "",
            };
            let x5t = certificate.thumbprint.to_x5t();
            let spki = certificate.spki_thumbprint.to_x5t();
            let _ = write!(
                out,
                "certificate: {} ({})\n  x5t#S256:       {x5t}{}\n  spki x5t#S256:  {spki}{}\n  sha256 (hex):   {}\n",
                certificate.source,
                certificate.subject,
                compare(&x5t),
                compare(&spki),
                certificate.hex_digest(),
            );
        }
    }
    let _ = writeln!(out, "configured: {config}");
    let _ = writeln!(out, "verdict: {}", outcome.summary());
    if let Some(reply) = reply {
        let _ = writeln!(out, "reply: {}", reply.status);
        for (name, value) in &reply.headers {
            let _ = writeln!(out, "  {name}: {value}");
        }
        // The body exactly as the filter sends it.
        let _ = writeln!(out, "  {}", String::from_utf8_lossy(&reply.body));
    }
    if !log.is_empty() {
        out.push_str("filter log:\n");
        for (level, line) in log {
            let _ = writeln!(out, "  [{}] {line}", level_name(*level));
        }
    }
    out
}
