//! One request through cnf-guard: gather facts through the host, decide,
//! then allow, deny with a problem reply, or (dry run) log and allow; with
//! a replay store, first pause on it ([`replay_store`]).

mod replay_store;

pub use replay_store::AwaitingStore;
use replay_store::PausedRequest;

use crate::certificate::config::CertificateConfig;
use crate::certificate::source::client_certificate;
use crate::dpop::check::DpopChecker;
use crate::dpop::denial::DpopDenial;
use crate::dpop::replay_store::StoreCall;
use crate::dpop::settings::DpopPolicy;
use crate::headers::path_without_query;
use crate::headers::LazyHeaders;
use crate::host::Host;
use crate::policy::config::Config;
use crate::policy::decision::{decide, single_token, ClientCertificate, Denial, Evidence, Outcome};
use crate::policy::rules::{NeededFacts, Policy, RequestFacts, Resolution};
use crate::policy::settings::Mode;
use crate::reply::problem::{render, DpopChallenge, ProblemContext};
use crate::reply::stats::{Counter, PendingCounts};
use crate::reply::timestamp::rfc3339_seconds;
use crate::reply::OUTCOME_FILTER_STATE;
use crate::token::binding::AuthFailure;
use crate::token::claims::ClaimsReader;

/// What the proxy should do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// A local reply was sent (or sending failed); the request must not go on.
    Stop,
    /// Paused until the replay store answers; the glue hands the answer to
    /// [`Filter::on_replay_store_answer`].
    AwaitingReplayStore(Box<AwaitingStore>),
}

/// The parts of a resolved policy a denial needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Enforcement {
    mode: Mode,
    dpop: DpopPolicy,
    rule: String,
}

impl Enforcement {
    fn of(policy: &Policy) -> Enforcement {
        Enforcement {
            mode: policy.mode,
            dpop: policy.dpop,
            rule: policy.rule_name().to_owned(),
        }
    }
}

/// The configured filter, built once per plugin configuration.
#[derive(Debug, Clone)]
pub struct Filter {
    config: Config,
    claims: ClaimsReader,
    /// What the rules match on; nothing when there are no rules.
    needed: NeededFacts,
    dpop: DpopChecker,
}

impl Filter {
    pub fn new(config: Config) -> Filter {
        let claims = ClaimsReader::new(&config.claims, config.dpop_enabled());
        let needed = config.needed_facts();
        let dpop = DpopChecker::new(&config.dpop, &config.stat_prefix);
        Filter {
            config,
            claims,
            needed,
            dpop,
        }
    }

    /// The DPoP checker, for plugin start (the nonce key) and the CLI.
    pub fn dpop(&self) -> &DpopChecker {
        &self.dpop
    }

    /// At plugin start: which proof signatures Envoy verifies natively.
    /// Nothing to probe, and no lines, where no route checks DPoP.
    pub fn probe_native_signatures(&mut self, host: &impl Host) -> Vec<String> {
        if !self.config.dpop_enabled() {
            return Vec::new();
        }
        self.dpop.probe_native_signatures(host)
    }

    pub fn on_request_headers(&self, host: &impl Host, counts: &PendingCounts) -> Verdict {
        let headers = LazyHeaders::default();
        let request = self.request_facts(host, &headers);
        let policy = match self.config.resolve(&request) {
            Resolution::Skip(_) => {
                counts.add(Counter::Skipped);
                // A forged header must not reach the service on a skipped
                // route either; a `skip` rule has no overrides of its own.
                self.remove_forwarded_header(host, &self.config.certificate);
                return Verdict::Continue;
            }
            Resolution::Check(policy) => policy,
        };
        let (outcome, store_call) = match self.single_token(host, &headers) {
            Ok(()) => self.decide(host, &headers, &policy, counts),
            Err(denial) => (Outcome::Denied(denial), None),
        };
        let enforcement = Enforcement::of(&policy);
        let verdict = match (outcome, store_call) {
            (Outcome::Denied(denial), _) => {
                self.deny(host, &headers, counts, &enforcement, &request, &denial)
            }
            (allowed, None) => allow(counts, &allowed),
            (allowed, Some(call)) => self.ask_replay_store(
                host,
                &call,
                counts,
                PausedRequest {
                    allowed,
                    policy: enforcement,
                    request,
                    headers,
                },
            ),
        };
        // Also before a pause: a request the store then refuses never goes
        // upstream anyway.
        if !matches!(verdict, Verdict::Stop) {
            self.remove_forwarded_header(host, policy.certificate);
        }
        verdict
    }

    /// Counts the tokens in every place jwt_authn takes one from.
    fn single_token(&self, host: &impl Host, headers: &LazyHeaders) -> Result<(), Denial> {
        let locations = &self.config.claims.token_locations;
        if locations.is_empty() {
            return Ok(());
        }
        match headers.get(host) {
            Ok(headers) => single_token(locations.places(headers)),
            Err(error) => {
                log::error!("cannot read the request headers to count its tokens: {error}");
                Err(Denial::AuthenticationFailed(AuthFailure {
                    token_presented: true,
                    reason: Some(format!(
                        "the proxy could not provide the request headers ({error})"
                    )),
                }))
            }
        }
    }

    /// Gathers the evidence the policy needs, reading no more than it must.
    fn decide(
        &self,
        host: &impl Host,
        headers: &LazyHeaders,
        policy: &Policy,
        counts: &PendingCounts,
    ) -> (Outcome, Option<StoreCall>) {
        let token = self.claims.token_binding(host, headers);
        let mut store_call = None;
        let proof = match token.key() {
            Some(key) if policy.dpop != DpopPolicy::Off => {
                Some(self.dpop.check(host, headers, key).map(|call| {
                    store_call = call;
                }))
            }
            _ => None,
        };
        // A failed proof decides; the certificate is then not worth reading.
        let certificate = (token.needs_certificate() && !matches!(proof, Some(Err(_))))
            .then(|| client_certificate(policy.certificate, policy.thumbprint, host, headers));
        if let Some(ClientCertificate::Untrusted(_)) = certificate {
            counts.add(Counter::ForwardedCertificateUntrusted);
        }
        let evidence = Evidence {
            token,
            certificate,
            proof,
        };
        (decide(policy.binding, policy.dpop, evidence), store_call)
    }

    /// Reads only what some rule matches on.
    fn request_facts(&self, host: &impl Host, headers: &LazyHeaders) -> RequestFacts {
        let text =
            |read: bool, name: &str| read.then(|| header_text(host, headers, name)).flatten();
        RequestFacts {
            route: self
                .needed
                .route
                .then(|| match host.property(&ROUTE_NAME) {
                    Ok(name) => name,
                    Err(error) => {
                        // No rule on `route` can match; the log says why.
                        log::warn!("cannot read xds.route_name: {error}");
                        None
                    }
                })
                .flatten()
                .and_then(|name| String::from_utf8(name).ok()),
            path: text(self.needed.path, ":path").map(|path| path_without_query(&path).to_owned()),
            method: text(self.needed.method, ":method"),
        }
    }

    /// `remove_header`: the service never sees the forwarded certificate.
    fn remove_forwarded_header(&self, host: &impl Host, certificate: &CertificateConfig) {
        if !certificate.remove_header {
            return;
        }
        let Some(header) = certificate.header_name() else {
            return;
        };
        if let Err(error) = host.remove_request_header(&header) {
            log::error!("could not remove the {header} header: {error}");
        }
    }

    pub(crate) fn deny(
        &self,
        host: &impl Host,
        headers: &LazyHeaders,
        counts: &PendingCounts,
        policy: &Enforcement,
        request: &RequestFacts,
        denial: &Denial,
    ) -> Verdict {
        let kind = denial.kind();
        let request_id = header_text(host, headers, "x-request-id");
        let [(token_field, token_thumbprint), (presented_field, presented_thumbprint)] =
            thumbprints(denial);
        let dry_run = policy.mode == Mode::DryRun;
        log::info!(
            "{} slug={} request_id={} {token_field}={} {presented_field}={} rule={} detail=\"{}\"",
            if dry_run {
                "would deny (dry run)"
            } else {
                "denied"
            },
            kind.slug(),
            request_id.as_deref().unwrap_or("-"),
            token_thumbprint,
            presented_thumbprint,
            policy.rule,
            denial.detail()
        );
        // On the request's access-log line, whatever Envoy's log level: the
        // only host call a dry-run would-deny adds.
        let outcome = format!(
            "{} slug={} rule={}",
            if dry_run { "would_deny" } else { "denied" },
            kind.slug(),
            policy.rule
        );
        if let Err(error) = host.set_filter_state(OUTCOME_FILTER_STATE, &outcome) {
            log::warn!("cannot record the outcome for the access log: {error}");
        }
        if dry_run {
            counts.add(Counter::DryRun(kind));
            return Verdict::Continue;
        }
        counts.add(Counter::Denied(kind));
        let path = request
            .path
            .clone()
            .or_else(|| header_text(host, headers, ":path"));
        let timestamp = rfc3339_seconds(host.now().unwrap_or(std::time::UNIX_EPOCH));
        let dpop_scheme = header_text(host, headers, "authorization").is_some_and(|value| {
            value
                .trim_start()
                .split_once(' ')
                .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("dpop"))
        });
        let reply = render(
            denial,
            &ProblemContext {
                type_base: &self.config.problem_type_base,
                path: path.as_deref(),
                timestamp: &timestamp,
                request_id: request_id.as_deref(),
                dpop: (policy.dpop != DpopPolicy::Off).then(|| DpopChallenge {
                    algs: self.dpop.algs(),
                    bearer_accepted: policy.dpop == DpopPolicy::Optional,
                }),
                dpop_scheme,
            },
        );
        if let Err(error) = host.send_reply(&reply) {
            log::error!(
                "could not send the {} reply, holding the request: {error}",
                kind.slug()
            );
        }
        Verdict::Stop
    }
}

const ROUTE_NAME: [&str; 2] = ["xds", "route_name"];

pub(crate) fn allow(counts: &PendingCounts, allowed: &Outcome) -> Verdict {
    counts.add(match allowed {
        Outcome::AllowedUnbound => Counter::AllowedUnbound,
        _ => Counter::Allowed,
    });
    Verdict::Continue
}

/// The token's and the presented thumbprints for the denial log line, with
/// their field names (`token_x5t`/`certificate_x5t`, or `token_jkt`/`proof_jkt`
/// for DPoP); `-` where there is none.
fn thumbprints(denial: &Denial) -> [(&'static str, String); 2] {
    let none = || "-".to_owned();
    let x5t = |token: String, certificate: String| {
        [("token_x5t", token), ("certificate_x5t", certificate)]
    };
    let jkt = |token: String, proof: String| [("token_jkt", token), ("proof_jkt", proof)];
    match denial {
        Denial::MtlsBindingMismatch {
            expected,
            presented,
        } => x5t(expected.to_x5t(), presented.to_x5t()),
        Denial::MtlsRequired { expected, .. } => x5t(expected.to_x5t(), none()),
        Denial::Dpop(DpopDenial::BindingMismatch {
            expected,
            presented,
        }) => jkt(expected.to_jkt(), presented.to_jkt()),
        Denial::Dpop(_) => jkt(none(), none()),
        _ => x5t(none(), none()),
    }
}

/// The first line of a header as text, for facts that are matched or
/// echoed, never trusted (pseudo-headers cannot repeat).
fn header_text(host: &impl Host, headers: &LazyHeaders, name: &str) -> Option<String> {
    Some(headers.get(host).ok()?.text(name)?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::thumbprint::Thumbprint;
    use crate::host::mock::MockHost;
    use crate::reply::problem::ProblemKind;
    use crate::token::binding::TokenBinding;
    use serde_json::Value;

    use crate::certificate::source::{PEER_DIGEST as DIGEST, SOURCE_ADDRESS};
    use crate::token::claims::test_paths::x5t;

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
    fn success_path_makes_three_host_calls() {
        // The header map (to count tokens), the claim, the certificate digest.
        let host = bound_request(b"one", b"one");
        let counts = PendingCounts::default();
        assert_eq!(
            Filter::new(Config::default()).on_request_headers(&host, &counts),
            Verdict::Continue
        );
        assert_eq!(host.calls.get(), 3);
        assert!(host.reply().is_none());
        assert_eq!(counts.drain(), vec![(Counter::Allowed, 1)]);
        // With no token locations to count, two.
        let config = Config::parse(
            br#"{"claims": {"token_locations": {"headers": [], "query_parameters": []}}}"#,
        )
        .unwrap();
        let host = bound_request(b"one", b"one");
        assert_eq!(
            Filter::new(config).on_request_headers(&host, &counts),
            Verdict::Continue
        );
        assert_eq!(host.calls.get(), 2);
    }

    #[test]
    fn a_second_token_is_refused_before_any_claim_is_read() {
        let token = "Bearer x.y.z";
        for (path, authorization) in [
            ("/api?access_token=a.b.c", Some(token)),
            ("/api?access_token=a.b.c&access_token=d.e.f", None),
            ("/api", Some("Bearer x.y.z,Bearer a.b.c")),
        ] {
            let mut host = bound_request(b"one", b"one").with_header(":path", path);
            host.headers.borrow_mut().remove(":path");
            host = host.with_header(":path", path);
            if let Some(authorization) = authorization {
                host = host.with_header("authorization", authorization);
            }
            let counts = PendingCounts::default();
            assert_eq!(
                Filter::new(Config::default()).on_request_headers(&host, &counts),
                Verdict::Stop,
                "{path} {authorization:?}"
            );
            let reply = host.reply().unwrap();
            assert_eq!(reply.status, 400);
            let body: Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(body["type"], "urn:cnf-guard:problem:multiple-tokens");
            assert!(reply
                .headers
                .iter()
                .any(|(name, value)| *name == "www-authenticate"
                    && value.starts_with("Bearer error=\"invalid_request\"")));
            assert_eq!(
                counts.drain(),
                vec![(Counter::Denied(ProblemKind::MultipleTokens), 1)]
            );
        }
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
    fn every_denial_is_on_the_access_log_line_and_an_allow_adds_nothing() {
        let host = bound_request(b"one", b"two");
        let counts = PendingCounts::default();
        Filter::new(Config::default()).on_request_headers(&host, &counts);
        assert_eq!(
            host.filter_state
                .borrow()
                .get("cnf_guard")
                .map(String::as_str),
            Some("denied slug=mtls-binding-mismatch rule=-")
        );
        assert_eq!(
            host.reply().map(|reply| reply.details),
            Some("cnf_guard.mtls_binding_mismatch".to_owned())
        );
        let dry_run = Config {
            mode: Mode::DryRun,
            ..Config::default()
        };
        let host = bound_request(b"one", b"two");
        Filter::new(dry_run).on_request_headers(&host, &counts);
        assert_eq!(
            host.filter_state
                .borrow()
                .get("cnf_guard")
                .map(String::as_str),
            Some("would_deny slug=mtls-binding-mismatch rule=-")
        );
        let host = bound_request(b"one", b"one");
        Filter::new(Config::default()).on_request_headers(&host, &counts);
        assert!(host.filter_state.borrow().is_empty());
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
            ClaimsReader::new(&Default::default(), false)
                .token_binding(&host, &LazyHeaders::default()),
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

    fn forwarded_config(extra: &str) -> Config {
        Config::parse(
            format!(
                r#"{{"certificate": {{"source": "xfcc_hash", "remove_header": true,
                     "trusted_proxy": {{"source_cidrs": ["10.0.0.0/8"]}}}}{extra}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn forwarded_request(source: &str) -> MockHost {
        MockHost::default()
            .with_property(&x5t(), Thumbprint::of(b"one").to_x5t().into_bytes())
            .with_property(&SOURCE_ADDRESS, source)
            .with_header(
                "x-forwarded-client-cert",
                &format!("Hash=00,By=spiffe://edge;Hash={}", hex_digest(b"one")),
            )
    }

    #[test]
    fn forwarded_certificate_from_a_trusted_hop() {
        let host = forwarded_request("10.1.2.3:5000");
        let counts = PendingCounts::default();
        assert_eq!(
            Filter::new(forwarded_config("")).on_request_headers(&host, &counts),
            Verdict::Continue
        );
        assert_eq!(counts.drain(), vec![(Counter::Allowed, 1)]);
        // `remove_header`: the upstream does not see it.
        assert!(!host.headers.borrow().contains("x-forwarded-client-cert"));
    }

    #[test]
    fn forwarded_certificate_from_an_untrusted_hop_is_ignored() {
        let host = forwarded_request("192.0.2.1:5000");
        let counts = PendingCounts::default();
        assert_eq!(
            Filter::new(forwarded_config("")).on_request_headers(&host, &counts),
            Verdict::Stop
        );
        let body: Value = serde_json::from_slice(&host.reply().unwrap().body).unwrap();
        assert_eq!(body["type"], "urn:cnf-guard:problem:mtls-required");
        assert!(body["detail"]
            .as_str()
            .unwrap()
            .contains("x-forwarded-client-cert header did not come from a trusted proxy"));
        assert!(host.logged("source 192.0.2.1 is not in a trusted network"));
        assert_eq!(
            counts.drain(),
            vec![
                (Counter::ForwardedCertificateUntrusted, 1),
                (Counter::Denied(ProblemKind::MtlsRequired), 1)
            ]
        );
    }

    #[test]
    fn skip_rule_reads_only_what_it_matches_on() {
        let config = forwarded_config(
            r#", "rules": [{"name": "health", "match": {"path": {"prefix": "/healthz"}}, "skip": true}]"#,
        );
        let host = MockHost::default()
            .with_header(":path", "/healthz?full=1")
            .with_header("x-forwarded-client-cert", "Hash=forged");
        let counts = PendingCounts::default();
        assert_eq!(
            Filter::new(config.clone()).on_request_headers(&host, &counts),
            Verdict::Continue
        );
        // The headers, then `remove_header`, which holds on skipped routes too.
        assert_eq!(host.calls.get(), 2);
        assert!(!host.headers.borrow().contains("x-forwarded-client-cert"));
        assert_eq!(counts.drain(), vec![(Counter::Skipped, 1)]);
        // Other paths are checked, and the denial names no rule.
        let host = forwarded_request("192.0.2.1:1").with_header(":path", "/api");
        assert_eq!(
            Filter::new(config).on_request_headers(&host, &counts),
            Verdict::Stop
        );
        assert!(host.logged("rule=- detail="));
        assert_eq!(host.reply().map(|r| r.status), Some(401));
    }

    #[test]
    fn rule_overrides_apply_and_are_logged() {
        let config = Config::parse(
            br#"{"rules": [{"name": "rollout", "match": {"route": "orders", "methods": ["POST"]}, "mode": "dry_run"}]}"#,
        )
        .unwrap();
        let host = bound_request(b"one", b"two")
            .with_property(&["xds", "route_name"], "orders")
            .with_header(":method", "POST");
        let counts = PendingCounts::default();
        assert_eq!(
            Filter::new(config.clone()).on_request_headers(&host, &counts),
            Verdict::Continue
        );
        assert!(host.logged("would deny (dry run) slug=mtls-binding-mismatch"));
        assert!(host.logged("rule=rollout"));
        let host = bound_request(b"one", b"two")
            .with_property(&["xds", "route_name"], "orders")
            .with_header(":method", "GET");
        assert_eq!(
            Filter::new(config).on_request_headers(&host, &counts),
            Verdict::Stop
        );
    }
}
