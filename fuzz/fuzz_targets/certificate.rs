//! PEM/DER certificate handling as Envoy's properties and forwarded headers
//! feed it: SPKI thumbprints, SAN extraction, source addresses and CIDRs.
//! The DER walker and the PEM reader must also judge every input as the
//! crates they replaced (x509-cert, pem-rfc7468) did.
#![no_main]

use cnf_guard::certificate::thumbprint::{
    certificate_der_from_pem, spki_thumbprint_from_der, spki_thumbprint_from_pem,
};
use cnf_guard::certificate::trust::{peer_sans_from_pem, source_ip, Cidr};
use cnf_guard::certificate::x509::{Certificate, GeneralName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = spki_thumbprint_from_der(data);
    walks_as_x509_cert_decoded(data);
    let der = certificate_der_from_pem(data);
    assert_eq!(der.as_ref().ok(), pem_rfc7468_der(data).as_ref());
    if let Ok(der) = der {
        // Whatever PEM yields, the DER path must agree with the PEM path.
        assert_eq!(
            spki_thumbprint_from_pem(data).ok(),
            spki_thumbprint_from_der(&der).ok()
        );
        walks_as_x509_cert_decoded(&der);
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

/// The first CERTIFICATE block as pem-rfc7468 decoded it.
fn pem_rfc7468_der(pem: &[u8]) -> Option<Vec<u8>> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let find = |haystack: &[u8], needle: &[u8]| {
        haystack
            .windows(needle.len())
            .position(|window| window == needle)
    };
    let text: Vec<u8> = if pem.starts_with(BEGIN) {
        pem.to_vec()
    } else {
        percent_encoding::percent_decode(pem).collect()
    };
    let rest = &text[find(&text, BEGIN)?..];
    let block = &rest[..find(rest, END)? + END.len()];
    match pem_rfc7468::decode_vec(block) {
        Ok(("CERTIFICATE", der)) => Some(der),
        _ => None,
    }
}

/// Same verdict, SPKI and SANs as x509-cert; stricter only where DER is
/// (OID arcs in their fewest octets; nothing out of place in
/// tbsCertificate) and laxer only on duplicate attributes within one RDN.
fn walks_as_x509_cert_decoded(der: &[u8]) {
    use der::{Decode as _, Encode as _};
    use x509_cert::ext::pkix::{name::GeneralName as Name, SubjectAltName};
    let stricter = |error: cnf_guard::certificate::x509::Error| {
        error.problem == "OBJECT IDENTIFIER arc not minimal"
            || error.problem == "unexpected data after the last field"
                && error.field == "tbsCertificate"
    };
    let walked = Certificate::parse(der);
    let reference = match x509_cert::Certificate::from_der(der) {
        Ok(reference) => reference,
        Err(error) => {
            if error.kind() != der::ErrorKind::SetDuplicate {
                assert!(walked.is_err(), "x509-cert refused it: {error}");
            }
            return;
        }
    };
    let walked = match walked {
        Ok(walked) => walked,
        Err(error) => return assert!(stricter(error), "x509-cert took it: {error}"),
    };
    let spki = reference.tbs_certificate.subject_public_key_info.to_der();
    assert_eq!(Some(walked.subject_public_key_info()), spki.as_deref().ok());
    let names = match (
        walked.subject_alt_names(),
        reference.tbs_certificate.get::<SubjectAltName>(),
    ) {
        (Ok(names), Ok(reference)) => (names, reference),
        (Err(error), Ok(_)) => return assert!(stricter(error), "x509-cert took it: {error}"),
        (Ok(_), Err(error)) => {
            return assert_eq!(error.kind(), der::ErrorKind::SetDuplicate, "{error}")
        }
        (Err(_), Err(_)) => return,
    };
    let expected: Vec<GeneralName> = match &names.1 {
        None => Vec::new(),
        Some((_, SubjectAltName(reference))) => reference
            .iter()
            .map(|name| match name {
                Name::DnsName(dns) => GeneralName::Dns(dns.as_str()),
                Name::UniformResourceIdentifier(uri) => GeneralName::Uri(uri.as_str()),
                Name::IpAddress(octets) => GeneralName::Ip(octets.as_bytes()),
                _ => GeneralName::Other,
            })
            .collect(),
    };
    assert_eq!(names.0, expected);
}
