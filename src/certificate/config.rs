//! The `certificate` configuration block.

use crate::certificate::forwarded::ForwardedFormat;
use crate::certificate::thumbprint::ThumbprintKind;
use crate::certificate::trust::TrustedProxy;
use crate::policy::fields::{invalid, is_header_name, ConfigError};
use serde::Deserialize;

/// Where the client certificate comes from.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CertificateConfig {
    pub source: CertificateSource,
    /// The forwarded header's name; each forwarded source has a default.
    pub header: Option<String>,
    /// Who may forward a certificate. Required for every forwarded source.
    pub trusted_proxy: TrustedProxy,
    /// Remove the forwarded header before the request goes upstream.
    pub remove_header: bool,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CertificateSource {
    /// The downstream TLS connection's peer certificate, validated by Envoy.
    #[default]
    Connection,
    XfccCert,
    XfccHash,
    ClientCert,
    PemHeader,
    DerHeader,
}

impl CertificateSource {
    pub fn forwarded_format(self) -> Option<ForwardedFormat> {
        match self {
            CertificateSource::Connection => None,
            CertificateSource::XfccCert => Some(ForwardedFormat::XfccCert),
            CertificateSource::XfccHash => Some(ForwardedFormat::XfccHash),
            CertificateSource::ClientCert => Some(ForwardedFormat::ClientCert),
            CertificateSource::PemHeader => Some(ForwardedFormat::PemHeader),
            CertificateSource::DerHeader => Some(ForwardedFormat::DerHeader),
        }
    }

    fn default_header(self) -> Option<&'static str> {
        match self {
            CertificateSource::XfccCert | CertificateSource::XfccHash => {
                Some("x-forwarded-client-cert")
            }
            CertificateSource::ClientCert => Some("client-cert"),
            _ => None,
        }
    }
}

impl CertificateConfig {
    /// The forwarded header to read, lower-cased; `None` for the connection.
    pub fn header_name(&self) -> Option<String> {
        self.source.forwarded_format()?;
        self.header
            .as_deref()
            .or(self.source.default_header())
            .map(str::to_ascii_lowercase)
    }

    /// Checks the block at `field` (`certificate` or `rules[i].certificate`)
    /// together with the thumbprint kind it will be used with.
    pub(crate) fn validate(
        &self,
        field: &str,
        thumbprint: ThumbprintKind,
    ) -> Result<(), ConfigError> {
        let Some(format) = self.source.forwarded_format() else {
            if self.header.is_some() || !self.trusted_proxy.is_empty() || self.remove_header {
                return Err(invalid(
                    &format!("{field}.source"),
                    "`header`, `trusted_proxy` and `remove_header` apply to forwarded sources only; \
                     `connection` reads the TLS connection itself",
                ));
            }
            return Ok(());
        };
        match &self.header {
            Some(name) if !is_header_name(name) => {
                return Err(invalid(
                    &format!("{field}.header"),
                    "must be an HTTP header name (letters, digits and `-`), not a pseudo-header",
                ))
            }
            None if self.source.default_header().is_none() => {
                return Err(invalid(
                    &format!("{field}.header"),
                    "is required for this source: name the header the proxy writes",
                ))
            }
            _ => {}
        }
        if self.trusted_proxy.is_empty() {
            return Err(invalid(
                &format!("{field}.trusted_proxy"),
                "a forwarded certificate is only believed from a trusted proxy: \
                 set `peer_sans`, `peer_subjects` and/or `source_cidrs`",
            ));
        }
        let blank = |values: &[String]| values.iter().any(|v| v.trim().is_empty());
        if blank(&self.trusted_proxy.peer_sans) || blank(&self.trusted_proxy.peer_subjects) {
            return Err(invalid(
                &format!("{field}.trusted_proxy"),
                "peer names must not be empty",
            ));
        }
        if thumbprint == ThumbprintKind::Spki && !format.carries_certificate() {
            return Err(invalid(
                &format!("{field}.source"),
                "`xfcc_hash` carries only the certificate's digest, which cannot give the \
                 `spki` thumbprint; use `xfcc_cert`",
            ));
        }
        Ok(())
    }
}
