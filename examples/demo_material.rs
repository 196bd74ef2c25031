//! Writes the demo PKI, JWKS and tokens for `make run` into a directory
//! (default `.demo`). Not part of the filter.

// Test tooling: a failed expectation panics, which is how a test reports.
// The filter crate itself denies these lints (Cargo.toml [lints]).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../tests/support/material.rs"]
mod material;

#[path = "../tests/support/dpop.rs"]
mod dpop;

use jwt_simple::prelude::Duration;
use material::{make_pki, write, write_pki, Issuer};
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| ".demo".to_owned()),
    );
    let pki = make_pki();
    write_pki(&pki, &dir);
    let issuer = Issuer::new();
    write(&dir, "jwks.json", &issuer.jwks());
    let day = Duration::from_hours(24);
    let [client_1, client_2] = &pki.clients;
    let bound = |subject: &str, x5t: String| {
        issuer.token(subject, serde_json::json!({"cnf": {"x5t#S256": x5t}}), day)
    };
    let tokens = [
        ("token-client-1.jwt", bound("client-1", client_1.x5t())),
        ("token-client-2.jwt", bound("client-2", client_2.x5t())),
        (
            "token-unbound.jwt",
            issuer.token("client-1", serde_json::json!({}), day),
        ),
        (
            "token-hex-thumbprint.jwt",
            issuer.token(
                "client-1",
                serde_json::json!({"cnf": {"x5t#S256": hex_sha256(&client_1.cert_der)}}),
                day,
            ),
        ),
        (
            "token-rogue-signer.jwt",
            Issuer::new().bound_token("client-1", &client_1.x5t()),
        ),
    ];
    // DPoP: a client key (a private JWK, as DPoP clients keep theirs), a token
    // bound to it, and one bound to it and to client-1's certificate.
    let dpop_key = dpop::TestKey::es256();
    let jkt = dpop_key.jkt().to_jkt();
    let private_jwk = dpop_key.private_jwk().expect("an ES256 key");
    write(&dir, "dpop-key.jwk", &private_jwk.to_string());
    let dpop_tokens = [
        (
            "token-dpop.jwt",
            issuer.token("client-1", serde_json::json!({"cnf": {"jkt": jkt}}), day),
        ),
        (
            "token-dpop-and-client-1.jwt",
            issuer.token(
                "client-1",
                serde_json::json!({"cnf": {"jkt": jkt, "x5t#S256": client_1.x5t()}}),
                day,
            ),
        ),
    ];
    // For `make bench`: an RS256 and an EdDSA client key, each with a token
    // bound to it (the ES256 pair is the one above). RSA key generation is
    // slow, so it happens once here, not per proof.
    let mut other_tokens = Vec::new();
    for (suffix, key) in [
        ("rs256", dpop::TestKey::rs256()),
        ("eddsa", dpop::TestKey::eddsa()),
    ] {
        let private_jwk = key.private_jwk().expect("a private JWK");
        write(
            &dir,
            &format!("dpop-key-{suffix}.jwk"),
            &private_jwk.to_string(),
        );
        let jkt = key.jkt().to_jkt();
        other_tokens.push((
            format!("token-dpop-{suffix}.jwt"),
            issuer.token("client-1", serde_json::json!({"cnf": {"jkt": jkt}}), day),
        ));
    }
    let tokens = tokens
        .into_iter()
        .chain(dpop_tokens)
        .map(|(name, token)| (name.to_owned(), token))
        .chain(other_tokens);
    for (name, token) in tokens {
        write(&dir, &name, &token);
    }
    println!("demo material written to {}", dir.display());
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
