//! Native micro-benchmarks of cnf-guard's pure core (`make bench` runs them;
//! `cargo test --all-targets` runs each once, as a smoke test).
//!
//! - `decision/*`: the decision path alone: the token's `x5t#S256` and the
//!   certificate's hex digest (as Envoy hands them over) → an outcome.
//! - `filter/*`: one whole request through `Filter::on_request_headers` over
//!   an in-memory host, so everything but the host calls themselves.

// Bench tooling: a broken setup panics, which is how a bench reports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cnf_guard::certificate::thumbprint::Thumbprint;
use cnf_guard::dpop::settings::DpopPolicy;
use cnf_guard::filter::{Filter, Verdict};
use cnf_guard::host::{Host, HostError};
use cnf_guard::policy::config::Config;
use cnf_guard::policy::decision::{decide, ClientCertificate, Evidence, Outcome};
use cnf_guard::policy::settings::BindingPolicy;
use cnf_guard::reply::stats::PendingCounts;
use cnf_guard::reply::Reply;
use cnf_guard::token::binding::TokenBinding;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};

const CERTIFICATE: &[u8] = b"stands in for a DER client certificate";
const OTHER_CERTIFICATE: &[u8] = b"another client's certificate";

fn x5t(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

fn hex_digest(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The decision path over the two values Envoy hands the filter.
fn decide_from_facts(token_x5t: &[u8], certificate_hex: &[u8]) -> Outcome {
    let token = TokenBinding::from_x5t(token_x5t);
    let certificate = token.needs_certificate().then(|| {
        Thumbprint::from_hex(certificate_hex)
            .map(ClientCertificate::Present)
            .unwrap_or(ClientCertificate::Unusable(String::new()))
    });
    decide(
        BindingPolicy::Required,
        DpopPolicy::Off,
        Evidence {
            token,
            certificate,
            proof: None,
        },
    )
}

/// Answers the success-path reads from memory; everything else is absent.
struct InMemoryHost {
    token_x5t: Vec<u8>,
    certificate_hex: Vec<u8>,
}

impl Host for InMemoryHost {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        Ok(match path.last() {
            Some(&"x5t#S256") => Some(self.token_x5t.clone()),
            Some(&"sha256_peer_certificate_digest") => Some(self.certificate_hex.clone()),
            _ => None,
        })
    }
    fn remove_request_header(&self, _name: &str) -> Result<(), HostError> {
        Ok(())
    }
    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        Ok(vec![
            (":path".to_owned(), b"/orders?page=2".to_vec()),
            ("authorization".to_owned(), b"Bearer h.p.s".to_vec()),
        ])
    }
    fn shared_data(&self, _key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        Ok((None, None))
    }
    fn set_shared_data(
        &self,
        _key: &str,
        _value: &[u8],
        _cas: Option<u32>,
    ) -> Result<(), HostError> {
        Ok(())
    }
    fn now(&self) -> Result<SystemTime, HostError> {
        Ok(SystemTime::UNIX_EPOCH)
    }
    fn set_filter_state(&self, _name: &str, _value: &str) -> Result<(), HostError> {
        Ok(())
    }
    fn send_reply(&self, _reply: &Reply) -> Result<(), HostError> {
        Ok(())
    }
}

fn benches(c: &mut Criterion) {
    let token = x5t(CERTIFICATE);
    let same = hex_digest(CERTIFICATE);
    let other = hex_digest(OTHER_CERTIFICATE);
    assert_eq!(
        decide_from_facts(token.as_bytes(), same.as_bytes()),
        Outcome::AllowedBound
    );
    assert!(matches!(
        decide_from_facts(token.as_bytes(), other.as_bytes()),
        Outcome::Denied(_)
    ));

    let mut decision = c.benchmark_group("decision");
    decision.bench_function("allow", |b| {
        b.iter(|| decide_from_facts(black_box(token.as_bytes()), black_box(same.as_bytes())))
    });
    decision.bench_function("mismatch", |b| {
        b.iter(|| decide_from_facts(black_box(token.as_bytes()), black_box(other.as_bytes())))
    });
    decision.finish();

    let filter = Filter::new(Config::default());
    let counts = PendingCounts::default();
    let allowed = InMemoryHost {
        token_x5t: token.clone().into_bytes(),
        certificate_hex: same.into_bytes(),
    };
    let mismatched = InMemoryHost {
        token_x5t: token.into_bytes(),
        certificate_hex: other.into_bytes(),
    };
    assert_eq!(
        filter.on_request_headers(&allowed, &counts),
        Verdict::Continue
    );
    assert_eq!(
        filter.on_request_headers(&mismatched, &counts),
        Verdict::Stop
    );

    let mut request = c.benchmark_group("filter");
    request.bench_function("allow", |b| {
        b.iter(|| filter.on_request_headers(black_box(&allowed), &counts))
    });
    // Renders the problem+json reply and the log line: the cost of a denial.
    request.bench_function("deny_mismatch", |b| {
        b.iter(|| filter.on_request_headers(black_box(&mismatched), &counts))
    });
    request.finish();
}

criterion_group! {
    name = decision;
    // Short: `make bench` must finish in minutes; these are ns-scale and stable.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(decision);
