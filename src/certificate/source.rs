//! Where the client certificate comes from: the downstream TLS connection
//! that Envoy terminated and validated, or a header forwarded by a trusted
//! proxy that did. Validation itself is the TLS terminator's job.

use crate::certificate::config::CertificateConfig;
use crate::certificate::forwarded::{self, ForwardedFormat};
use crate::certificate::thumbprint::ThumbprintKind;
use crate::certificate::thumbprint::{spki_thumbprint_from_pem, Thumbprint};
use crate::certificate::trust::{peer_sans_from_pem, source_ip, Hop, TrustedProxy};
use crate::compat::PEER_CERTIFICATE_SINCE;
use crate::headers::LazyHeaders;
use crate::host::Host;
use crate::policy::decision::ClientCertificate;

pub(crate) const PEER_DIGEST: [&str; 2] = ["connection", "sha256_peer_certificate_digest"];
pub(crate) const PEER_PEM: [&str; 2] = ["connection", "peer_certificate"];
pub(crate) const PEER_SUBJECT: [&str; 2] = ["connection", "subject_peer_certificate"];
/// The first URI SAN and the first DNS SAN of the peer's certificate: what
/// an Envoy without `connection.peer_certificate` (before 1.38) offers.
pub(crate) const PEER_URI_SAN: [&str; 2] = ["connection", "uri_san_peer_certificate"];
pub(crate) const PEER_DNS_SAN: [&str; 2] = ["connection", "dns_san_peer_certificate"];
pub(crate) const SOURCE_ADDRESS: [&str; 2] = ["source", "address"];

pub fn client_certificate(
    source: &CertificateConfig,
    kind: ThumbprintKind,
    host: &impl Host,
    headers: &LazyHeaders,
) -> ClientCertificate {
    match (source.source.forwarded_format(), source.header_name()) {
        (Some(format), Some(header)) => {
            let forwarded = Forwarded {
                format,
                header: &header,
                trusted_proxy: &source.trusted_proxy,
            };
            forwarded.certificate(kind, host, headers)
        }
        _ => connection_certificate(kind, host),
    }
}

fn connection_certificate(kind: ThumbprintKind, host: &impl Host) -> ClientCertificate {
    let path: &[&str] = match kind {
        ThumbprintKind::Certificate => &PEER_DIGEST,
        ThumbprintKind::Spki => &PEER_PEM,
    };
    let value = match host.property(path) {
        Ok(Some(value)) => value,
        Ok(None) if kind == ThumbprintKind::Spki => return spki_without_pem(host),
        Ok(None) => return ClientCertificate::Absent,
        Err(error) => {
            log::warn!("cannot read {}: {error}", path.join("."));
            return ClientCertificate::Unusable(format!(
                "the proxy could not provide it ({error})"
            ));
        }
    };
    match kind {
        ThumbprintKind::Certificate => match Thumbprint::from_hex(&value) {
            Some(thumbprint) => ClientCertificate::Present(thumbprint),
            None => {
                ClientCertificate::Unusable("the proxy's certificate digest is not hex".to_owned())
            }
        },
        ThumbprintKind::Spki => match spki_thumbprint_from_pem(&value) {
            Ok(thumbprint) => ClientCertificate::Present(thumbprint),
            Err(error) => ClientCertificate::Unusable(error.to_string()),
        },
    }
}

/// No PEM: either no client certificate, or an Envoy too old to give it
/// (before 1.38), which the digest tells apart. Read on this path only.
fn spki_without_pem(host: &impl Host) -> ClientCertificate {
    match host.property(&PEER_DIGEST) {
        Ok(Some(_)) => ClientCertificate::Unusable(format!(
            "this Envoy does not provide connection.peer_certificate (Envoy {} and later do), \
             which the `spki` thumbprint is computed from",
            PEER_CERTIFICATE_SINCE.minor_release()
        )),
        _ => ClientCertificate::Absent,
    }
}

/// A certificate forwarded in a header by a proxy in front.
struct Forwarded<'a> {
    format: ForwardedFormat,
    header: &'a str,
    trusted_proxy: &'a TrustedProxy,
}

impl Forwarded<'_> {
    /// The header is read first: without one there is nothing to trust. Its
    /// bytes are parsed only once the hop is known to be trusted.
    fn certificate(
        &self,
        kind: ThumbprintKind,
        host: &impl Host,
        headers: &LazyHeaders,
    ) -> ClientCertificate {
        let header = self.header;
        let headers = match headers.get(host) {
            Ok(headers) => headers,
            Err(error) => {
                log::warn!("cannot read the request headers for {header}: {error}");
                return ClientCertificate::Unusable(format!(
                    "the proxy could not provide the {header} header ({error})"
                ));
            }
        };
        let lines: Vec<&[u8]> = headers
            .lines(header)
            .filter(|value| value.iter().any(|b| !b.is_ascii_whitespace()))
            .collect();
        if lines.is_empty() {
            return ClientCertificate::Absent;
        }
        if let Err(distrust) = self.trusted_proxy.admits(&hop(self.trusted_proxy, host)) {
            log::info!("ignored the {header} header from an untrusted hop: {distrust}");
            return ClientCertificate::Untrusted(header.to_owned());
        }
        let value = match (self.format.is_xfcc(), lines.as_slice()) {
            // XFCC is a list: its lines are one list in order (as Envoy joins
            // them), and the last element is the trusted hop's own.
            (true, _) => lines.join(&b',').into(),
            (false, [one]) => std::borrow::Cow::Borrowed(*one),
            (false, several) => {
                return ClientCertificate::Unusable(format!(
                    "the {header} header came in {} lines; exactly one is expected",
                    several.len()
                ))
            }
        };
        match forwarded::parse(self.format, &value)
            .and_then(|certificate| certificate.thumbprint(kind))
        {
            Ok(thumbprint) => ClientCertificate::Present(thumbprint),
            Err(error) => ClientCertificate::Unusable(error.to_string()),
        }
    }
}

/// Reads only the facts the trust check uses. A fact the host cannot give is
/// unknown, and unknown never matches.
fn hop(trusted_proxy: &TrustedProxy, host: &impl Host) -> Hop {
    let read = |path: &[&str]| match host.property(path) {
        Ok(value) => value,
        Err(error) => {
            log::warn!("cannot read {}: {error}", path.join("."));
            None
        }
    };
    let peer_sans = trusted_proxy
        .checks_peer_sans()
        .then(|| match read(&PEER_PEM) {
            Some(pem) => match peer_sans_from_pem(&pem) {
                Ok(sans) => Some(sans),
                Err(error) => {
                    log::warn!("cannot read the peer's SANs: {error}");
                    None
                }
            },
            // Envoy before 1.38: its first URI SAN and first DNS SAN only.
            None => {
                let sans: Vec<String> = [PEER_URI_SAN, PEER_DNS_SAN]
                    .iter()
                    .filter_map(|path| read(path))
                    .filter_map(|san| String::from_utf8(san).ok())
                    .collect();
                (!sans.is_empty()).then_some(sans)
            }
        })
        .flatten();
    let peer_subject = trusted_proxy
        .checks_peer_subject()
        .then(|| read(&PEER_SUBJECT))
        .flatten()
        .and_then(|subject| String::from_utf8(subject).ok());
    let source = trusted_proxy
        .checks_source()
        .then(|| read(&SOURCE_ADDRESS))
        .flatten()
        .and_then(|address| source_ip(&address));
    Hop {
        peer_sans,
        peer_subject,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One request's certificate, its headers read from the host.
    fn read(
        source: &CertificateConfig,
        kind: ThumbprintKind,
        host: &MockHost,
    ) -> ClientCertificate {
        client_certificate(source, kind, host, &LazyHeaders::default())
    }
    use crate::host::mock::MockHost;

    fn connection() -> CertificateConfig {
        CertificateConfig::default()
    }

    #[test]
    fn digest_is_read_as_hex() {
        let thumbprint = Thumbprint::of(b"der");
        let hex_digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"der"));
        let host = MockHost::default().with_property(&PEER_DIGEST, hex_digest.as_bytes());
        assert_eq!(
            read(&connection(), ThumbprintKind::Certificate, &host),
            ClientCertificate::Present(thumbprint)
        );
        assert_eq!(host.calls.get(), 1);
    }

    #[test]
    fn absent_and_garbage() {
        let host = MockHost::default();
        assert_eq!(
            read(&connection(), ThumbprintKind::Certificate, &host),
            ClientCertificate::Absent
        );
        assert_eq!(
            read(&connection(), ThumbprintKind::Spki, &host),
            ClientCertificate::Absent
        );
        let host = MockHost::default()
            .with_property(&PEER_DIGEST, b"zz".to_vec())
            .with_property(&PEER_PEM, b"not pem".to_vec());
        assert!(matches!(
            read(&connection(), ThumbprintKind::Certificate, &host),
            ClientCertificate::Unusable(_)
        ));
        assert!(matches!(
            read(&connection(), ThumbprintKind::Spki, &host),
            ClientCertificate::Unusable(_)
        ));
    }

    fn pem_with_san(uri: &str) -> (String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::URI(uri.try_into().unwrap()));
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), cert.der().to_vec())
    }

    fn xfcc_from_peer(peer_uri: &str) -> (MockHost, Vec<u8>) {
        let (proxy_pem, _) = pem_with_san(peer_uri);
        let (client_pem, client_der) = pem_with_san("spiffe://mesh/client");
        let cert =
            percent_encoding::utf8_percent_encode(&client_pem, percent_encoding::NON_ALPHANUMERIC);
        let host = MockHost::default()
            .with_property(&PEER_PEM, proxy_pem.into_bytes())
            .with_header("x-forwarded-client-cert", &format!("Cert=\"{cert}\""));
        (host, client_der)
    }

    fn by_edge_san() -> CertificateConfig {
        CertificateConfig {
            source: crate::certificate::config::CertificateSource::XfccCert,
            trusted_proxy: TrustedProxy {
                peer_sans: vec!["spiffe://mesh/edge".to_owned()],
                ..TrustedProxy::default()
            },
            ..CertificateConfig::default()
        }
    }

    #[test]
    fn forwarded_certificate_trusted_by_peer_san() {
        let (host, client_der) = xfcc_from_peer("spiffe://mesh/edge");
        assert_eq!(
            read(&by_edge_san(), ThumbprintKind::Certificate, &host),
            ClientCertificate::Present(Thumbprint::of(&client_der))
        );
        let (host, _) = xfcc_from_peer("spiffe://mesh/client-2");
        assert_eq!(
            read(&by_edge_san(), ThumbprintKind::Certificate, &host),
            ClientCertificate::Untrusted("x-forwarded-client-cert".to_owned())
        );
        assert!(host.logged("peer certificate is not a trusted proxy's"));
    }

    /// Envoy before 1.38: no PEM, only the first URI SAN and first DNS SAN.
    fn xfcc_from_old_envoy(uri_san: Option<&str>, dns_san: Option<&str>) -> (MockHost, Vec<u8>) {
        let (client_pem, client_der) = pem_with_san("spiffe://mesh/client");
        let cert =
            percent_encoding::utf8_percent_encode(&client_pem, percent_encoding::NON_ALPHANUMERIC);
        let mut host = MockHost::default()
            .with_property(&PEER_DIGEST, b"0123".to_vec())
            .with_header("x-forwarded-client-cert", &format!("Cert=\"{cert}\""));
        if let Some(san) = uri_san {
            host = host.with_property(&PEER_URI_SAN, san.as_bytes().to_vec());
        }
        if let Some(san) = dns_san {
            host = host.with_property(&PEER_DNS_SAN, san.as_bytes().to_vec());
        }
        (host, client_der)
    }

    #[test]
    fn without_the_pem_peer_sans_are_the_first_uri_and_dns_san() {
        let (host, client_der) = xfcc_from_old_envoy(Some("spiffe://mesh/edge"), None);
        assert_eq!(
            read(&by_edge_san(), ThumbprintKind::Certificate, &host),
            ClientCertificate::Present(Thumbprint::of(&client_der))
        );
        let by_dns = CertificateConfig {
            trusted_proxy: TrustedProxy {
                peer_sans: vec!["Edge.Example".to_owned()],
                ..TrustedProxy::default()
            },
            ..by_edge_san()
        };
        let (host, client_der) =
            xfcc_from_old_envoy(Some("spiffe://mesh/other"), Some("edge.example"));
        assert_eq!(
            read(&by_dns, ThumbprintKind::Certificate, &host),
            ClientCertificate::Present(Thumbprint::of(&client_der))
        );
        for (uri, dns) in [
            (Some("spiffe://mesh/other"), Some("other.example")),
            (None, None),
        ] {
            let (host, _) = xfcc_from_old_envoy(uri, dns);
            assert_eq!(
                read(&by_edge_san(), ThumbprintKind::Certificate, &host),
                ClientCertificate::Untrusted("x-forwarded-client-cert".to_owned())
            );
        }
    }

    #[test]
    fn spki_on_an_envoy_without_the_pem_says_so() {
        let host = MockHost::default().with_property(&PEER_DIGEST, b"0123".to_vec());
        assert!(matches!(
            read(&connection(), ThumbprintKind::Spki, &host),
            ClientCertificate::Unusable(reason)
                if reason.contains("does not provide connection.peer_certificate (Envoy 1.38 and later do)")
        ));
        // The certificate thumbprint needs only the digest.
        assert!(matches!(
            read(&connection(), ThumbprintKind::Certificate, &host),
            ClientCertificate::Unusable(reason) if reason.contains("not hex")
        ));
    }

    #[test]
    fn unreadable_hop_facts_are_not_trusted() {
        let (host, _) = xfcc_from_peer("spiffe://mesh/edge");
        let host = host.with_failing_property(
            &PEER_PEM,
            crate::host::HostError::Failure("NotFound".to_owned()),
        );
        assert_eq!(
            read(&by_edge_san(), ThumbprintKind::Spki, &host),
            ClientCertificate::Untrusted("x-forwarded-client-cert".to_owned())
        );
        // No header: nothing to trust, nothing read but the header.
        let host = MockHost::default();
        assert_eq!(
            read(&by_edge_san(), ThumbprintKind::Certificate, &host),
            ClientCertificate::Absent
        );
        assert_eq!(host.calls.get(), 1);
        // Garbage from a trusted hop is unusable, not a mismatch.
        let (proxy_pem, _) = pem_with_san("spiffe://mesh/edge");
        let host = MockHost::default()
            .with_property(&PEER_PEM, proxy_pem.into_bytes())
            .with_header("x-forwarded-client-cert", "Cert=\"garbage\"");
        assert!(matches!(
            read(&by_edge_san(), ThumbprintKind::Certificate, &host),
            ClientCertificate::Unusable(reason) if reason.contains("not PEM")
        ));
    }
}
