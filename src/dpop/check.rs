//! The DPoP check of one request whose token is bound to a key (`cnf.jkt`):
//! gather the request facts through the host, verify the proof (pure), then
//! the binding, the nonce and the replay cache, in that order.

use crate::dpop::denial::{DpopDenial, Recorded, RequiredReason};
use crate::dpop::native::{Native, NativeAlgorithms};
use crate::dpop::nonce::NonceKey;
use crate::dpop::proof::htu::normalize;
use crate::dpop::proof::jwk::JwkThumbprint;
use crate::dpop::proof::{verify_proof, ProofError, ProofRequest};
use crate::dpop::replay::{proof_fingerprint, ReplayCache};
use crate::dpop::replay_store::StoreCall;
use crate::dpop::settings::{DpopConfig, Verifier};
use crate::headers::path_without_query;
use crate::headers::{LazyHeaders, Repeated};
use crate::host::Host;
use std::time::UNIX_EPOCH;

/// Built once per configuration.
#[derive(Debug, Clone)]
pub struct DpopChecker {
    pub config: DpopConfig,
    origin: Option<String>,
    replay: ReplayCache,
    pub nonce_key: NonceKey,
    /// `algs="…"` for DPoP challenges, in the configured order.
    algs: String,
    /// What Envoy verifies natively (none until the plugin-start probe).
    native: NativeAlgorithms,
}

impl DpopChecker {
    pub fn new(config: &DpopConfig, stat_prefix: &str) -> DpopChecker {
        DpopChecker {
            origin: config.origin(),
            replay: ReplayCache::new(
                stat_prefix,
                config.replay_cache_capacity,
                config.acceptance_window_seconds(),
            ),
            nonce_key: NonceKey::new(&config.nonce, stat_prefix),
            algs: config.algs_parameter(),
            config: config.clone(),
            native: NativeAlgorithms::default(),
        }
    }

    /// Probes which signatures Envoy verifies (plugin start); unless
    /// `verifier: in_module`. Returns the log lines saying which path each
    /// configured algorithm takes.
    pub fn probe_native_signatures(&mut self, host: &impl Host) -> Vec<String> {
        if self.config.verifier == Verifier::InModule {
            return self
                .config
                .algorithms
                .iter()
                .map(|alg| {
                    format!(
                        "DPoP {} signatures are verified in the module (dpop.verifier: in_module)",
                        alg.name()
                    )
                })
                .collect();
        }
        let (native, lines) = NativeAlgorithms::probe(host, &self.config.algorithms);
        self.native = native;
        lines
    }

    /// The accepted algorithms as the `algs` challenge parameter gives them.
    pub fn algs(&self) -> &str {
        &self.algs
    }

    /// Checks the request's proof against the token's `jkt`. A proof that
    /// passes every local check, with a replay store configured, comes back
    /// with the store call that must record it before the request may pass.
    pub fn check(
        &self,
        host: &impl Host,
        headers: &LazyHeaders,
        jkt: &JwkThumbprint,
    ) -> Result<Option<StoreCall>, DpopDenial> {
        let headers = headers.get(host).map_err(|error| {
            invalid(ProofError::Unavailable(format!(
                "cannot read the request headers: {error}"
            )))
        })?;
        let header = |name: &str| headers.text(name);
        let access_token = match headers.single("authorization") {
            // jwt_authn removes the header after verifying it unless its
            // provider sets `forward: true`: the client did nothing wrong.
            Ok(None) => return Err(DpopDenial::Required(RequiredReason::NoAuthorizationHeader)),
            Ok(Some(value)) => match std::str::from_utf8(value)
                .ok()
                .and_then(|h| h.trim().split_once(' '))
            {
                // One spelling only: the proof binds the token, not the
                // header, and jwt_authn accepts `DPoP  <token>` too. Each
                // spelling would hash to its own replica under affinity.
                Some(("DPoP", token))
                    if !token.is_empty() && !token.bytes().any(|b| b.is_ascii_whitespace()) =>
                {
                    token
                }
                Some((scheme, _)) if scheme.eq_ignore_ascii_case("dpop") => {
                    return Err(invalid(ProofError::AuthorizationSpelling))
                }
                _ => {
                    return Err(DpopDenial::Required(
                        RequiredReason::BoundTokenWithoutDpopScheme,
                    ))
                }
            },
            Err(Repeated(lines)) => {
                return Err(invalid(ProofError::Unavailable(format!(
                    "the Authorization header came in {lines} lines; exactly one is expected"
                ))))
            }
        };
        let proofs: Vec<Vec<u8>> = headers.lines("dpop").map(<[u8]>::to_vec).collect();
        let path = path_without_query(header(":path").unwrap_or("/"));
        let origin = match &self.origin {
            Some(origin) => origin.clone(),
            None => format!(
                "{}://{}",
                header(":scheme").unwrap_or("https"),
                header(":authority").or(header("host")).unwrap_or_default()
            ),
        };
        let requested = format!("{origin}{path}");
        let uri = normalize(&requested).map_err(|why| {
            invalid(ProofError::Uri {
                expected: requested.clone(),
                proof: format!("(the request URI cannot be normalised: {why})"),
            })
        })?;
        let now = host
            .now()
            .ok()
            .and_then(|now| now.duration_since(UNIX_EPOCH).ok())
            .map(|since| since.as_secs_f64())
            .ok_or_else(|| {
                invalid(ProofError::Unavailable(
                    "the clock cannot be read".to_owned(),
                ))
            })?;
        let proof = verify_proof(
            &self.config,
            &ProofRequest {
                proofs: &proofs,
                method: header(":method").unwrap_or_default(),
                uri: &uri,
                access_token,
                now,
            },
            &Native {
                host,
                algorithms: self.native,
            },
        )
        .map_err(DpopDenial::ProofInvalid)?;
        if !proof.key.matches(jkt) {
            return Err(DpopDenial::BindingMismatch {
                expected: *jkt,
                presented: proof.key,
            });
        }
        let now = now as u64;
        if self.config.nonce.enabled {
            self.check_nonce(host, proof.nonce.as_deref(), now)?;
        }
        // The local cache first: a replay to this replica costs no round trip.
        match self.replay.record(host, &proof.key, &proof.jti, now) {
            Recorded::Fresh => Ok(self.config.replay_store.as_ref().map(|store| {
                store.call(
                    &proof_fingerprint(&proof.key, &proof.jti),
                    self.config.acceptance_window_seconds(),
                )
            })),
            other => Err(DpopDenial::Replay(other)),
        }
    }

    fn check_nonce(
        &self,
        host: &impl Host,
        nonce: Option<&str>,
        now: u64,
    ) -> Result<(), DpopDenial> {
        let lifetime = self.config.nonce.lifetime_seconds;
        let accepted = match nonce {
            Some(nonce) => self.nonce_key.accepts(host, nonce, now, lifetime),
            None => Ok(false),
        };
        match accepted {
            Ok(true) => Ok(()),
            _ => Err(DpopDenial::NonceRequired {
                nonce: self.nonce_key.mint(host, now, lifetime).ok(),
                had_nonce: nonce.is_some(),
            }),
        }
    }
}

fn invalid(error: ProofError) -> DpopDenial {
    DpopDenial::ProofInvalid(error)
}

#[cfg(test)]
mod tests {
    //! A whole request through `Filter` with a mock host: the DPoP path.
    use crate::certificate::source::PEER_DIGEST;
    use crate::certificate::thumbprint::Thumbprint;
    use crate::dpop::test_proofs::TestKey;
    use crate::filter::{Filter, Verdict};
    use crate::host::mock::{MockHost, NOW};
    use crate::policy::config::Config;
    use crate::reply::problem::ProblemKind;
    use crate::reply::stats::{Counter, PendingCounts};
    use crate::token::claims::test_paths::{jkt as jkt_path, x5t as x5t_path};
    use serde_json::Value;

    const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJjbmYiOnt9fQ.c2ln";
    const URI: &str = "https://api.example.com/orders";

    fn config(extra: &str) -> Config {
        Config::parse(format!(r#"{{"dpop": {{"policy": "optional"{extra}}}}}"#).as_bytes()).unwrap()
    }

    fn request(key: &TestKey, proof: Option<String>) -> MockHost {
        let mut host = MockHost::default()
            .with_property(&jkt_path(), key.jkt().to_jkt())
            .with_header("authorization", &format!("DPoP {TOKEN}"))
            .with_header(":method", "POST")
            .with_header(":scheme", "https")
            .with_header(":authority", "api.example.com")
            .with_header(":path", "/orders?page=2");
        if let Some(proof) = proof {
            host = host.with_header("dpop", &proof);
        }
        host
    }

    fn run(config: &Config, host: &MockHost) -> (Verdict, Vec<(Counter, u64)>) {
        let counts = PendingCounts::default();
        let verdict = Filter::new(config.clone()).on_request_headers(host, &counts);
        (verdict, counts.drain())
    }

    fn denied(kind: ProblemKind) -> (Verdict, Vec<(Counter, u64)>) {
        (Verdict::Stop, vec![(Counter::Denied(kind), 1)])
    }

    fn challenge(host: &MockHost) -> String {
        let reply = host.reply().unwrap();
        reply
            .headers
            .iter()
            .filter(|(name, _)| *name == "www-authenticate")
            .map(|(_, value)| value.clone())
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// Envoy verifies ES256 and RS256 after the start-up probe; PS256 and
    /// EdDSA stay in the module. Both paths accept a valid proof and refuse
    /// a forged one, and a host failure mid-request is a denial.
    #[test]
    fn native_and_in_module_signatures_agree() {
        let config = config("");
        let envoy = MockHost::default().with_boringssl_verify_signature();
        let mut filter = Filter::new(config.clone());
        let lines = filter.probe_native_signatures(&envoy);
        assert_eq!(lines.len(), 4);
        for key in TestKey::all() {
            let native = matches!(key.alg(), "ES256" | "RS256");
            let proof = key.proof("POST", URI, TOKEN, NOW, "native");
            let host = request(&key, Some(proof.clone())).with_boringssl_verify_signature();
            let counts = PendingCounts::default();
            assert_eq!(
                filter.on_request_headers(&host, &counts),
                Verdict::Continue,
                "{}",
                key.alg()
            );
            // One more host call where Envoy verified it.
            let in_module_calls = {
                let plain = request(&key, Some(key.proof("POST", URI, TOKEN, NOW, "plain")));
                run(&config, &plain);
                plain.calls.get()
            };
            assert_eq!(
                host.calls.get(),
                in_module_calls + usize::from(native),
                "{}",
                key.alg()
            );
            let mut forged = proof.into_bytes();
            let last = forged.len() - 2;
            forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(forged).unwrap();
            let host = request(&key, Some(forged)).with_boringssl_verify_signature();
            assert_eq!(
                filter.on_request_headers(&host, &counts),
                Verdict::Stop,
                "{}",
                key.alg()
            );
            assert!(host.logged("signature does not verify"), "{}", key.alg());
        }
        // The host's function breaks after the probe: denied, never passed.
        let key = TestKey::es256();
        let host = request(&key, Some(key.proof("POST", URI, TOKEN, NOW, "broken")))
            .with_foreign_answer(vec![0xff]);
        assert_eq!(
            run_with(&filter, &host),
            denied(ProblemKind::DpopProofInvalid)
        );
        assert!(host.logged("not its result message"));
    }

    fn run_with(filter: &Filter, host: &MockHost) -> (Verdict, Vec<(Counter, u64)>) {
        let counts = PendingCounts::default();
        let verdict = filter.on_request_headers(host, &counts);
        (verdict, counts.drain())
    }

    #[test]
    fn a_valid_proof_passes_once() {
        let config = config("");
        for key in TestKey::all() {
            let proof = key.proof("POST", URI, TOKEN, NOW, "once");
            let host = request(&key, Some(proof.clone()));
            assert_eq!(
                run(&config, &host),
                (Verdict::Continue, vec![(Counter::Allowed, 1)])
            );
            // Two binding leaves, the headers, the clock, the replay cache
            // read and write; the bucket's first use also makes it (a
            // tag-source write and read, the insert) and reads it again.
            assert_eq!(host.calls.get(), 10, "{}", key.alg());
            let next = request(&key, Some(key.proof("POST", URI, TOKEN, NOW, "next")));
            *next.shared.borrow_mut() = host.shared.borrow().clone();
            run(&config, &next);
            // A proof whose bucket exists: six calls.
            let bucket_exists = next.shared.borrow().values().count() == 2;
            assert_eq!(next.calls.get(), if bucket_exists { 6 } else { 10 });
            // The same proof again, on the same Envoy: a replay.
            let again = request(&key, Some(proof));
            *again.shared.borrow_mut() = host.shared.borrow().clone();
            assert_eq!(run(&config, &again), denied(ProblemKind::DpopReplay));
            assert!(challenge(&again).starts_with("DPoP error=\"invalid_dpop_proof\""));
        }
    }

    #[test]
    fn another_key_is_a_binding_mismatch() {
        let (bound, other) = (TestKey::es256(), TestKey::eddsa());
        let host = request(&bound, Some(other.proof("POST", URI, TOKEN, NOW, "j")));
        assert_eq!(
            run(&config(""), &host),
            denied(ProblemKind::DpopBindingMismatch)
        );
        assert!(host.logged(&format!(
            "slug=dpop-binding-mismatch request_id=- token_jkt={} proof_jkt={}",
            bound.jkt().to_jkt(),
            other.jkt().to_jkt()
        )));
        assert_eq!(
            challenge(&host),
            "DPoP error=\"invalid_token\", error_description=\"The DPoP proof was signed by a key \
             the access token is not bound to\", algs=\"ES256 RS256 PS256 EdDSA\""
        );
    }

    #[test]
    fn a_key_bound_token_sent_as_bearer_is_refused() {
        let key = TestKey::es256();
        let host = request(&key, Some(key.proof("POST", URI, TOKEN, NOW, "j")));
        host.headers.borrow_mut().remove("authorization");
        let host = host.with_header("authorization", &format!("Bearer {TOKEN}"));
        assert_eq!(run(&config(""), &host), denied(ProblemKind::DpopRequired));
        let body: Value = serde_json::from_slice(&host.reply().unwrap().body).unwrap();
        assert!(body["detail"]
            .as_str()
            .unwrap()
            .contains("not as a bearer token"));
    }

    #[test]
    fn missing_and_repeated_proofs_are_invalid() {
        let key = TestKey::es256();
        let host = request(&key, None);
        assert_eq!(
            run(&config(""), &host),
            denied(ProblemKind::DpopProofInvalid)
        );
        let proof = key.proof("POST", URI, TOKEN, NOW, "j");
        // Two lines: Envoy keeps them apart, and both reach the filter.
        let host = request(&key, Some(proof.clone())).with_header("dpop", &proof);
        assert_eq!(
            run(&config(""), &host),
            denied(ProblemKind::DpopProofInvalid)
        );
        assert!(host.logged("more than one DPoP proof"));
    }

    /// One token, one header spelling: `DPoP  <token>` passes jwt_authn, and
    /// a balancer hashing on the header would send it to another replica
    /// than `DPoP <token>`, whose cache never saw the proof.
    #[test]
    fn the_authorization_header_has_one_spelling() {
        let key = TestKey::es256();
        for spelling in [
            format!("DPoP  {TOKEN}"),
            format!("dpop {TOKEN}"),
            format!("DPOP {TOKEN}"),
            format!("DPoP {TOKEN} x"),
        ] {
            let proof = key.proof("POST", URI, TOKEN, NOW, "spelling");
            let host = request(&key, Some(proof));
            host.headers.borrow_mut().remove("authorization");
            let host = host.with_header("authorization", &spelling);
            assert_eq!(
                run(&config(""), &host),
                denied(ProblemKind::DpopProofInvalid),
                "{spelling}"
            );
            assert!(host.logged("exactly one space"), "{spelling}");
        }
    }

    #[test]
    fn external_origin_replaces_the_request_origin() {
        let key = TestKey::es256();
        let config = config(r#", "external_origin": "https://public.example.net""#);
        let inner = key.proof("POST", URI, TOKEN, NOW, "a");
        assert_eq!(
            run(&config, &request(&key, Some(inner))),
            denied(ProblemKind::DpopProofInvalid)
        );
        let outer = key.proof("POST", "https://public.example.net/orders", TOKEN, NOW, "b");
        assert_eq!(
            run(&config, &request(&key, Some(outer))),
            (Verdict::Continue, vec![(Counter::Allowed, 1)])
        );
    }

    #[test]
    fn nonces_are_issued_then_required() {
        let key = TestKey::es256();
        let config = config(r#", "nonce": {"enabled": true}"#);
        let filter = Filter::new(config.clone());
        let host = request(&key, Some(key.proof("POST", URI, TOKEN, NOW, "first")));
        filter.dpop().nonce_key.ensure(&host).unwrap();
        assert_eq!(run(&config, &host), denied(ProblemKind::DpopNonceRequired));
        let reply = host.reply().unwrap();
        assert!(challenge(&host).starts_with("DPoP error=\"use_dpop_nonce\""));
        let nonce = reply
            .headers
            .iter()
            .find(|(name, _)| *name == "dpop-nonce")
            .map(|(_, value)| value.clone())
            .unwrap();
        let mut claims = crate::dpop::test_proofs::claims("POST", URI, TOKEN, NOW, "second");
        claims["nonce"] = serde_json::json!(nonce);
        let retry = request(&key, Some(key.sign(&key.header(), &claims)));
        *retry.shared.borrow_mut() = host.shared.borrow().clone();
        assert_eq!(
            run(&config, &retry),
            (Verdict::Continue, vec![(Counter::Allowed, 1)])
        );
    }

    #[test]
    fn a_dual_bound_token_needs_certificate_and_proof() {
        let key = TestKey::es256();
        let proof = key.proof("POST", URI, TOKEN, NOW, "j");
        let dual = |certificate: &[u8], proof: Option<String>| {
            request(&key, proof)
                .with_property(&x5t_path(), Thumbprint::of(b"one").to_x5t())
                .with_property(
                    &PEER_DIGEST,
                    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(certificate)),
                )
        };
        assert_eq!(
            run(&config(""), &dual(b"one", Some(proof.clone()))),
            (Verdict::Continue, vec![(Counter::Allowed, 1)])
        );
        assert_eq!(
            run(&config(""), &dual(b"two", Some(proof))),
            denied(ProblemKind::MtlsBindingMismatch)
        );
        assert_eq!(
            run(&config(""), &dual(b"one", None)),
            denied(ProblemKind::DpopProofInvalid)
        );
    }

    #[test]
    fn required_policy_refuses_bearer_tokens_and_challenges_with_dpop_only() {
        let config = Config::parse(br#"{"dpop": {"policy": "required"}}"#).unwrap();
        let host = MockHost::default()
            .with_property(&x5t_path(), Thumbprint::of(b"one").to_x5t())
            .with_header("authorization", &format!("Bearer {TOKEN}"));
        assert_eq!(run(&config, &host), denied(ProblemKind::DpopRequired));
        let nothing = MockHost::default();
        assert_eq!(
            run(&config, &nothing),
            denied(ProblemKind::AuthenticationFailed)
        );
        assert_eq!(challenge(&nothing), "DPoP algs=\"ES256 RS256 PS256 EdDSA\"");
        // Optional: both schemes are offered.
        let nothing = MockHost::default();
        run(&self::config(""), &nothing);
        assert_eq!(
            challenge(&nothing),
            "Bearer | DPoP algs=\"ES256 RS256 PS256 EdDSA\""
        );
    }

    #[test]
    fn a_rule_sets_the_dpop_policy_per_route() {
        let config = Config::parse(
            br#"{"dpop": {"policy": "optional"},
                 "rules": [{"name": "writes", "match": {"methods": ["POST"]}, "dpop": "required"}]}"#,
        )
        .unwrap();
        let bearer = |method: &str| {
            MockHost::default()
                .with_property(&x5t_path(), Thumbprint::of(b"one").to_x5t())
                .with_property(
                    &PEER_DIGEST,
                    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"one")),
                )
                .with_header("authorization", &format!("Bearer {TOKEN}"))
                .with_header(":method", method)
        };
        assert_eq!(
            run(&config, &bearer("GET")),
            (Verdict::Continue, vec![(Counter::Allowed, 1)])
        );
        let post = bearer("POST");
        assert_eq!(run(&config, &post), denied(ProblemKind::DpopRequired));
        assert!(post.logged("rule=writes"));
    }

    #[test]
    fn with_dpop_off_a_key_bound_token_is_refused_unchecked() {
        let key = TestKey::es256();
        let host = request(&key, Some(key.proof("POST", URI, TOKEN, NOW, "j")));
        assert_eq!(
            run(&Config::default(), &host),
            denied(ProblemKind::TokenInvalid)
        );
        let body: Value = serde_json::from_slice(&host.reply().unwrap().body).unwrap();
        assert!(body["detail"]
            .as_str()
            .unwrap()
            .contains("does not check DPoP proofs"));
    }
}
