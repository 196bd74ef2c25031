//! Which hop may forward a client certificate. Trust is explicit: a forwarded
//! header is believed only when the request came from a configured proxy,
//! named by its own (Envoy-validated) certificate, its address, or both.

use crate::certificate::thumbprint::{certificate_der_from_pem, CertificateError};
use serde::Deserialize;
use std::net::IpAddr;

/// `certificate.trusted_proxy` in the configuration. Every condition that is
/// set must hold; `peer_sans` and `peer_subjects` together name one peer.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TrustedProxy {
    /// DNS, URI or IP subject alternative names of the proxy's certificate.
    pub peer_sans: Vec<String>,
    /// Subjects of the proxy's certificate as Envoy prints them (`CN=edge,O=Example`).
    pub peer_subjects: Vec<String>,
    /// Networks the proxy connects from (`source.address`).
    pub source_cidrs: Vec<Cidr>,
}

impl TrustedProxy {
    pub fn is_empty(&self) -> bool {
        self.peer_sans.is_empty() && self.peer_subjects.is_empty() && self.source_cidrs.is_empty()
    }

    pub fn checks_peer_sans(&self) -> bool {
        !self.peer_sans.is_empty()
    }

    pub fn checks_peer_subject(&self) -> bool {
        !self.peer_subjects.is_empty()
    }

    pub fn checks_source(&self) -> bool {
        !self.source_cidrs.is_empty()
    }

    /// Whether the hop is trusted, from the facts the checks need; a fact that
    /// is `None` is unknown, which never counts as a match.
    pub fn admits(&self, hop: &Hop) -> Result<(), Distrust> {
        if self.checks_peer_sans() || self.checks_peer_subject() {
            let by_san = hop.peer_sans.iter().flatten().any(|san| {
                self.peer_sans
                    .iter()
                    .any(|trusted| san_matches(trusted, san))
            });
            let by_subject = hop
                .peer_subject
                .as_deref()
                .is_some_and(|subject| self.peer_subjects.iter().any(|s| s == subject));
            if !(by_san || by_subject) {
                return Err(Distrust::Peer);
            }
        }
        if self.checks_source() {
            let Some(address) = hop.source else {
                return Err(Distrust::SourceUnknown);
            };
            if !self.source_cidrs.iter().any(|cidr| cidr.contains(address)) {
                return Err(Distrust::Source(address));
            }
        }
        Ok(())
    }
}

/// What is known about the hop the request came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hop {
    pub peer_sans: Option<Vec<String>>,
    pub peer_subject: Option<String>,
    pub source: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Distrust {
    Peer,
    SourceUnknown,
    Source(IpAddr),
}

impl std::fmt::Display for Distrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Distrust::Peer => write!(
                f,
                "the connection's peer certificate is not a trusted proxy's"
            ),
            Distrust::SourceUnknown => write!(f, "the source address is unknown"),
            Distrust::Source(address) => write!(f, "source {address} is not in a trusted network"),
        }
    }
}

fn san_matches(trusted: &str, presented: &str) -> bool {
    // DNS names are case-insensitive; URIs and addresses are compared as written.
    trusted == presented || (!trusted.contains(':') && trusted.eq_ignore_ascii_case(presented))
}

/// Envoy's `source.address` (`ip:port`, `[v6]:port`) as an address; an
/// IPv4-mapped IPv6 address counts as IPv4.
pub fn source_ip(address: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(address).ok()?;
    let ip = match text.parse::<std::net::SocketAddr>() {
        Ok(socket) => socket.ip(),
        Err(_) => text.parse::<IpAddr>().ok()?,
    };
    Some(ip.to_canonical())
}

/// The DNS, URI and IP subject alternative names of the first certificate
/// in plain or URL-encoded PEM.
pub fn peer_sans_from_pem(pem: &[u8]) -> Result<Vec<String>, CertificateError> {
    use crate::certificate::x509::{Certificate, GeneralName};
    let der = certificate_der_from_pem(pem)?;
    let names = Certificate::parse(&der)
        .and_then(|certificate| certificate.subject_alt_names())
        .map_err(|error| CertificateError::Der(error.to_string()))?;
    Ok(names
        .iter()
        .filter_map(|name| match *name {
            GeneralName::Dns(dns) => Some(dns.to_owned()),
            GeneralName::Uri(uri) => Some(uri.to_owned()),
            GeneralName::Ip(octets) => match octets.len() {
                4 => <[u8; 4]>::try_from(octets)
                    .ok()
                    .map(|b| IpAddr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(octets)
                    .ok()
                    .map(|b| IpAddr::from(b).to_canonical().to_string()),
                _ => None,
            },
            GeneralName::Other => None,
        })
        .collect())
}

/// An IP network such as `10.0.0.0/8`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        address.is_ipv4() == self.network.is_ipv4() && masked(address, self.prefix) == self.network
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;

    fn try_from(text: String) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.as_str(), None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("`{text}` is not an IP network such as 10.0.0.0/8 or fd00::/8"))?;
        let network = network.to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {max}"))?,
        };
        if masked(network, prefix) != network {
            return Err(format!(
                "`{text}` has host bits set; did you mean `{}/{prefix}`?",
                masked(network, prefix)
            ));
        }
        Ok(Cidr { network, prefix })
    }
}

fn masked(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from(std::net::Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from(std::net::Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        Cidr::try_from(text.to_owned()).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cidrs_contain_their_addresses() {
        assert!(cidr("10.0.0.0/8").contains(ip("10.255.0.1")));
        assert!(!cidr("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(cidr("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!cidr("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(cidr("0.0.0.0/0").contains(ip("192.0.2.1")));
        assert!(!cidr("0.0.0.0/0").contains(ip("::1")));
        assert!(cidr("fd00::/8").contains(ip("fd12::1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        // IPv4-mapped IPv6 is the IPv4 address it maps.
        assert!(cidr("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(cidr("::ffff:10.0.0.0/8").contains(ip("10.1.2.3")));
    }

    #[test]
    fn bad_cidrs_say_why() {
        for (text, needle) in [
            ("10.0.0.1/8", "did you mean `10.0.0.0/8`"),
            ("10.0.0.0/33", "0 to 32"),
            ("fd00::/129", "0 to 128"),
            ("10.0.0.0/", "0 to 32"),
            ("localhost", "not an IP network"),
            ("10.0.0.0/8 ", "0 to 32"),
            ("", "not an IP network"),
        ] {
            let error = Cidr::try_from(text.to_owned()).unwrap_err();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn source_addresses_as_envoy_writes_them() {
        assert_eq!(source_ip(b"127.0.0.1:4242"), Some(ip("127.0.0.1")));
        assert_eq!(source_ip(b"[::1]:4242"), Some(ip("::1")));
        assert_eq!(source_ip(b"[::ffff:10.0.0.1]:1"), Some(ip("10.0.0.1")));
        assert_eq!(source_ip(b"10.0.0.1"), Some(ip("10.0.0.1")));
        assert_eq!(source_ip(b"pipe:/tmp/x"), None);
        assert_eq!(source_ip(&[0xff]), None);
    }

    fn proxy(sans: &[&str], subjects: &[&str], cidrs: &[&str]) -> TrustedProxy {
        TrustedProxy {
            peer_sans: sans.iter().map(|s| s.to_string()).collect(),
            peer_subjects: subjects.iter().map(|s| s.to_string()).collect(),
            source_cidrs: cidrs.iter().map(|c| cidr(c)).collect(),
        }
    }

    fn hop(sans: &[&str], subject: Option<&str>, source: Option<&str>) -> Hop {
        Hop {
            peer_sans: Some(sans.iter().map(|s| s.to_string()).collect()),
            peer_subject: subject.map(str::to_owned),
            source: source.map(ip),
        }
    }

    #[test]
    fn every_configured_condition_must_hold() {
        let edge = proxy(&["spiffe://mesh/edge"], &[], &["10.0.0.0/8"]);
        assert_eq!(
            edge.admits(&hop(&["spiffe://mesh/edge"], None, Some("10.1.1.1"))),
            Ok(())
        );
        assert_eq!(
            edge.admits(&hop(&["spiffe://mesh/edge"], None, Some("192.0.2.1"))),
            Err(Distrust::Source(ip("192.0.2.1")))
        );
        assert_eq!(
            edge.admits(&hop(&["spiffe://mesh/client"], None, Some("10.1.1.1"))),
            Err(Distrust::Peer)
        );
        assert_eq!(
            edge.admits(&hop(&["spiffe://mesh/edge"], None, None)),
            Err(Distrust::SourceUnknown)
        );
        assert_eq!(edge.admits(&Hop::default()), Err(Distrust::Peer));
    }

    #[test]
    fn sans_or_subjects_name_the_peer() {
        let edge = proxy(&["edge.example.com"], &["CN=edge,O=Example"], &[]);
        assert_eq!(edge.admits(&hop(&["EDGE.example.com"], None, None)), Ok(()));
        assert_eq!(
            edge.admits(&hop(&[], Some("CN=edge,O=Example"), None)),
            Ok(())
        );
        assert_eq!(
            edge.admits(&hop(&["other.example.com"], Some("CN=edge"), None)),
            Err(Distrust::Peer)
        );
        // URIs are compared exactly.
        let mesh = proxy(&["spiffe://mesh/edge"], &[], &[]);
        assert_eq!(
            mesh.admits(&hop(&["SPIFFE://mesh/edge"], None, None)),
            Err(Distrust::Peer)
        );
        let by_address = proxy(&[], &[], &["127.0.0.0/8"]);
        assert_eq!(
            by_address.admits(&hop(&[], None, Some("127.0.0.1"))),
            Ok(())
        );
    }

    #[test]
    fn sans_of_a_real_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["edge.example.com".to_owned()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://mesh/edge".try_into().unwrap(),
        ));
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(ip("10.0.0.7")));
        let pem = params.self_signed(&key).unwrap().pem();
        assert_eq!(
            peer_sans_from_pem(pem.as_bytes()).unwrap(),
            vec!["edge.example.com", "spiffe://mesh/edge", "10.0.0.7"]
        );
        assert!(peer_sans_from_pem(b"junk").is_err());
    }
}
