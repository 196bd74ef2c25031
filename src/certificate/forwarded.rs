//! Client certificates forwarded in a request header by a TLS-terminating
//! proxy, in the formats such proxies write. Pure: header bytes in, DER (or a
//! digest) out. Whether the sender of the header is trusted is `trust`'s job.

use crate::certificate::thumbprint::ThumbprintKind;
use crate::certificate::thumbprint::{
    certificate_der_from_pem, spki_thumbprint_from_der, Thumbprint,
};
use crate::certificate::xfcc::{last_element, XfccError};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

/// How the forwarded header carries the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedFormat {
    /// `x-forwarded-client-cert`, last element's `Cert` (URL-encoded PEM).
    XfccCert,
    /// `x-forwarded-client-cert`, last element's `Hash` (hex SHA-256 of the DER).
    XfccHash,
    /// RFC 9440 `Client-Cert: :<base64 DER>:`.
    ClientCert,
    /// URL-encoded (or plain) PEM: nginx `$ssl_client_escaped_cert`, AWS ALB.
    PemHeader,
    /// Base64 DER.
    DerHeader,
}

impl ForwardedFormat {
    /// Formats that carry only a digest cannot give the SPKI thumbprint.
    pub fn carries_certificate(self) -> bool {
        self != ForwardedFormat::XfccHash
    }

    /// XFCC is a list of elements, and several lines of it are one list.
    pub fn is_xfcc(self) -> bool {
        matches!(self, ForwardedFormat::XfccCert | ForwardedFormat::XfccHash)
    }
}

/// What a forwarded header yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardedCertificate {
    /// The DER certificate, not yet checked to be one.
    Der(Vec<u8>),
    /// The SHA-256 of the DER certificate, as the proxy computed it.
    Digest(Thumbprint),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardedError {
    Xfcc(XfccError),
    NoCert,
    NoHash,
    HashNotHex,
    /// XFCC `Hash` is not the SHA-256 of XFCC `Cert`.
    HashDisagrees,
    NotPem,
    SeveralCertificates,
    NotByteSequence,
    NotBase64,
    NotCertificate(String),
    /// A digest cannot give the SPKI thumbprint.
    DigestOnly,
}

impl std::fmt::Display for ForwardedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardedError::Xfcc(error) => write!(f, "malformed x-forwarded-client-cert: {error}"),
            ForwardedError::NoCert => write!(f, "the last x-forwarded-client-cert element has no Cert"),
            ForwardedError::NoHash => write!(f, "the last x-forwarded-client-cert element has no Hash"),
            ForwardedError::HashNotHex => write!(f, "the x-forwarded-client-cert Hash is not a hex SHA-256"),
            ForwardedError::HashDisagrees => write!(
                f,
                "the x-forwarded-client-cert Hash is not the SHA-256 of its Cert"
            ),
            ForwardedError::NotPem => write!(f, "the forwarded certificate is not PEM"),
            ForwardedError::SeveralCertificates => write!(
                f,
                "the forwarded header holds more than one certificate; which is the client's is ambiguous"
            ),
            ForwardedError::NotByteSequence => write!(
                f,
                "the Client-Cert header is not one structured-field byte sequence (:base64:)"
            ),
            ForwardedError::NotBase64 => write!(f, "the forwarded certificate is not base64"),
            ForwardedError::NotCertificate(reason) => {
                write!(f, "the forwarded certificate is not a DER certificate: {reason}")
            }
            ForwardedError::DigestOnly => write!(
                f,
                "the forwarded header carries only a digest, which cannot give an SPKI thumbprint"
            ),
        }
    }
}

/// Parses one forwarded header value. Leading and trailing spaces are ignored.
pub fn parse(
    format: ForwardedFormat,
    value: &[u8],
) -> Result<ForwardedCertificate, ForwardedError> {
    let value = value.trim_ascii();
    match format {
        ForwardedFormat::XfccCert => {
            let element = last_element(value).map_err(ForwardedError::Xfcc)?;
            let der =
                single_certificate_der(element.cert.ok_or(ForwardedError::NoCert)?.as_bytes())?;
            // Envoy writes both; a proxy that disagrees with itself is not trusted.
            if let Some(hash) = element.hash {
                let digest =
                    Thumbprint::from_hex(hash.as_bytes()).ok_or(ForwardedError::HashNotHex)?;
                if !digest.matches(&Thumbprint::of(&der)) {
                    return Err(ForwardedError::HashDisagrees);
                }
            }
            Ok(ForwardedCertificate::Der(der))
        }
        ForwardedFormat::XfccHash => {
            let element = last_element(value).map_err(ForwardedError::Xfcc)?;
            let hash = element.hash.ok_or(ForwardedError::NoHash)?;
            Thumbprint::from_hex(hash.as_bytes())
                .map(ForwardedCertificate::Digest)
                .ok_or(ForwardedError::HashNotHex)
        }
        ForwardedFormat::ClientCert => byte_sequence(value).map(ForwardedCertificate::Der),
        ForwardedFormat::PemHeader => single_certificate_der(value).map(ForwardedCertificate::Der),
        ForwardedFormat::DerHeader => {
            if value.contains(&b',') {
                return Err(ForwardedError::SeveralCertificates);
            }
            BASE64
                .decode(value)
                .map(ForwardedCertificate::Der)
                .map_err(|_| ForwardedError::NotBase64)
        }
    }
}

impl ForwardedCertificate {
    /// The thumbprint of the requested kind. DER that is not a certificate is
    /// refused here, so garbage is "unusable", never a thumbprint mismatch.
    pub fn thumbprint(&self, kind: ThumbprintKind) -> Result<Thumbprint, ForwardedError> {
        match (self, kind) {
            (ForwardedCertificate::Digest(digest), ThumbprintKind::Certificate) => Ok(*digest),
            (ForwardedCertificate::Digest(_), ThumbprintKind::Spki) => {
                Err(ForwardedError::DigestOnly)
            }
            (ForwardedCertificate::Der(der), ThumbprintKind::Certificate) => {
                crate::certificate::x509::Certificate::parse(der)
                    .map_err(|error| ForwardedError::NotCertificate(error.to_string()))?;
                Ok(Thumbprint::of(der))
            }
            (ForwardedCertificate::Der(der), ThumbprintKind::Spki) => spki_thumbprint_from_der(der)
                .map_err(|error| ForwardedError::NotCertificate(error.to_string())),
        }
    }
}

/// RFC 4648 §4 base64; RFC 8941 asks parsers to tolerate missing padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An RFC 8941 byte sequence item (`:<base64>:`), parameters allowed and ignored.
fn byte_sequence(value: &[u8]) -> Result<Vec<u8>, ForwardedError> {
    let inner = value
        .strip_prefix(b":")
        .ok_or(ForwardedError::NotByteSequence)?;
    let end = inner
        .iter()
        .position(|&b| b == b':')
        .ok_or(ForwardedError::NotByteSequence)?;
    let (encoded, after) = inner.split_at(end);
    let parameters = after.get(1..).unwrap_or_default();
    if parameters.contains(&b',') {
        // A list: several headers folded into one.
        return Err(ForwardedError::SeveralCertificates);
    }
    if !(parameters.is_empty() || parameters.starts_with(b";")) {
        return Err(ForwardedError::NotByteSequence);
    }
    BASE64
        .decode(encoded)
        .map_err(|_| ForwardedError::NotBase64)
}

/// The DER of the one certificate in plain or URL-encoded PEM. `+`, `/` and
/// `=` may be left unescaped (AWS ALB): percent-decoding never touches them.
fn single_certificate_der(pem: &[u8]) -> Result<Vec<u8>, ForwardedError> {
    let text = percent_encoding::percent_decode(pem).collect::<Vec<u8>>();
    let begins = text
        .windows(BEGIN.len())
        .filter(|window| *window == BEGIN)
        .count();
    match begins {
        0 => Err(ForwardedError::NotPem),
        1 => certificate_der_from_pem(&text).map_err(|_| ForwardedError::NotPem),
        _ => Err(ForwardedError::SeveralCertificates),
    }
}

const BEGIN: &[u8] = b"-----BEGIN";

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS, NON_ALPHANUMERIC};

    /// Envoy's XFCC `Cert` escaping: newline, space, `+`, `/`, `=` (and `"`, `,`, `;`).
    const ENVOY_STYLE: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'+')
        .add(b'/')
        .add(b'=')
        .add(b'"')
        .add(b',')
        .add(b';');
    /// AWS ALB: like Envoy, but `+`, `/` and `=` stay as they are.
    const ALB_STYLE: &AsciiSet = &CONTROLS.add(b' ');

    struct Certificate {
        pem: String,
        der: Vec<u8>,
        spki: Thumbprint,
    }

    fn certificate() -> Certificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Certificate {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            spki: Thumbprint::of(&key.public_key_der()),
        }
    }

    fn thumbprints(
        format: ForwardedFormat,
        value: &str,
    ) -> Result<(Thumbprint, Thumbprint), ForwardedError> {
        let parsed = parse(format, value.as_bytes())?;
        Ok((
            parsed.thumbprint(ThumbprintKind::Certificate)?,
            parsed.thumbprint(ThumbprintKind::Spki)?,
        ))
    }

    fn xfcc_cert(pem: &str) -> String {
        format!("Cert=\"{}\"", utf8_percent_encode(pem, ENVOY_STYLE))
    }

    #[test]
    fn xfcc_cert_from_envoy() {
        let c = certificate();
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&c.der));
        let value = format!(
            "By=spiffe://edge;Hash=00,Hash={digest};{};Subject=\"CN=client,O=x\";URI=",
            xfcc_cert(&c.pem)
        );
        assert_eq!(
            thumbprints(ForwardedFormat::XfccCert, &value),
            Ok((Thumbprint::of(&c.der), c.spki))
        );
        assert_eq!(
            parse(ForwardedFormat::XfccHash, value.as_bytes()),
            Ok(ForwardedCertificate::Digest(Thumbprint::of(&c.der)))
        );
    }

    #[test]
    fn xfcc_cert_and_hash_must_agree() {
        let c = certificate();
        let other = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"other"));
        let value = format!("Hash={other};{}", xfcc_cert(&c.pem));
        assert_eq!(
            parse(ForwardedFormat::XfccCert, value.as_bytes()),
            Err(ForwardedError::HashDisagrees)
        );
        let value = format!("Hash=zz;{}", xfcc_cert(&c.pem));
        assert_eq!(
            parse(ForwardedFormat::XfccCert, value.as_bytes()),
            Err(ForwardedError::HashNotHex)
        );
    }

    #[test]
    fn xfcc_missing_keys() {
        assert_eq!(
            parse(ForwardedFormat::XfccCert, b"Hash=00;URI=x"),
            Err(ForwardedError::NoCert)
        );
        assert_eq!(
            parse(ForwardedFormat::XfccHash, b"Cert=\"x\""),
            Err(ForwardedError::NoHash)
        );
        // Only the last element counts: an earlier Cert is not borrowed.
        let c = certificate();
        let value = format!("{},URI=spiffe://x", xfcc_cert(&c.pem));
        assert_eq!(
            parse(ForwardedFormat::XfccCert, value.as_bytes()),
            Err(ForwardedError::NoCert)
        );
        assert_eq!(
            parse(ForwardedFormat::XfccHash, b"Hash=abc"),
            Err(ForwardedError::HashNotHex)
        );
    }

    #[test]
    fn url_encoded_pem_every_style() {
        let c = certificate();
        let expected = Ok((Thumbprint::of(&c.der), c.spki));
        for encoded in [
            c.pem.clone(),
            utf8_percent_encode(&c.pem, ENVOY_STYLE).to_string(),
            utf8_percent_encode(&c.pem, ALB_STYLE).to_string(),
            utf8_percent_encode(&c.pem, NON_ALPHANUMERIC).to_string(),
            utf8_percent_encode(&c.pem.replace('\n', "\r\n"), NON_ALPHANUMERIC).to_string(),
        ] {
            assert_eq!(
                thumbprints(ForwardedFormat::PemHeader, &encoded),
                expected,
                "{encoded}"
            );
        }
        // ALB leaves `+`, `/` and `=` in place; they must not become spaces.
        let alb = utf8_percent_encode(&c.pem, ALB_STYLE).to_string();
        assert!(alb.contains('=') || alb.contains('+') || alb.contains('/'));
    }

    #[test]
    fn two_certificates_in_one_header_are_ambiguous() {
        let (a, b) = (certificate(), certificate());
        let both = format!("{}{}", a.pem, b.pem);
        let encoded = utf8_percent_encode(&both, ENVOY_STYLE).to_string();
        assert_eq!(
            parse(ForwardedFormat::PemHeader, encoded.as_bytes()),
            Err(ForwardedError::SeveralCertificates)
        );
        assert_eq!(
            parse(ForwardedFormat::XfccCert, xfcc_cert(&both).as_bytes()),
            Err(ForwardedError::SeveralCertificates)
        );
        let two_items = format!(
            ":{}:, :{}:",
            STANDARD.encode(&a.der),
            STANDARD.encode(&b.der)
        );
        assert_eq!(
            parse(ForwardedFormat::ClientCert, two_items.as_bytes()),
            Err(ForwardedError::SeveralCertificates)
        );
        let two_der = format!("{},{}", STANDARD.encode(&a.der), STANDARD.encode(&b.der));
        assert_eq!(
            parse(ForwardedFormat::DerHeader, two_der.as_bytes()),
            Err(ForwardedError::SeveralCertificates)
        );
    }

    #[test]
    fn rfc9440_client_cert() {
        let c = certificate();
        let expected = Ok((Thumbprint::of(&c.der), c.spki));
        let encoded = STANDARD.encode(&c.der);
        for value in [
            format!(":{encoded}:"),
            format!("  :{encoded}:  "),
            format!(":{}:", encoded.trim_end_matches('=')),
            format!(":{encoded}:;source=edge"),
        ] {
            assert_eq!(
                thumbprints(ForwardedFormat::ClientCert, &value),
                expected,
                "{value}"
            );
        }
        for (value, error) in [
            (encoded.clone(), ForwardedError::NotByteSequence),
            (format!(":{encoded}"), ForwardedError::NotByteSequence),
            (format!(":{encoded}:x"), ForwardedError::NotByteSequence),
            (
                format!(":{}:", encoded.replace('+', "-").replace('/', "_") + "-"),
                ForwardedError::NotBase64,
            ),
            (String::new(), ForwardedError::NotByteSequence),
        ] {
            assert_eq!(
                parse(ForwardedFormat::ClientCert, value.as_bytes()),
                Err(error),
                "{value}"
            );
        }
    }

    #[test]
    fn base64_der_header() {
        let c = certificate();
        let encoded = STANDARD.encode(&c.der);
        assert_eq!(
            thumbprints(ForwardedFormat::DerHeader, &encoded),
            Ok((Thumbprint::of(&c.der), c.spki))
        );
        assert_eq!(
            parse(ForwardedFormat::DerHeader, b"not base64!"),
            Err(ForwardedError::NotBase64)
        );
    }

    #[test]
    fn empty_truncated_and_garbage_values() {
        let c = certificate();
        let pem = utf8_percent_encode(&c.pem, ENVOY_STYLE).to_string();
        let truncated_pem = &pem[..pem.len() / 2];
        assert_eq!(
            parse(ForwardedFormat::PemHeader, truncated_pem.as_bytes()),
            Err(ForwardedError::NotPem)
        );
        assert_eq!(
            parse(ForwardedFormat::PemHeader, b""),
            Err(ForwardedError::NotPem)
        );
        assert!(matches!(
            parse(ForwardedFormat::XfccCert, b""),
            Err(ForwardedError::Xfcc(_))
        ));
        assert_eq!(
            parse(ForwardedFormat::ClientCert, b"::"),
            Ok(ForwardedCertificate::Der(Vec::new()))
        );
        // Truncated DER decodes as base64 but is not a certificate.
        let truncated = STANDARD.encode(&c.der[..c.der.len() - 10]);
        let parsed = parse(
            ForwardedFormat::ClientCert,
            format!(":{truncated}:").as_bytes(),
        )
        .unwrap();
        for kind in [ThumbprintKind::Certificate, ThumbprintKind::Spki] {
            assert!(matches!(
                parsed.thumbprint(kind),
                Err(ForwardedError::NotCertificate(_))
            ));
        }
        let digest = ForwardedCertificate::Digest(Thumbprint::of(b"x"));
        assert_eq!(
            digest.thumbprint(ThumbprintKind::Spki),
            Err(ForwardedError::DigestOnly)
        );
    }
}
