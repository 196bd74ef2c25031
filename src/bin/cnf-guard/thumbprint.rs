//! `cnf-guard thumbprint`: the value a bound token's `cnf.x5t#S256` must hold.

use crate::args::Input;
use crate::failure::Failure;
use crate::inputs::Certificate;
use crate::report::Report;
use serde_json::json;

pub fn run(input: &Input, spki: bool) -> Result<Report, Failure> {
    let certificate = Certificate::load(input)?;
    let (kind, x5t, sha256_hex) = if spki {
        (
            "spki",
            certificate.spki_thumbprint.to_x5t(),
            certificate.spki_hex_digest(),
        )
    } else {
        (
            "certificate",
            certificate.thumbprint.to_x5t(),
            certificate.hex_digest(),
        )
    };
    let hex_label = if spki {
        "sha256 of the SubjectPublicKeyInfo (hex)"
    } else {
        "sha256 (hex; Envoy's connection.sha256_peer_certificate_digest)"
    };
    let text = format!(
        "certificate: {} ({})\nthumbprint:  {kind}\nx5t#S256:    {x5t}\n{hex_label}:\n             {sha256_hex}\n",
        certificate.source, certificate.subject
    );
    Ok(Report {
        text,
        json: json!({
            "certificate": certificate.source,
            "subject": certificate.subject,
            "thumbprint": kind,
            "x5t#S256": x5t,
            "sha256_hex": sha256_hex,
        }),
        exit_code: 0,
    })
}
