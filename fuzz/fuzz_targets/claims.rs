//! Token claims from attacker-shaped payloads: the `Authorization: Bearer`
//! decoding and the `cnf` extraction. A certificate binding is only ever the
//! canonical thumbprint the payload spells out.
#![no_main]

use cnf_guard::token::binding::TokenBinding;
use cnf_guard::token::claims::bearer_payload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bearer_payload(data);
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let TokenBinding::Certificate(thumbprint) = TokenBinding::from_payload(&payload) {
        assert_eq!(
            payload["cnf"]["x5t#S256"].as_str(),
            Some(thumbprint.to_x5t().as_str())
        );
    }
});
