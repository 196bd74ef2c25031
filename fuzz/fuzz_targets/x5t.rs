//! `cnf.x5t#S256` parsing is strict: whatever it accepts prints back to the
//! very same bytes, so one digest has exactly one accepted spelling.
#![no_main]

use cnf_guard::certificate::thumbprint::Thumbprint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(thumbprint) = Thumbprint::from_x5t(data) {
        assert_eq!(thumbprint.to_x5t().as_bytes(), data);
    }
    if let Some(thumbprint) = Thumbprint::from_hex(data) {
        assert_eq!(data.len(), 64);
        assert_eq!(
            Thumbprint::from_x5t(thumbprint.to_x5t().as_bytes()),
            Ok(thumbprint)
        );
    }
});
