//! DPoP proofs and their parts, from the bytes of a `DPoP` header. Beyond
//! never panicking:
//! - a proof is accepted only as exactly three dot-separated segments, no comma;
//! - an accepted proof's key is the thumbprint of the `jwk` in its header;
//! - `htu` normalisation is idempotent, so two spellings compare alike once;
//! - the duplicate-refusing JSON reader agrees with serde_json on what it accepts;
//! - a parsed `jwk`'s thumbprint round-trips through its `jkt` spelling.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cnf_guard::dpop::proof::htu::normalize;
use cnf_guard::dpop::proof::json::strict_object;
use cnf_guard::dpop::proof::jwk::{JwkThumbprint, PublicJwk};
use cnf_guard::dpop::proof::{verify_proof, ProofRequest};
use cnf_guard::dpop::settings::DpopConfig;
use libfuzzer_sys::fuzz_target;

/// The request the seeds' proofs were made for (fuzz/make_seeds.py).
const METHOD: &str = "GET";
const URI: &str = "https://localhost:10444/orders/7";
const ACCESS_TOKEN: &str = "fuzz-access-token";
const IAT: f64 = 1_800_000_000.0;

fuzz_target!(|data: &[u8]| {
    let config = DpopConfig::default();
    let proofs = vec![data.to_vec()];
    let request = ProofRequest {
        proofs: &proofs,
        method: METHOD,
        uri: URI,
        access_token: ACCESS_TOKEN,
        now: IAT,
    };
    if let Ok(proof) = verify_proof(&config, &request, &cnf_guard::dpop::proof::signature::InModule) {
        let text = std::str::from_utf8(data).expect("an accepted proof is text").trim();
        assert_eq!(text.split('.').count(), 3);
        assert!(!text.contains(','));
        let header = URL_SAFE_NO_PAD
            .decode(text.split('.').next().expect("a header"))
            .expect("base64url");
        let header = strict_object(&header).expect("a JSON object");
        let jwk = PublicJwk::parse(&header["jwk"]).expect("a public jwk");
        assert!(jwk.thumbprint().matches(&proof.key));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(once) = normalize(text) {
            assert_eq!(normalize(&once).as_deref(), Ok(once.as_str()), "{text:?}");
        }
    }
    if let Ok(object) = strict_object(data) {
        let loose: serde_json::Value = serde_json::from_slice(data).expect("serde_json agrees");
        assert_eq!(serde_json::Value::Object(object.clone()), loose);
        if let Ok(jwk) = PublicJwk::parse(&serde_json::Value::Object(object)) {
            let thumbprint = jwk.thumbprint();
            assert_eq!(
                JwkThumbprint::from_jkt(thumbprint.to_jkt().as_bytes()),
                Ok(thumbprint)
            );
        }
    }
});
