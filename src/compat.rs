//! Which Envoy runs the module, and what an older one cannot give it.
//!
//! cnf-guard supports Envoy 1.36 and later (docs/compatibility.md). Envoy
//! before 1.38 has no `connection.peer_certificate` (the peer's PEM), which
//! two features read:
//!
//! - `thumbprint: spki` on the TLS connection: the SubjectPublicKeyInfo is in
//!   no other property, so it cannot work there; requests bound to a
//!   certificate are denied `mtls-required`, with a detail that says why.
//! - `trusted_proxy.peer_sans`: [`crate::certificate::source`] falls back to
//!   `connection.uri_san_peer_certificate` and
//!   `connection.dns_san_peer_certificate`, which hold only the first URI SAN
//!   and the first DNS SAN of the proxy's certificate (no IP SANs).
//!
//! At plugin start, [`startup_lines`] says so once, naming the feature, the
//! running Envoy and the version it needs. The version is the node's build
//! version (`xds.node.user_agent_build_version.version`, three CEL integers
//! that every Envoy from 1.36 to 1.40 gives a plugin); where it cannot be
//! read, nothing is claimed at start and the denial detail is the signal.

use crate::certificate::config::CertificateConfig;
use crate::certificate::thumbprint::ThumbprintKind;
use crate::host::Host;
use crate::policy::config::Config;

/// The oldest Envoy minor cnf-guard is tested with (`make test-compat`).
pub const OLDEST_SUPPORTED: EnvoyVersion = EnvoyVersion::new(1, 36, 0);

/// The first Envoy with `connection.peer_certificate`.
pub const PEER_CERTIFICATE_SINCE: EnvoyVersion = EnvoyVersion::new(1, 38, 0);

const BUILD_VERSION: [&str; 4] = ["xds", "node", "user_agent_build_version", "version"];

/// An Envoy release, as its node's build version reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EnvoyVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl EnvoyVersion {
    pub const fn new(major: u64, minor: u64, patch: u64) -> EnvoyVersion {
        EnvoyVersion {
            major,
            minor,
            patch,
        }
    }

    /// The running Envoy's version, if the host says. Each number is a CEL
    /// `uint`: eight little-endian bytes.
    pub fn read(host: &impl Host) -> Option<EnvoyVersion> {
        let number = |field: &str| {
            let mut path = BUILD_VERSION.to_vec();
            path.push(field);
            let value = host.property(&path).ok()??;
            Some(u64::from_le_bytes(
                <[u8; 8]>::try_from(value.as_slice()).ok()?,
            ))
        };
        let version = EnvoyVersion::new(
            number("major_number")?,
            number("minor_number")?,
            number("patch")?,
        );
        // A build that reports no version (0.0.0) tells nothing.
        (version.major > 0).then_some(version)
    }

    /// The minor release, for messages: `1.38`.
    pub fn minor_release(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }
}

impl std::fmt::Display for EnvoyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What to log at plugin start about the running Envoy: an info line with
/// its version, then one warning per configured feature it cannot fully
/// serve (naming the rules that use it).
pub fn startup_lines(config: &Config, version: Option<EnvoyVersion>) -> StartupLines {
    let Some(version) = version else {
        return StartupLines {
            info: "Envoy version unknown (xds.node.user_agent_build_version is not readable); \
                   a feature this Envoy lacks shows in its denials' detail"
                .to_owned(),
            warnings: Vec::new(),
        };
    };
    let mut warnings = Vec::new();
    if version < OLDEST_SUPPORTED {
        warnings.push(format!(
            "Envoy {version} is older than the oldest Envoy cnf-guard is tested with ({}); \
             see docs/compatibility.md",
            OLDEST_SUPPORTED.minor_release()
        ));
    }
    if version < PEER_CERTIFICATE_SINCE {
        let uses = Uses::of(config);
        if !uses.spki_on_connection.is_empty() {
            warnings.push(format!(
                "thumbprint `spki` on the TLS connection does not work on Envoy {version}: it \
                 needs connection.peer_certificate, which Envoy has from {}; every request \
                 bound to a certificate there is denied mtls-required (used by {})",
                PEER_CERTIFICATE_SINCE.minor_release(),
                uses.spki_on_connection.join(", ")
            ));
        }
        if !uses.peer_sans.is_empty() {
            warnings.push(format!(
                "certificate.trusted_proxy.peer_sans is limited on Envoy {version}: it has no \
                 connection.peer_certificate (Envoy {} or later), so only the proxy \
                 certificate's first URI SAN and first DNS SAN are compared \
                 (connection.uri_san_peer_certificate, connection.dns_san_peer_certificate); \
                 a later SAN or an IP SAN never matches (used by {})",
                PEER_CERTIFICATE_SINCE.minor_release(),
                uses.peer_sans.join(", ")
            ));
        }
    }
    StartupLines {
        info: format!("Envoy {version}"),
        warnings,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupLines {
    pub info: String,
    pub warnings: Vec<String>,
}

/// Where the configuration uses a feature that reads the peer's PEM: `the
/// top level` and `rule `<name>``.
#[derive(Debug, Default)]
struct Uses {
    spki_on_connection: Vec<String>,
    peer_sans: Vec<String>,
}

impl Uses {
    fn of(config: &Config) -> Uses {
        let mut uses = Uses::default();
        uses.add(
            "the top level".to_owned(),
            config.thumbprint,
            &config.certificate,
        );
        for (index, rule) in config.rules.iter().enumerate() {
            if rule.skip {
                continue;
            }
            let name = match &rule.name {
                Some(name) => format!("rule `{name}`"),
                None => format!("rule `rules[{index}]`"),
            };
            let thumbprint = rule.thumbprint.unwrap_or(config.thumbprint);
            let certificate = rule.certificate.as_ref().unwrap_or(&config.certificate);
            uses.add(name, thumbprint, certificate);
        }
        uses
    }

    fn add(&mut self, place: String, thumbprint: ThumbprintKind, certificate: &CertificateConfig) {
        match certificate.source.forwarded_format() {
            None if thumbprint == ThumbprintKind::Spki => self.spki_on_connection.push(place),
            Some(_) if certificate.trusted_proxy.checks_peer_sans() => self.peer_sans.push(place),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::mock::MockHost;

    fn le(n: u64) -> Vec<u8> {
        n.to_le_bytes().to_vec()
    }

    fn host_reporting(major: u64, minor: u64, patch: u64) -> MockHost {
        let path = |field| {
            let mut path = BUILD_VERSION.to_vec();
            path.push(field);
            path
        };
        MockHost::default()
            .with_property(&path("major_number"), le(major))
            .with_property(&path("minor_number"), le(minor))
            .with_property(&path("patch"), le(patch))
    }

    #[test]
    fn reads_the_node_build_version() {
        assert_eq!(
            EnvoyVersion::read(&host_reporting(1, 36, 4)),
            Some(EnvoyVersion::new(1, 36, 4))
        );
        assert_eq!(
            EnvoyVersion::read(&host_reporting(1, 40, 0)).map(|v| v.to_string()),
            Some("1.40.0".to_owned())
        );
        assert_eq!(EnvoyVersion::read(&MockHost::default()), None);
        assert_eq!(EnvoyVersion::read(&host_reporting(0, 0, 0)), None);
        // Not a CEL uint: unknown, never a guess.
        let mut path = BUILD_VERSION.to_vec();
        path.push("minor_number");
        let host = host_reporting(1, 36, 4).with_property(&path, b"36".to_vec());
        assert_eq!(EnvoyVersion::read(&host), None);
    }

    fn config(json: &str) -> Config {
        Config::parse(json.as_bytes()).unwrap()
    }

    const OLD: Option<EnvoyVersion> = Some(EnvoyVersion::new(1, 36, 4));

    #[test]
    fn the_default_configuration_works_everywhere() {
        let lines = startup_lines(&Config::default(), OLD);
        assert_eq!(lines.info, "Envoy 1.36.4");
        assert!(lines.warnings.is_empty());
    }

    #[test]
    fn spki_on_the_connection_is_named_with_both_versions() {
        let lines = startup_lines(&config(r#"{"thumbprint": "spki"}"#), OLD);
        assert_eq!(lines.warnings.len(), 1, "{lines:?}");
        let line = &lines.warnings[0];
        assert!(
            line.starts_with(
                "thumbprint `spki` on the TLS connection does not work on Envoy 1.36.4"
            ),
            "{line}"
        );
        assert!(line.contains("which Envoy has from 1.38"), "{line}");
        assert!(line.ends_with("(used by the top level)"), "{line}");
        let new = startup_lines(
            &config(r#"{"thumbprint": "spki"}"#),
            Some(EnvoyVersion::new(1, 38, 2)),
        );
        assert!(new.warnings.is_empty());
    }

    #[test]
    fn each_rule_that_uses_a_feature_is_named() {
        let json = r#"{
            "certificate": {"source": "xfcc_cert", "trusted_proxy": {"peer_sans": ["spiffe://edge"]}},
            "rules": [
                {"name": "by-address", "match": {"path": {"prefix": "/a/"}},
                 "certificate": {"source": "xfcc_hash", "trusted_proxy": {"source_cidrs": ["10.0.0.0/8"]}}},
                {"name": "health", "match": {"path": {"prefix": "/healthz"}}, "skip": true},
                {"match": {"path": {"prefix": "/spki/"}}, "thumbprint": "spki", "certificate": {}},
                {"name": "hash", "match": {"path": {"prefix": "/h/"}}, "binding": "optional"}
            ]
        }"#;
        let lines = startup_lines(&config(json), Some(EnvoyVersion::new(1, 37, 0)));
        assert_eq!(lines.warnings.len(), 2, "{lines:?}");
        assert!(
            lines.warnings[0].ends_with("(used by rule `rules[2]`)"),
            "{lines:?}"
        );
        assert!(
            lines.warnings[1]
                .starts_with("certificate.trusted_proxy.peer_sans is limited on Envoy 1.37.0"),
            "{lines:?}"
        );
        assert!(
            lines.warnings[1].ends_with("(used by the top level, rule `hash`)"),
            "{lines:?}"
        );
    }

    #[test]
    fn an_unknown_or_too_old_envoy_is_said_once() {
        let unknown = startup_lines(&config(r#"{"thumbprint": "spki"}"#), None);
        assert!(unknown.info.starts_with("Envoy version unknown"));
        assert!(unknown.warnings.is_empty());
        let old = startup_lines(&Config::default(), Some(EnvoyVersion::new(1, 34, 1)));
        assert_eq!(old.warnings.len(), 1);
        assert!(
            old.warnings[0].contains("older than the oldest Envoy cnf-guard is tested with (1.36)")
        );
    }
}
