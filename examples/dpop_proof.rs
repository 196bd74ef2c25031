//! Prints a fresh DPoP proof (RFC 9449) for one request, for the demo's curl
//! lines: `dpop_proof KEY.jwk METHOD URL [TOKEN_FILE]`. The key is a private
//! JWK as `make demo-material` writes it: ES256 (`dpop-key.jwk`), RS256
//! (`dpop-key-rs256.jwk`) or EdDSA (`dpop-key-eddsa.jwk`); the proof is signed
//! with the key's algorithm. With a token file the proof
//! carries `ath`. Every proof has a new `jti`; `DPOP_IAT` fixes `iat` (for
//! fuzz seeds) and `DPOP_COUNT` prints that many proofs, one per line (for
//! `make bench`). Not part of the filter.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../tests/support/dpop.rs"]
mod dpop;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [key, method, url, rest @ ..] = args.as_slice() else {
        eprintln!("usage: dpop_proof KEY.jwk METHOD URL [TOKEN_FILE]");
        std::process::exit(2);
    };
    let jwk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(key).expect("read the key")).expect("JSON");
    let key =
        dpop::TestKey::from_private_jwk(&jwk).expect("a private EC P-256, RSA or Ed25519 JWK");
    let token = match rest.first() {
        Some(file) => std::fs::read_to_string(file)
            .expect("read the token")
            .trim()
            .to_owned(),
        None => String::new(),
    };
    let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let iat = number("DPOP_IAT").unwrap_or_else(dpop::now);
    let header = key.header();
    let count = number("DPOP_COUNT").unwrap_or(1);
    let proof = || {
        let mut claims = dpop::claims(method, url, &token, iat, &dpop::fresh_jti());
        if token.is_empty() {
            claims.as_object_mut().expect("object").remove("ath");
        }
        key.sign(&header, &claims)
    };
    // Many proofs (make bench wants tens of thousands, and an RSA signature
    // takes a millisecond or two): one thread per CPU.
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(usize::try_from(count / 64).unwrap_or(usize::MAX))
        .max(1);
    let per_thread = usize::try_from(count).expect("count").div_ceil(threads);
    let total = usize::try_from(count).expect("count");
    let batches: Vec<Vec<String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|index| {
                let size = per_thread.min(total.saturating_sub(index * per_thread));
                scope.spawn(move || (0..size).map(|_| proof()).collect())
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a signing thread"))
            .collect()
    });
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in batches.iter().flatten() {
        writeln!(out, "{line}").expect("write");
    }
}
