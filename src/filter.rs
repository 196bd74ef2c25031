//! One request through cnf-guard: gather facts through the host, decide,
//! then allow, deny with a problem reply, or (dry run) log and allow.

use crate::certificate::client_certificate;
use crate::claims::ClaimsReader;
use crate::config::{Config, Mode};
use crate::decision::{decide, Denial, Outcome};
use crate::host::{Host, LogLevel};
use crate::problem::{render, ProblemContext};
use crate::stats::{Counter, PendingCounts};

/// What the proxy should do with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// A local reply was sent (or sending failed); the request must not go on.
    Stop,
}

/// The configured filter, built once per plugin configuration.
#[derive(Debug, Clone)]
pub struct Filter {
    config: Config,
    claims: ClaimsReader,
}

impl Filter {
    pub fn new(config: Config) -> Filter {
        let claims = ClaimsReader::new(&config.claims);
        Filter { config, claims }
    }

    pub fn on_request_headers(&self, host: &impl Host, counts: &PendingCounts) -> Verdict {
        let token = self.claims.token_binding(host);
        let certificate = token
            .needs_certificate()
            .then(|| client_certificate(self.config.thumbprint, host));
        match decide(self.config.binding, token, certificate) {
            Outcome::AllowedBound => {
                counts.add(Counter::Allowed);
                Verdict::Continue
            }
            Outcome::AllowedUnbound => {
                counts.add(Counter::AllowedUnbound);
                Verdict::Continue
            }
            Outcome::Denied(denial) => self.deny(host, counts, &denial),
        }
    }

    fn deny(&self, host: &impl Host, counts: &PendingCounts, denial: &Denial) -> Verdict {
        let kind = denial.kind();
        let request_id = header_text(host, "x-request-id");
        let (token_x5t, certificate_x5t) = thumbprints(denial);
        let dry_run = self.config.mode == Mode::DryRun;
        host.log(
            LogLevel::Info,
            &format!(
                "{} slug={} request_id={} token_x5t={} certificate_x5t={} detail=\"{}\"",
                if dry_run {
                    "would deny (dry run)"
                } else {
                    "denied"
                },
                kind.slug(),
                request_id.as_deref().unwrap_or("-"),
                token_x5t,
                certificate_x5t,
                denial.detail(),
            ),
        );
        if dry_run {
            counts.add(Counter::DryRun(kind));
            return Verdict::Continue;
        }
        counts.add(Counter::Denied(kind));
        let path = header_text(host, ":path");
        let timestamp = match host.now() {
            Ok(now) => humantime::format_rfc3339_seconds(now).to_string(),
            Err(_) => humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH).to_string(),
        };
        let reply = render(
            denial,
            &ProblemContext {
                type_base: &self.config.problem_type_base,
                path: path.as_deref(),
                timestamp: &timestamp,
                request_id: request_id.as_deref(),
            },
        );
        if let Err(error) = host.send_reply(&reply) {
            host.log(
                LogLevel::Error,
                &format!(
                    "could not send the {} reply, holding the request: {error}",
                    kind.slug()
                ),
            );
        }
        Verdict::Stop
    }
}

/// The two thumbprints for the denial log line; `-` where there is none.
fn thumbprints(denial: &Denial) -> (String, String) {
    match denial {
        Denial::MtlsBindingMismatch {
            expected,
            presented,
        } => (expected.to_x5t(), presented.to_x5t()),
        Denial::MtlsRequired { expected, .. } => (expected.to_x5t(), "-".to_owned()),
        _ => ("-".to_owned(), "-".to_owned()),
    }
}

fn header_text(host: &impl Host, name: &str) -> Option<String> {
    let value = host.request_header(name).ok().flatten()?;
    String::from_utf8(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::TokenBinding;
    use crate::host::mock::MockHost;
    use crate::problem::ProblemKind;
    use crate::thumbprint::Thumbprint;
    use serde_json::Value;

    use crate::certificate::PEER_DIGEST as DIGEST;
    use crate::claims::test_paths::x5t;

    fn hex_digest(der: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(der))
    }

    fn bound_request(token_cert: &[u8], connection_cert: &[u8]) -> MockHost {
        MockHost::default()
            .with_property(&x5t(), Thumbprint::of(token_cert).to_x5t().into_bytes())
            .with_property(&DIGEST, hex_digest(connection_cert).into_bytes())
            .with_header("x-request-id", "req-9")
            .with_header(":path", "/api?q=1")
    }

    #[test]
    fn success_path_makes_two_host_calls() {
        let host = bound_request(b"one", b"one");
        let counts = PendingCounts::default();
        assert_eq!(
            Filter::new(Config::default()).on_request_headers(&host, &counts),
            Verdict::Continue
        );
        assert_eq!(host.calls.get(), 2);
        assert!(host.reply().is_none());
        assert_eq!(counts.drain(), vec![(Counter::Allowed, 1)]);
    }

    #[test]
    fn mismatch_sends_problem_and_logs_thumbprints() {
        let host = bound_request(b"one", b"two");
        let counts = PendingCounts::default();
        assert_eq!(
            Filter::new(Config::default()).on_request_headers(&host, &counts),
            Verdict::Stop
        );
        let reply = host.reply().unwrap();
        assert_eq!(reply.status, 401);
        let body: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["type"], "urn:cnf-guard:problem:mtls-binding-mismatch");
        assert_eq!(body["instance"], "/api");
        assert_eq!(body["request_id"], "req-9");
        assert_eq!(body["timestamp"], "2027-01-15T08:00:00Z");
        assert!(host.logged(&format!(
            "slug=mtls-binding-mismatch request_id=req-9 token_x5t={}",
            Thumbprint::of(b"one").to_x5t()
        )));
        assert!(host.logged(&format!(
            "certificate_x5t={}",
            Thumbprint::of(b"two").to_x5t()
        )));
        assert_eq!(
            counts.drain(),
            vec![(Counter::Denied(ProblemKind::MtlsBindingMismatch), 1)]
        );
    }

    #[test]
    fn dry_run_lets_denials_through_and_counts_them() {
        let host = bound_request(b"one", b"two");
        let counts = PendingCounts::default();
        let config = Config {
            mode: Mode::DryRun,
            ..Config::default()
        };
        assert_eq!(
            Filter::new(config).on_request_headers(&host, &counts),
            Verdict::Continue
        );
        assert!(host.reply().is_none());
        assert!(host.logged("would deny (dry run) slug=mtls-binding-mismatch"));
        assert_eq!(
            counts.drain(),
            vec![(Counter::DryRun(ProblemKind::MtlsBindingMismatch), 1)]
        );
    }

    #[test]
    fn missing_token_is_authentication_failed() {
        let host = MockHost::default();
        let counts = PendingCounts::default();
        assert!(matches!(
            ClaimsReader::new(&Default::default()).token_binding(&host),
            TokenBinding::Missing(_)
        ));
        assert_eq!(
            Filter::new(Config::default()).on_request_headers(&host, &counts),
            Verdict::Stop
        );
        let reply = host.reply().unwrap();
        let body: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["type"], "urn:cnf-guard:problem:authentication-failed");
        assert!(body.get("request_id").is_none());
        assert!(reply
            .headers
            .contains(&("www-authenticate", "Bearer".to_owned())));
    }

    #[test]
    fn bound_token_without_certificate() {
        let host =
            MockHost::default().with_property(&x5t(), Thumbprint::of(b"one").to_x5t().into_bytes());
        let counts = PendingCounts::default();
        assert_eq!(
            Filter::new(Config::default()).on_request_headers(&host, &counts),
            Verdict::Stop
        );
        assert_eq!(
            counts.drain(),
            vec![(Counter::Denied(ProblemKind::MtlsRequired), 1)]
        );
    }
}
