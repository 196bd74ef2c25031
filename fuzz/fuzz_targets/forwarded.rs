//! Every forwarded-certificate format on arbitrary header bytes. A DER result
//! must give the thumbprint of exactly those bytes, never something else.
#![no_main]

use cnf_guard::certificate::thumbprint::ThumbprintKind;
use cnf_guard::certificate::forwarded::{parse, ForwardedCertificate, ForwardedFormat};
use cnf_guard::certificate::thumbprint::Thumbprint;
use libfuzzer_sys::fuzz_target;

const FORMATS: [ForwardedFormat; 5] = [
    ForwardedFormat::XfccCert,
    ForwardedFormat::XfccHash,
    ForwardedFormat::ClientCert,
    ForwardedFormat::PemHeader,
    ForwardedFormat::DerHeader,
];

fuzz_target!(|data: &[u8]| {
    for format in FORMATS {
        let Ok(certificate) = parse(format, data) else {
            continue;
        };
        match &certificate {
            ForwardedCertificate::Der(der) => {
                if let Ok(thumbprint) = certificate.thumbprint(ThumbprintKind::Certificate) {
                    assert!(thumbprint.matches(&Thumbprint::of(der)));
                }
            }
            ForwardedCertificate::Digest(digest) => {
                assert_eq!(format, ForwardedFormat::XfccHash);
                assert_eq!(
                    certificate.thumbprint(ThumbprintKind::Certificate),
                    Ok(*digest)
                );
                assert!(certificate.thumbprint(ThumbprintKind::Spki).is_err());
            }
        }
        let _ = certificate.thumbprint(ThumbprintKind::Spki);
    }
});
