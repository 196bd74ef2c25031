//! One whole request through the filter, with every fact the host gives it
//! chosen by the fuzzer, including host failures. The properties that make
//! cnf-guard a security control:
//! - a request is allowed as bound only if the token's thumbprint equals the
//!   certificate's;
//! - in enforce mode with `binding: required`, nothing else is allowed;
//! - a stopped request got exactly one reply, a continued one none.
#![no_main]

use arbitrary::Arbitrary;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cnf_guard::policy::config::Config;
use cnf_guard::filter::{Filter, Verdict};
use cnf_guard::host::envoy_model::SharedStore;
use cnf_guard::host::{Host, HostError};
use cnf_guard::reply::Reply;
use cnf_guard::reply::stats::{Counter, PendingCounts};
use cnf_guard::certificate::thumbprint::Thumbprint;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::time::SystemTime;

const X5T: [&str; 6] = [
    "metadata",
    "filter_metadata",
    "envoy.filters.http.jwt_authn",
    "payload",
    "cnf",
    "x5t#S256",
];
const DIGEST: [&str; 2] = ["connection", "sha256_peer_certificate_digest"];

#[derive(Arbitrary, Debug)]
enum Fact {
    Absent,
    Present(Vec<u8>),
    Fails,
}

/// The token's `x5t#S256` leaf: raw bytes, or a well-formed thumbprint.
#[derive(Arbitrary, Debug)]
enum TokenX5t {
    Fact(Fact),
    Canonical([u8; 32]),
}

impl TokenX5t {
    fn fact(&self) -> Fact {
        match self {
            TokenX5t::Fact(Fact::Absent) => Fact::Absent,
            TokenX5t::Fact(Fact::Fails) => Fact::Fails,
            TokenX5t::Fact(Fact::Present(value)) => Fact::Present(value.clone()),
            TokenX5t::Canonical(digest) => {
                Fact::Present(URL_SAFE_NO_PAD.encode(digest).into_bytes())
            }
        }
    }
}

/// The certificate digest, often derived from the token so that the allow
/// path (and a one-bit miss of it) is reached at all.
#[derive(Arbitrary, Debug)]
enum Digest {
    Fact(Fact),
    OfToken,
    OfTokenWithBitFlipped(u8),
}

#[derive(Arbitrary, Debug)]
struct Request {
    /// Which configuration the filter runs with.
    config: u8,
    x5t: TokenX5t,
    /// Any other property (cnf, payload, peer PEM, source address, route…).
    other: Fact,
    digest: Digest,
    headers: Vec<(String, Vec<u8>)>,
}

const CONFIGS: [&str; 4] = [
    "{}",
    r#"{"binding": "optional", "thumbprint": "spki"}"#,
    r#"{"claims": {"source": "authorization_header", "failed_status_key": "f"}}"#,
    r#"{"certificate": {"source": "xfcc_cert", "trusted_proxy": {"source_cidrs": ["10.0.0.0/8"]}},
        "rules": [{"match": {"path": {"prefix": "/h"}}, "skip": true},
                  {"match": {"methods": ["POST"]}, "mode": "dry_run"}]}"#,
];

struct FuzzHost<'a> {
    request: &'a Request,
    replies: RefCell<Vec<Reply>>,
    shared: RefCell<SharedStore>,
}

fn answer(fact: &Fact) -> Result<Option<Vec<u8>>, HostError> {
    match fact {
        Fact::Absent => Ok(None),
        Fact::Present(value) if value.is_empty() => Ok(None),
        Fact::Present(value) => Ok(Some(value.clone())),
        Fact::Fails => Err(HostError::SerializationFailure),
    }
}

fn digest_fact(request: &Request) -> Fact {
    let token = match request.x5t.fact() {
        Fact::Present(x5t) => Thumbprint::from_x5t(&x5t).ok(),
        _ => None,
    };
    let token_hex = |flip: Option<u8>| {
        let Some(token) = token else {
            return Fact::Absent;
        };
        let digest = URL_SAFE_NO_PAD.decode(token.to_x5t()).unwrap_or_default();
        let mut hex = hex::encode(digest).into_bytes();
        if let Some(bit) = flip {
            let index = usize::from(bit) % hex.len();
            hex[index] = if hex[index] == b'0' { b'1' } else { b'0' };
        }
        Fact::Present(hex)
    };
    match &request.digest {
        Digest::Fact(Fact::Absent) => Fact::Absent,
        Digest::Fact(Fact::Fails) => Fact::Fails,
        Digest::Fact(Fact::Present(value)) => Fact::Present(value.clone()),
        Digest::OfToken => token_hex(None),
        Digest::OfTokenWithBitFlipped(bit) => token_hex(Some(*bit)),
    }
}

impl Host for FuzzHost<'_> {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        if path == X5T {
            answer(&self.request.x5t.fact())
        } else if path == DIGEST {
            answer(&digest_fact(self.request))
        } else {
            answer(&self.request.other)
        }
    }
    fn remove_request_header(&self, _name: &str) -> Result<(), HostError> {
        Ok(())
    }
    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        Ok(self.request.headers.clone())
    }
    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        Ok(self.shared.borrow().get(key))
    }
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.shared.borrow_mut().set(key, value, cas)
    }
    fn now(&self) -> Result<SystemTime, HostError> {
        Ok(SystemTime::UNIX_EPOCH)
    }
    fn set_filter_state(&self, _name: &str, _value: &str) -> Result<(), HostError> {
        Ok(())
    }
    fn send_reply(&self, reply: &Reply) -> Result<(), HostError> {
        self.replies.borrow_mut().push(reply.clone());
        Ok(())
    }
}

fuzz_target!(|request: Request| {
    let index = usize::from(request.config) % CONFIGS.len();
    let Ok(config) = Config::parse(CONFIGS[index].as_bytes()) else {
        panic!("fuzz configuration {index} must parse");
    };
    let host = FuzzHost {
        request: &request,
        replies: RefCell::new(Vec::new()),
        shared: RefCell::new(SharedStore::default()),
    };
    let counts = PendingCounts::default();
    let verdict = Filter::new(config).on_request_headers(&host, &counts);
    let counted = counts.drain();
    let replies = host.replies.borrow().len();
    match verdict {
        Verdict::Stop => assert_eq!(replies, 1),
        Verdict::Continue => assert_eq!(replies, 0),
        // The fuzz host refuses HTTP calls: a store call is answered at once.
        Verdict::AwaitingReplayStore(_) => panic!("paused on a host that makes no HTTP calls"),
    }
    if index == 0 {
        // Default: enforce, binding required, the connection's certificate.
        if verdict == Verdict::Continue {
            assert_eq!(counted, vec![(Counter::Allowed, 1)]);
            let (Fact::Present(x5t), Fact::Present(digest)) =
                (request.x5t.fact(), digest_fact(&request))
            else {
                panic!("allowed without both a token thumbprint and a certificate");
            };
            let token = Thumbprint::from_x5t(&x5t).ok();
            let certificate = Thumbprint::from_hex(&digest);
            assert!(
                token.is_some() && token == certificate,
                "allowed a mismatch"
            );
        }
    }
});
