//! Envoy's map encoding of metadata, as the filter decodes it: every decoded
//! key and value lies inside the input, and decoding is all-or-nothing.
#![no_main]

use cnf_guard::token::pairs::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(pairs) = decode(data) {
        let total: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        assert!(4 + 8 * pairs.len() + total <= data.len());
    }
});
