//! The few facts the filter reads from an X.509 certificate (RFC 5280), by
//! walking its DER with a minimal TLV reader instead of decoding it into
//! typed structures: the whole-certificate check, the SubjectPublicKeyInfo
//! bytes and the subjectAltName entries. A generic ASN.1 decoder was a fifth
//! of the wasm module; this is a few kilobytes.
//!
//! ```text
//! Certificate ::= SEQUENCE {
//!     tbsCertificate       SEQUENCE {
//!         version         [0] EXPLICIT INTEGER DEFAULT v1,
//!         serialNumber         INTEGER,
//!         signature            AlgorithmIdentifier,
//!         issuer               Name,
//!         validity             SEQUENCE { Time, Time },
//!         subject              Name,
//!         subjectPublicKeyInfo SEQUENCE { AlgorithmIdentifier, BIT STRING },
//!         issuerUniqueID  [1] IMPLICIT BIT STRING OPTIONAL,
//!         subjectUniqueID [2] IMPLICIT BIT STRING OPTIONAL,
//!         extensions      [3] EXPLICIT SEQUENCE OF Extension OPTIONAL },
//!     signatureAlgorithm   AlgorithmIdentifier,
//!     signatureValue       BIT STRING }
//! Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
//! ```
//!
//! Strict where a lenient reader could be made to disagree with the TLS
//! stack about which bytes are which: definite lengths only, in their
//! shortest form; single-byte tags; no length beyond its enclosing value;
//! nothing after the certificate or after the last field of any structure
//! read. Every field above is checked for its tag and encoding; what the
//! filter never reads (algorithm parameters, attribute values, extension
//! values other than subjectAltName) only for a known tag and a length.
//!
//! It accepts what the x509-cert decoder it replaced accepted, and nothing
//! more (the tests mutate certificates by the million and compare), with
//! the same checks on dates, OIDs, serial numbers and subjectAltName kinds.
//! Two things DER forbids and x509-cert let through are refused: OID arcs
//! with a redundant leading octet, and context-specific fields out of place
//! in tbsCertificate (x509-cert skipped a field numbered below the one it
//! looked for, so extensions retagged `[0]` vanished, SANs and all). One
//! check is not repeated: duplicate attributes within one multi-valued RDN.
//!
//! Never panics and never recurses on input: nesting is fixed by the walk.

use std::fmt;

/// Why bytes are not a certificate (or its subjectAltName is unusable):
/// the field being read and what was wrong with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    pub field: &'static str,
    pub problem: &'static str,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

fn error<T>(field: &'static str, problem: &'static str) -> Result<T, Error> {
    Err(Error { field, problem })
}

// Universal tags (X.690 §8), with the constructed bit where it belongs.
const BOOLEAN: u8 = 0x01;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;

/// Whether the x509-cert decoder this module replaced knew `tag`, kept so
/// that what it refused stays refused: the universal tags above and the
/// string, NULL, REAL and ENUMERATED ones, SEQUENCE and SET only constructed
/// (so no BER constructed strings); any application, context-specific or
/// private tag. Never a multi-byte tag (number 31 and up).
fn known_tag(tag: u8) -> bool {
    // Bit n: universal primitive tag n (X.690 §8.4): 1–6, 9, 10, 12, 18–24,
    // 26 and 30.
    const UNIVERSAL: u32 = 0b0100_0101_1111_1100_0001_0110_0111_1110;
    match tag {
        SEQUENCE | SET => true,
        0x00..=0x1F => UNIVERSAL >> tag & 1 == 1,
        0x20..=0x3F => false,
        _ => tag & 0x1F != 0x1F,
    }
}

/// Context-specific tags: `[n]` primitive is `0x80 | n`, constructed `0xA0 | n`.
const fn context(number: u8, constructed: bool) -> u8 {
    0x80 | (if constructed { 0x20 } else { 0 }) | number
}

/// `id-ce-subjectAltName` (2.5.29.17), the OID's content octets.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1D, 0x11];

/// One DER element: its tag, its value, and its whole encoding.
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    value: &'a [u8],
    encoded: &'a [u8],
}

/// Reads consecutive DER elements from a byte string.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn next_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element, whatever its tag.
    fn any(&mut self, field: &'static str) -> Result<Tlv<'a>, Error> {
        let input = self.rest;
        let Some((&tag, after_tag)) = input.split_first() else {
            return error(field, "missing");
        };
        if !known_tag(tag) {
            return error(field, "unknown or multi-byte tag");
        }
        let Some((&first, mut after_length)) = after_tag.split_first() else {
            return error(field, "truncated length");
        };
        let length = match first {
            // Short form: the length itself.
            0x00..=0x7F => usize::from(first),
            0x80 => return error(field, "indefinite length (not DER)"),
            // Long form: 1 to 4 big-endian bytes, in the fewest possible.
            0x81..=0x84 => {
                let count = usize::from(first & 0x7F);
                let Some(bytes) = after_length.get(..count) else {
                    return error(field, "truncated length");
                };
                after_length = after_length.get(count..).unwrap_or_default();
                let length = bytes
                    .iter()
                    .fold(0u32, |length, &byte| (length << 8) | u32::from(byte));
                if bytes.first() == Some(&0) || length < 0x80 {
                    return error(field, "length not in its shortest form (not DER)");
                }
                usize::try_from(length).unwrap_or(usize::MAX)
            }
            _ => return error(field, "length too large"),
        };
        let header = input.len() - after_length.len();
        let (Some(value), Some(encoded)) = (
            after_length.get(..length),
            header.checked_add(length).and_then(|end| input.get(..end)),
        ) else {
            return error(field, "truncated value");
        };
        self.rest = after_length.get(length..).unwrap_or_default();
        Ok(Tlv {
            tag,
            value,
            encoded,
        })
    }

    /// The next element, which must have `tag`.
    fn tlv(&mut self, tag: u8, field: &'static str) -> Result<Tlv<'a>, Error> {
        match self.next_tag() {
            Some(next) if next != tag => error(field, "unexpected tag"),
            _ => self.any(field),
        }
    }

    /// The value of the next element, which must have `tag`.
    fn value(&mut self, tag: u8, field: &'static str) -> Result<&'a [u8], Error> {
        self.tlv(tag, field).map(|tlv| tlv.value)
    }

    /// The value of the next element if it has `tag` (an OPTIONAL field).
    fn optional(&mut self, tag: u8, field: &'static str) -> Result<Option<&'a [u8]>, Error> {
        if self.next_tag() == Some(tag) {
            self.value(tag, field).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Nothing may follow the last field.
    fn finish(&self, field: &'static str) -> Result<(), Error> {
        if self.is_empty() {
            Ok(())
        } else {
            error(field, "unexpected data after the last field")
        }
    }
}

/// Reads `bytes` as exactly one element with `tag`; its value.
fn only<'a>(bytes: &'a [u8], tag: u8, field: &'static str) -> Result<&'a [u8], Error> {
    let mut reader = Reader::new(bytes);
    let value = reader.value(tag, field)?;
    reader.finish(field)?;
    Ok(value)
}

/// A certificate whose structure has been checked, and the parts the filter
/// reads, borrowed from the DER.
#[derive(Debug, Clone, Copy)]
pub struct Certificate<'a> {
    spki: &'a [u8],
    /// The contents of the `extensions` SEQUENCE OF (empty when absent).
    extensions: &'a [u8],
}

impl<'a> Certificate<'a> {
    /// Checks that `der` is exactly one DER certificate (nothing after it).
    pub fn parse(der: &'a [u8]) -> Result<Certificate<'a>, Error> {
        let mut certificate = Reader::new(only(der, SEQUENCE, "Certificate")?);
        let mut tbs = Reader::new(certificate.value(SEQUENCE, "tbsCertificate")?);
        algorithm_identifier(certificate.value(SEQUENCE, "signatureAlgorithm")?)?;
        bit_string(
            certificate.value(BIT_STRING, "signatureValue")?,
            "signatureValue",
        )?;
        certificate.finish("Certificate")?;

        if let Some(version) = tbs.optional(context(0, true), "version")? {
            // v1, v2 or v3; v1 spelled out (a DEFAULT) is tolerated.
            if !matches!(only(version, INTEGER, "version")?, [0..=2]) {
                return error("version", "not v1, v2 or v3");
            }
        }
        serial_number(tbs.value(INTEGER, "serialNumber")?)?;
        algorithm_identifier(tbs.value(SEQUENCE, "signature")?)?;
        name(tbs.value(SEQUENCE, "issuer")?, "issuer")?;
        let mut validity = Reader::new(tbs.value(SEQUENCE, "validity")?);
        time(&mut validity, "notBefore")?;
        time(&mut validity, "notAfter")?;
        validity.finish("validity")?;
        name(tbs.value(SEQUENCE, "subject")?, "subject")?;
        let spki = tbs.tlv(SEQUENCE, "subjectPublicKeyInfo")?;
        let mut key = Reader::new(spki.value);
        algorithm_identifier(key.value(SEQUENCE, "subjectPublicKeyInfo.algorithm")?)?;
        bit_string(
            key.value(BIT_STRING, "subjectPublicKey")?,
            "subjectPublicKey",
        )?;
        key.finish("subjectPublicKeyInfo")?;
        for (number, field) in [(1, "issuerUniqueID"), (2, "subjectUniqueID")] {
            if let Some(unique_id) = tbs.optional(context(number, false), field)? {
                bit_string(unique_id, field)?;
            }
        }
        let extensions = match tbs.optional(context(3, true), "extensions")? {
            Some(explicit) => only(explicit, SEQUENCE, "extensions")?,
            None => &[],
        };
        let mut reader = Reader::new(extensions);
        while !reader.is_empty() {
            extension(reader.value(SEQUENCE, "Extension")?)?;
        }
        tbs.finish("tbsCertificate")?;
        Ok(Certificate {
            spki: spki.encoded,
            extensions,
        })
    }

    /// The DER SubjectPublicKeyInfo, tag and length included: what an SPKI
    /// thumbprint hashes.
    pub fn subject_public_key_info(&self) -> &'a [u8] {
        self.spki
    }

    /// The subjectAltName entries (none without the extension). More than
    /// one subjectAltName extension is an error (RFC 5280 §4.2).
    pub fn subject_alt_names(&self) -> Result<Vec<GeneralName<'a>>, Error> {
        let mut found = None;
        let mut extensions = Reader::new(self.extensions);
        while !extensions.is_empty() {
            let (id, value) = extension(extensions.value(SEQUENCE, "Extension")?)?;
            if id == SUBJECT_ALT_NAME {
                if found.is_some() {
                    return error("subjectAltName", "more than one subjectAltName extension");
                }
                found = Some(value);
            }
        }
        let Some(value) = found else {
            return Ok(Vec::new());
        };
        let mut names = Reader::new(only(value, SEQUENCE, "subjectAltName")?);
        let mut result = Vec::new();
        while !names.is_empty() {
            result.push(general_name(names.any("GeneralName")?)?);
        }
        Ok(result)
    }
}

/// A subjectAltName entry; only the kinds the filter compares are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneralName<'a> {
    /// `dNSName`.
    Dns(&'a str),
    /// `uniformResourceIdentifier`.
    Uri(&'a str),
    /// `iPAddress`: 4 or 16 octets for an address; other lengths as they are.
    Ip(&'a [u8]),
    /// Any other well-formed kind (email, directory name, other name, …).
    Other,
}

/// ```text
/// GeneralName ::= CHOICE {
///     otherName [0] SEQUENCE { OID, [0] EXPLICIT ANY }, rfc822Name [1] IA5String,
///     dNSName [2] IA5String, directoryName [4] EXPLICIT Name,
///     ediPartyName [5] SEQUENCE, uniformResourceIdentifier [6] IA5String,
///     iPAddress [7] OCTET STRING, registeredID [8] OID }
/// ```
/// `x400Address [3]` is not supported (nor was it by x509-cert).
fn general_name(entry: Tlv<'_>) -> Result<GeneralName<'_>, Error> {
    const FIELD: &str = "GeneralName";
    let value = entry.value;
    Ok(match entry.tag {
        tag if tag == context(2, false) => GeneralName::Dns(ia5_string(value)?),
        tag if tag == context(6, false) => GeneralName::Uri(ia5_string(value)?),
        tag if tag == context(7, false) => GeneralName::Ip(value),
        tag if tag == context(1, false) => {
            ia5_string(value)?;
            GeneralName::Other
        }
        tag if tag == context(0, true) => {
            let mut other = Reader::new(value);
            object_identifier(other.value(OID, FIELD)?, FIELD)?;
            let mut explicit = Reader::new(other.value(context(0, true), FIELD)?);
            explicit.any(FIELD)?;
            explicit.finish(FIELD)?;
            other.finish(FIELD)?;
            GeneralName::Other
        }
        tag if tag == context(4, true) => {
            name(only(value, SEQUENCE, FIELD)?, FIELD)?;
            GeneralName::Other
        }
        tag if tag == context(5, true) => {
            // EdiPartyName ::= SEQUENCE { nameAssigner [0] EXPLICIT
            //     DirectoryString OPTIONAL, partyName [1] EXPLICIT DirectoryString }
            let mut party = Reader::new(value);
            if let Some(assigner) = party.optional(context(0, true), FIELD)? {
                directory_string(assigner)?;
            }
            directory_string(party.value(context(1, true), FIELD)?)?;
            party.finish(FIELD)?;
            GeneralName::Other
        }
        tag if tag == context(8, false) => {
            object_identifier(value, FIELD)?;
            GeneralName::Other
        }
        _ => return error(FIELD, "unsupported kind of name"),
    })
}

/// Exactly one `DirectoryString`, in the forms x509-cert took:
/// PrintableString, TeletexString (ASCII only) or UTF8String.
fn directory_string(bytes: &[u8]) -> Result<(), Error> {
    const FIELD: &str = "GeneralName";
    const PRINTABLE_STRING: u8 = 0x13;
    const TELETEX_STRING: u8 = 0x14;
    const UTF8_STRING: u8 = 0x0C;
    let mut reader = Reader::new(bytes);
    let string = reader.any(FIELD)?;
    reader.finish(FIELD)?;
    let valid = match string.tag {
        PRINTABLE_STRING => string
            .value
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&c)),
        TELETEX_STRING => string.value.is_ascii(),
        UTF8_STRING => std::str::from_utf8(string.value).is_ok(),
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        error(FIELD, "not a DirectoryString")
    }
}

/// IA5String: 7-bit ASCII.
fn ia5_string(value: &[u8]) -> Result<&str, Error> {
    match std::str::from_utf8(value) {
        Ok(text) if text.is_ascii() => Ok(text),
        _ => error("GeneralName", "IA5String is not ASCII"),
    }
}

/// `Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE,
/// extnValue OCTET STRING }`; its OID and value.
fn extension(value: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    let mut extension = Reader::new(value);
    let id = extension.value(OID, "extnID")?;
    object_identifier(id, "extnID")?;
    // An explicit FALSE (the DEFAULT, so not DER) is tolerated, as x509-cert did.
    if let Some(critical) = extension.optional(BOOLEAN, "critical")? {
        if !matches!(critical, [0x00] | [0xFF]) {
            return error("critical", "not a DER BOOLEAN");
        }
    }
    let value = extension.value(OCTET_STRING, "extnValue")?;
    extension.finish("Extension")?;
    Ok((id, value))
}

/// `AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }`.
fn algorithm_identifier(value: &[u8]) -> Result<(), Error> {
    const FIELD: &str = "AlgorithmIdentifier";
    let mut algorithm = Reader::new(value);
    object_identifier(algorithm.value(OID, FIELD)?, FIELD)?;
    if !algorithm.is_empty() {
        algorithm.any(FIELD)?;
    }
    algorithm.finish(FIELD)
}

/// `Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }`.
fn name(value: &[u8], field: &'static str) -> Result<(), Error> {
    let mut name = Reader::new(value);
    while !name.is_empty() {
        let mut relative = Reader::new(name.value(SET, field)?);
        while !relative.is_empty() {
            let mut attribute = Reader::new(relative.value(SEQUENCE, field)?);
            object_identifier(attribute.value(OID, field)?, field)?;
            attribute.any(field)?;
            attribute.finish(field)?;
        }
    }
    Ok(())
}

/// `Time ::= CHOICE { UTCTime, GeneralizedTime }` in the only forms DER
/// allows, `YYMMDDHHMMSSZ` and `YYYYMMDDHHMMSSZ`, and a real date and time
/// from 1970 on (as x509-cert required; UTCTime's `YY` below 50 is 20YY).
fn time(reader: &mut Reader<'_>, field: &'static str) -> Result<(), Error> {
    let year_digits = match reader.next_tag() {
        Some(UTC_TIME) => 2,
        Some(GENERALIZED_TIME) => 4,
        _ => return error(field, "not a UTCTime or GeneralizedTime"),
    };
    let time = reader.any(field)?.value;
    let Some((b'Z', digits)) = time.split_last() else {
        return error(field, "not a DER time (digits then Z)");
    };
    if digits.len() != year_digits + 10 || !digits.iter().all(u8::is_ascii_digit) {
        return error(field, "not a DER time (digits then Z)");
    }
    // Two digits at a time: [YY]YY MM DD hh mm ss.
    let number = |at: usize| {
        digits.get(at..at + 2).map_or(0, |pair| {
            pair.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'))
        })
    };
    let year = match year_digits {
        2 if number(0) < 50 => 2000 + number(0),
        2 => 1900 + number(0),
        _ => number(0) * 100 + number(2),
    };
    let at = year_digits;
    let (month, day) = (number(at), number(at + 2));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if year < 1970
        || !(1..=12).contains(&month)
        || !(1..=days).contains(&day)
        || number(at + 4) > 23
        || number(at + 6) > 59
        || number(at + 8) > 59
    {
        return error(field, "not a valid date and time from 1970 on");
    }
    Ok(())
}

/// A non-empty INTEGER in its shortest two's-complement form, at most 20
/// octets (RFC 5280 §4.1.2.2; 21 tolerated, as many readers do).
fn serial_number(value: &[u8]) -> Result<(), Error> {
    const FIELD: &str = "serialNumber";
    match value {
        [] => error(FIELD, "empty INTEGER"),
        [0x00, next, ..] if next & 0x80 == 0 => error(FIELD, "INTEGER not minimal"),
        [0xFF, next, ..] if next & 0x80 != 0 => error(FIELD, "INTEGER not minimal"),
        _ if value.len() > 21 => error(FIELD, "longer than 20 octets"),
        _ => Ok(()),
    }
}

/// An OID's content octets: base-128 arcs, each in its fewest octets (DER,
/// X.690 §8.19.2) and terminated. Like the x509-cert (const-oid) decoder
/// this replaced: 3 to 39 octets, a first octet holding both root arcs
/// (0–2 and 0–39), and no fifth octet in an arc with its top nibble set.
fn object_identifier(value: &[u8], field: &'static str) -> Result<(), Error> {
    let mut arc_octets = 0;
    for &byte in value.iter().skip(1) {
        if arc_octets == 0 && byte == 0x80 {
            return error(field, "OBJECT IDENTIFIER arc not minimal");
        }
        arc_octets += 1;
        if arc_octets > 4 && byte & 0xF0 != 0 {
            return error(field, "OBJECT IDENTIFIER arc too large");
        }
        if byte & 0x80 == 0 {
            arc_octets = 0;
        }
    }
    match value.first() {
        Some(&first) if first < 120 && (3..=39).contains(&value.len()) && arc_octets == 0 => Ok(()),
        _ => error(field, "malformed OBJECT IDENTIFIER"),
    }
}

/// A BIT STRING's content octets: the count of unused bits (0 to 7, and 0
/// when there are no bits), then the bits.
fn bit_string(value: &[u8], field: &'static str) -> Result<(), Error> {
    match value {
        [unused, ..] if *unused > 7 => error(field, "malformed BIT STRING"),
        [0] => Ok(()),
        [_] | [] => error(field, "malformed BIT STRING"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::{Decode as _, Encode as _};
    use rcgen::{CertificateParams, CustomExtension, KeyPair, SanType, SignatureAlgorithm};
    use std::net::IpAddr;

    /// What x509-cert, the decoder this module replaced, made of `der`:
    /// whether it is a certificate, its SPKI, and its SANs as the filter
    /// formatted them (`None` when the SAN extension did not decode).
    #[derive(Debug, PartialEq)]
    struct Reference {
        spki: Vec<u8>,
        sans: Option<Vec<String>>,
    }

    fn reference(der: &[u8]) -> Option<Reference> {
        use x509_cert::ext::pkix::{name::GeneralName as Name, SubjectAltName};
        let certificate = x509_cert::Certificate::from_der(der).ok()?;
        let spki = certificate
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .ok()?;
        let sans = match certificate.tbs_certificate.get::<SubjectAltName>() {
            Err(_) => None,
            Ok(None) => Some(Vec::new()),
            Ok(Some((_, SubjectAltName(names)))) => Some(
                names
                    .iter()
                    .filter_map(|name| match name {
                        Name::DnsName(dns) => Some(dns.to_string()),
                        Name::UniformResourceIdentifier(uri) => Some(uri.to_string()),
                        Name::IpAddress(octets) => format_ip(octets.as_bytes()),
                        _ => None,
                    })
                    .collect(),
            ),
        };
        Some(Reference { spki, sans })
    }

    fn format_ip(octets: &[u8]) -> Option<String> {
        match octets.len() {
            4 => Some(IpAddr::from(<[u8; 4]>::try_from(octets).ok()?).to_string()),
            16 => Some(
                IpAddr::from(<[u8; 16]>::try_from(octets).ok()?)
                    .to_canonical()
                    .to_string(),
            ),
            _ => None,
        }
    }

    /// The same facts from this module (SANs formatted as `trust` does).
    fn walked(der: &[u8]) -> Option<Reference> {
        let certificate = Certificate::parse(der).ok()?;
        let sans = certificate.subject_alt_names().ok().map(|names| {
            names
                .iter()
                .filter_map(|name| match *name {
                    GeneralName::Dns(text) | GeneralName::Uri(text) => Some(text.to_owned()),
                    GeneralName::Ip(octets) => format_ip(octets),
                    GeneralName::Other => None,
                })
                .collect()
        });
        Some(Reference {
            spki: certificate.subject_public_key_info().to_vec(),
            sans,
        })
    }

    fn certificate(
        algorithm: &'static SignatureAlgorithm,
        sans: Vec<SanType>,
        extra: Vec<CustomExtension>,
    ) -> (Vec<u8>, Vec<u8>) {
        let key = KeyPair::generate_for(algorithm).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.custom_extensions = extra;
        let cert = params.self_signed(&key).unwrap();
        (cert.der().to_vec(), key.public_key_der())
    }

    fn san_kinds() -> Vec<SanType> {
        vec![
            SanType::DnsName("edge.example.com".try_into().unwrap()),
            SanType::URI("spiffe://mesh/ns/edge".try_into().unwrap()),
            SanType::IpAddress("10.0.0.7".parse().unwrap()),
            SanType::IpAddress("2001:db8::7".parse().unwrap()),
            SanType::IpAddress("::ffff:192.0.2.1".parse().unwrap()),
            SanType::Rfc822Name("ops@example.com".try_into().unwrap()),
            SanType::OtherName((
                vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3],
                rcgen::OtherNameValue::Utf8String("upn@example.com".to_owned()),
            )),
        ]
    }

    /// Certificates like the ones the filter sees, and odd but valid ones.
    fn certificates() -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        for algorithm in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            all.push(certificate(algorithm, san_kinds(), vec![]).0);
        }
        all.push(certificate(&rcgen::PKCS_ECDSA_P256_SHA256, vec![], vec![]).0);
        let mut critical = CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![0x05, 0x00]);
        critical.set_criticality(true);
        all.push(certificate(&rcgen::PKCS_ECDSA_P256_SHA256, vec![], vec![critical]).0);
        // An empty GeneralNames, spelled as a custom extension.
        let empty = CustomExtension::from_oid_content(&[2, 5, 29, 17], vec![SEQUENCE, 0]);
        all.push(certificate(&rcgen::PKCS_ECDSA_P256_SHA256, vec![], vec![empty]).0);
        all
    }

    /// A DER element with the shortest length encoding.
    fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let length = value.len();
        if length < 0x80 {
            out.push(length as u8);
        } else {
            let bytes: Vec<u8> = length
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(value);
        out
    }

    /// The encoded elements of a constructed value.
    fn elements(value: &[u8]) -> Vec<Vec<u8>> {
        let mut reader = Reader::new(value);
        let mut out = Vec::new();
        while !reader.is_empty() {
            out.push(reader.any("test").unwrap().encoded.to_vec());
        }
        out
    }

    /// `der` with its tbsCertificate's fields edited (signature untouched:
    /// neither reader verifies it).
    fn edit_tbs(der: &[u8], edit: impl FnOnce(&mut Vec<Vec<u8>>)) -> Vec<u8> {
        let outer = elements(only(der, SEQUENCE, "test").unwrap());
        let mut tbs = elements(only(&outer[0], SEQUENCE, "test").unwrap());
        edit(&mut tbs);
        let tbs = tlv(SEQUENCE, &tbs.concat());
        tlv(
            SEQUENCE,
            &[tbs, outer[1].clone(), outer[2].clone()].concat(),
        )
    }

    fn problem(der: &[u8]) -> &'static str {
        Certificate::parse(der).unwrap_err().problem
    }

    #[test]
    fn the_same_tags_as_x509_cert() {
        for tag in 0..=u8::MAX {
            assert_eq!(
                known_tag(tag),
                der::Tag::try_from(tag).is_ok(),
                "{tag:#04x}"
            );
        }
    }

    #[test]
    fn the_same_object_identifiers_as_x509_cert() {
        let octets = [
            0x00, 0x01, 0x2A, 0x55, 0x77, 0x78, 0x7F, 0x80, 0x81, 0x8F, 0x90, 0xFF,
        ];
        let mut oids: Vec<Vec<u8>> = vec![vec![]];
        for _ in 0..4 {
            let longer: Vec<Vec<u8>> = oids
                .iter()
                .flat_map(|oid| octets.map(|octet| [oid.as_slice(), &[octet]].concat()))
                .collect();
            oids.extend(longer);
        }
        // Long arcs (the 32-bit limit), and the 39-octet limit.
        for arc in [
            &[0x8F, 0xFF, 0xFF, 0xFF, 0x7F][..],
            &[0x90, 0x80, 0x80, 0x80, 0x00],
        ] {
            oids.push([&[0x2A][..], arc].concat());
            oids.push([&[0x2A, 0x81][..], arc].concat());
        }
        for length in 37..=41 {
            oids.push([vec![0x2A], vec![0x01; length - 1]].concat());
        }
        let mut checked = 0;
        for oid in &oids {
            let walked = object_identifier(oid, "test");
            if walked.is_err_and(|error| error.problem == "OBJECT IDENTIFIER arc not minimal") {
                continue;
            }
            let expected = der::asn1::ObjectIdentifier::from_bytes(oid).is_ok();
            assert_eq!(walked.is_ok(), expected, "{oid:02x?}");
            checked += 1;
        }
        assert!(checked > 10_000, "{checked}");
    }

    #[test]
    fn real_certificates_agree_with_x509_cert() {
        for der in certificates() {
            let expected = reference(&der).unwrap();
            assert_eq!(walked(&der).unwrap(), expected);
        }
    }

    #[test]
    fn spki_is_the_key_as_encoded_and_sans_as_written() {
        let (der, public_key) = certificate(&rcgen::PKCS_ECDSA_P256_SHA256, san_kinds(), vec![]);
        let certificate = Certificate::parse(&der).unwrap();
        assert_eq!(certificate.subject_public_key_info(), public_key.as_slice());
        assert_eq!(
            certificate.subject_alt_names().unwrap(),
            vec![
                GeneralName::Dns("edge.example.com"),
                GeneralName::Uri("spiffe://mesh/ns/edge"),
                GeneralName::Ip(&[10, 0, 0, 7]),
                GeneralName::Ip(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]),
                GeneralName::Ip(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]),
                GeneralName::Other,
                GeneralName::Other,
            ]
        );
        assert_eq!(
            walked(&der).unwrap().sans.unwrap(),
            [
                "edge.example.com",
                "spiffe://mesh/ns/edge",
                "10.0.0.7",
                "2001:db8::7",
                "192.0.2.1"
            ]
        );
    }

    #[test]
    fn version_1_without_extensions_and_unique_ids() {
        let (der, _) = certificate(&rcgen::PKCS_ECDSA_P256_SHA256, san_kinds(), vec![]);
        // Drop [0] version and [3] extensions: a v1 certificate.
        let v1 = edit_tbs(&der, |tbs| {
            tbs.remove(0);
            tbs.retain(|field| field[0] != 0xA3);
        });
        let walked_v1 = walked(&v1).unwrap();
        assert_eq!(walked_v1, reference(&v1).unwrap());
        assert_eq!(walked_v1.sans, Some(vec![]));
        // Unique identifiers, in their place.
        let ids = edit_tbs(&der, |tbs| {
            let at = tbs.iter().position(|field| field[0] == 0xA3).unwrap();
            tbs.insert(at, tlv(0x82, &[0x00, 0xAB]));
            tbs.insert(at, tlv(0x81, &[0x04, 0xF0]));
        });
        assert_eq!(walked(&ids).unwrap(), reference(&ids).unwrap());
        // After the extensions, out of order, or twice: refused. x509-cert
        // took the last two (its decoder skipped a context-specific field
        // numbered below the one it looked for); DER and RFC 5280 do not.
        for (edit, x509_cert_took_it) in [
            (
                (|tbs| tbs.push(tlv(0x81, &[0x00, 0x01]))) as fn(&mut Vec<Vec<u8>>),
                false,
            ),
            (
                |tbs| {
                    let at = tbs.len() - 1;
                    tbs.insert(at, tlv(0x81, &[0x00, 0x01]));
                    tbs.insert(at, tlv(0x82, &[0x00, 0x01]));
                },
                true,
            ),
            (
                |tbs| {
                    let at = tbs.len() - 1;
                    tbs.insert(at, tlv(0x81, &[0x00, 0x01]));
                    tbs.insert(at, tlv(0x81, &[0x00, 0x01]));
                },
                true,
            ),
        ] {
            let bad = edit_tbs(&der, edit);
            assert_eq!(reference(&bad).is_some(), x509_cert_took_it);
            assert_eq!(
                Certificate::parse(&bad).unwrap_err(),
                Error {
                    field: "tbsCertificate",
                    problem: "unexpected data after the last field"
                }
            );
        }
        // Versions other than v1 to v3.
        let v4 = edit_tbs(&der, |tbs| tbs[0] = tlv(0xA0, &tlv(INTEGER, &[3])));
        assert!(reference(&v4).is_none());
        assert_eq!(problem(&v4), "not v1, v2 or v3");
    }

    #[test]
    fn two_subject_alt_name_extensions_are_refused() {
        let second = CustomExtension::from_oid_content(
            &[2, 5, 29, 17],
            tlv(SEQUENCE, &tlv(0x82, b"other.example.com")),
        );
        let (der, _) = certificate(&rcgen::PKCS_ECDSA_P256_SHA256, san_kinds(), vec![second]);
        // A certificate still (its thumbprints are as before) ...
        let expected = reference(&der).unwrap();
        assert_eq!(expected.sans, None);
        assert_eq!(walked(&der).unwrap(), expected);
        // ... whose SANs are ambiguous.
        assert_eq!(
            Certificate::parse(&der)
                .unwrap()
                .subject_alt_names()
                .unwrap_err()
                .problem,
            "more than one subjectAltName extension"
        );
    }

    #[test]
    fn malformed_subject_alt_names_are_refused() {
        for content in [
            // Not a SEQUENCE, trailing bytes, truncated.
            tlv(0x31, &tlv(0x82, b"a")),
            [tlv(SEQUENCE, &tlv(0x82, b"a")), vec![0]].concat(),
            vec![SEQUENCE, 5, 0x82, 1, b'a'],
            // A non-ASCII dNSName or URI, x400Address, an unknown kind.
            tlv(SEQUENCE, &tlv(0x82, "é.example".as_bytes())),
            tlv(SEQUENCE, &tlv(0x86, &[0xFF])),
            tlv(SEQUENCE, &tlv(0xA3, &[])),
            tlv(SEQUENCE, &tlv(0x89, b"x")),
            // Malformed registeredID and directoryName.
            tlv(SEQUENCE, &tlv(0x88, &[0x2A, 0x86])),
            tlv(SEQUENCE, &tlv(0xA4, &tlv(0x31, &[]))),
        ] {
            let san = CustomExtension::from_oid_content(&[2, 5, 29, 17], content.clone());
            let (der, _) = certificate(&rcgen::PKCS_ECDSA_P256_SHA256, vec![], vec![san]);
            assert_eq!(reference(&der).unwrap().sans, None, "{content:02x?}");
            assert!(
                Certificate::parse(&der)
                    .unwrap()
                    .subject_alt_names()
                    .is_err(),
                "{content:02x?}"
            );
        }
    }

    #[test]
    fn every_truncation_is_refused() {
        for der in certificates() {
            for length in 0..der.len() {
                assert!(Certificate::parse(&der[..length]).is_err(), "{length}");
            }
        }
    }

    #[test]
    fn nothing_may_follow_the_certificate() {
        let der = &certificates()[0];
        for garbage in [&[0u8][..], &[0, 0], &[SEQUENCE, 0], der] {
            let long = [der.as_slice(), garbage].concat();
            assert!(reference(&long).is_none());
            assert_eq!(
                Certificate::parse(&long).unwrap_err(),
                Error {
                    field: "Certificate",
                    problem: "unexpected data after the last field"
                }
            );
        }
    }

    #[test]
    fn lengths_must_be_definite_minimal_and_within_the_input() {
        let der = &certificates()[0];
        let content = only(der, SEQUENCE, "test").unwrap();
        let length = u16::try_from(content.len()).unwrap().to_be_bytes();
        assert_eq!(der[..4], [SEQUENCE, 0x82, length[0], length[1]]);
        for (header, expected) in [
            // Indefinite, with its end-of-contents octets.
            (vec![SEQUENCE, 0x80], "indefinite length (not DER)"),
            // A leading zero byte, and a long form for a short length.
            (
                vec![SEQUENCE, 0x83, 0, length[0], length[1]],
                "length not in its shortest form (not DER)",
            ),
            (
                vec![SEQUENCE, 0x85, 0, 0, 0, length[0], length[1]],
                "length too large",
            ),
            // One more than there is.
            (
                vec![SEQUENCE, 0x82, length[0], length[1] + 1],
                "truncated value",
            ),
        ] {
            let mut bad = [header.as_slice(), content].concat();
            if header[1] == 0x80 {
                bad.extend([0, 0]);
            }
            assert!(reference(&bad).is_none(), "{header:02x?}");
            assert_eq!(problem(&bad), expected, "{header:02x?}");
        }
        // Tag numbers above 30 (never used by X.509).
        assert_eq!(
            Reader::new(&[0x1F, 0x21, 0x01, 0x00]).any("x").unwrap_err(),
            Error {
                field: "x",
                problem: "unknown or multi-byte tag"
            }
        );
        // A short inner field in long form: `[0] { INTEGER 2 }` as 0x81 0x03.
        let long_version = edit_tbs(der, |tbs| {
            assert_eq!(tbs[0], [0xA0, 3, INTEGER, 1, 2]);
            tbs[0] = vec![0xA0, 0x81, 3, INTEGER, 1, 2];
        });
        assert!(reference(&long_version).is_none());
        assert_eq!(
            Certificate::parse(&long_version).unwrap_err(),
            Error {
                field: "version",
                problem: "length not in its shortest form (not DER)"
            }
        );
        // The same certificate, rebuilt with the test encoder, is unchanged.
        assert_eq!(&edit_tbs(der, |_| {}), der);
        assert!(Certificate::parse(&[]).is_err());
        assert!(Certificate::parse(&[SEQUENCE]).is_err());
        assert!(Certificate::parse(&[SEQUENCE, 0x81]).is_err());
        assert!(Certificate::parse(&[SEQUENCE, 0]).is_err());
    }

    #[test]
    fn field_encodings_are_checked() {
        let der = &certificates()[0];
        let serial = |value: &[u8]| edit_tbs(der, |tbs| tbs[1] = tlv(INTEGER, value));
        let validity = |not_before: &[u8]| {
            let tag = if not_before.len() == 13 {
                UTC_TIME
            } else {
                GENERALIZED_TIME
            };
            edit_tbs(der, |tbs| {
                let not_after = tlv(GENERALIZED_TIME, b"20500101000000Z");
                tbs[4] = tlv(SEQUENCE, &[tlv(tag, not_before), not_after].concat());
            })
        };
        for good in [
            &b"700101000000Z"[..],
            b"491231235959Z",
            b"000229000000Z",
            b"19700101000000Z",
            b"99991231235959Z",
            b"24000229120000Z",
        ] {
            let certificate = validity(good);
            assert!(reference(&certificate).is_some());
            assert!(Certificate::parse(&certificate).is_ok());
        }
        let bad_date = "not a valid date and time from 1970 on";
        for (bad, expected) in [
            (validity(b"691231235959Z"), bad_date),
            (validity(b"19691231235959Z"), bad_date),
            (validity(b"250229000000Z"), bad_date),
            (validity(b"21000229000000Z"), bad_date),
            (validity(b"251301000000Z"), bad_date),
            (validity(b"250431000000Z"), bad_date),
            (validity(b"250100000000Z"), bad_date),
            (validity(b"250101240000Z"), bad_date),
            (validity(b"250101006000Z"), bad_date),
            (validity(b"250101000060Z"), bad_date),
            (validity(b"2501010000001"), "not a DER time (digits then Z)"),
            (validity(b"25010100000+Z"), "not a DER time (digits then Z)"),
            (
                validity(b"20250101000000.5Z"),
                "not a DER time (digits then Z)",
            ),
            (serial(&[]), "empty INTEGER"),
            (serial(&[0x00, 0x01]), "INTEGER not minimal"),
            (serial(&[0xFF, 0x80]), "INTEGER not minimal"),
            (serial(&[0x01; 22]), "longer than 20 octets"),
            (
                edit_tbs(der, |tbs| {
                    tbs[4] = tlv(SEQUENCE, &tlv(UTC_TIME, b"250101000000Z"))
                }),
                "not a UTCTime or GeneralizedTime",
            ),
            (
                edit_tbs(der, |tbs| {
                    tbs[4] = tlv(
                        SEQUENCE,
                        &[
                            tlv(UTC_TIME, b"2501010000Z"),
                            tlv(UTC_TIME, b"250101000000Z"),
                        ]
                        .concat(),
                    )
                }),
                "not a DER time (digits then Z)",
            ),
            (
                edit_tbs(der, |tbs| {
                    tbs[2] = tlv(SEQUENCE, &tlv(OID, &[0x2A, 0x80, 0x01]))
                }),
                "OBJECT IDENTIFIER arc not minimal",
            ),
            (
                edit_tbs(der, |tbs| tbs[2] = tlv(SEQUENCE, &tlv(OID, &[]))),
                "malformed OBJECT IDENTIFIER",
            ),
            (
                edit_tbs(der, |tbs| tbs[3] = tlv(SEQUENCE, &tlv(SEQUENCE, &[]))),
                "unexpected tag",
            ),
        ] {
            // The one place the walker is stricter: x509-cert (const-oid)
            // took OID arcs with a redundant leading 0x80, which DER (X.690
            // §8.19.2) and BoringSSL refuse.
            if expected != "OBJECT IDENTIFIER arc not minimal" {
                assert!(reference(&bad).is_none(), "{expected}");
            }
            assert_eq!(problem(&bad), expected);
        }
        // The key's BIT STRING: unused bits above 7.
        let (der, public_key) = certificate(&rcgen::PKCS_ED25519, vec![], vec![]);
        let at = der
            .windows(public_key.len())
            .position(|w| w == public_key)
            .unwrap();
        let mut bad = der.clone();
        let bits = at + public_key.len() - 33; // the unused-bits octet
        assert_eq!(bad[bits - 2..bits + 1], [BIT_STRING, 33, 0]);
        bad[bits] = 8;
        assert!(reference(&bad).is_none());
        assert_eq!(
            Certificate::parse(&bad).unwrap_err(),
            Error {
                field: "subjectPublicKey",
                problem: "malformed BIT STRING"
            }
        );
    }

    /// Mutated certificates: the walker accepts what x509-cert accepted,
    /// with the same SPKI and SANs, and nothing else; except, by design,
    /// a few that only x509-cert took.
    #[test]
    fn mutants_are_judged_as_x509_cert_judged_them() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut random = move |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % bound as u64) as usize
        };
        let (mut accepted, mut stricter) = (0, 0);
        // Where the walker is stricter by design: OID arcs in their fewest
        // octets, and nothing unread in tbsCertificate (x509-cert skipped a
        // context-specific field numbered below the one it expected, so a
        // `[3]` extensions retagged `[0]` vanished, SANs and all).
        let stricter_by_design = |der: &[u8]| {
            let error = Certificate::parse(der).and_then(|c| c.subject_alt_names().map(drop));
            error.is_err_and(|error| {
                error.problem == "OBJECT IDENTIFIER arc not minimal"
                    || error
                        == Error {
                            field: "tbsCertificate",
                            problem: "unexpected data after the last field",
                        }
            })
        };
        for der in certificates() {
            for _ in 0..2000 {
                let mut mutant = der.clone();
                for _ in 0..1 + random(3) {
                    let at = random(mutant.len());
                    match random(4) {
                        0 => mutant[at] ^= 1 << random(8),
                        1 => mutant[at] = random(256) as u8,
                        2 => {
                            mutant.remove(at);
                        }
                        _ => mutant.insert(at, random(256) as u8),
                    }
                }
                let Some(expected) = reference(&mutant) else {
                    // Nor more lenient (never a panic, whatever the input).
                    assert_eq!(walked(&mutant), None, "{mutant:02x?}");
                    continue;
                };
                accepted += 1;
                match walked(&mutant) {
                    Some(walked) if walked == expected => {}
                    Some(walked) if walked.sans.is_none() && stricter_by_design(&mutant) => {
                        assert_eq!(walked.spki, expected.spki);
                        stricter += 1;
                    }
                    None if stricter_by_design(&mutant) => stricter += 1,
                    walked => panic!(
                        "{:?} / {:?}: {walked:?} but x509-cert {expected:?} for {mutant:02x?}",
                        Certificate::parse(&mutant).err(),
                        Certificate::parse(&mutant).map(|c| c.subject_alt_names().err()),
                    ),
                }
            }
        }
        // Single-bit flips in names and times keep many mutants valid.
        assert!(accepted > 100, "{accepted}");
        assert!(stricter < accepted / 10, "{stricter} of {accepted}");
    }
}
