//! PEM/DER certificate handling as Envoy's properties and forwarded headers
//! feed it: SPKI thumbprints, SAN extraction, source addresses and CIDRs.
#![no_main]

use cnf_guard::thumbprint::{
    certificate_der_from_pem, spki_thumbprint_from_der, spki_thumbprint_from_pem,
};
use cnf_guard::trust::{peer_sans_from_pem, source_ip, Cidr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = spki_thumbprint_from_der(data);
    if let Ok(der) = certificate_der_from_pem(data) {
        // Whatever PEM yields, the DER path must agree with the PEM path.
        assert_eq!(
            spki_thumbprint_from_pem(data).ok(),
            spki_thumbprint_from_der(&der).ok()
        );
    }
    let _ = peer_sans_from_pem(data);
    let _ = source_ip(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cidr) = Cidr::try_from(text.to_owned()) {
            // A network contains its own address.
            let address = text.split('/').next().and_then(|a| a.parse().ok());
            if let Some(address) = address {
                assert!(cidr.contains(address));
            }
        }
    }
});
