//! Plugin configuration: the JSON a user writes, parsed and validated once at start.
//!
//! Every field is optional; `{}` (or no configuration at all) means all defaults.
//! Unknown fields and bad values are errors that name the field, so a typo can
//! never silently weaken the policy.

use crate::dpop::settings::DpopConfig;
use crate::forwarded::ForwardedFormat;
use crate::json_path::{offset_of, path_at};
use crate::rules::Rule;
use crate::token_places::TokenLocations;
use crate::trust::TrustedProxy;
use serde::Deserialize;

/// Problem `type` URIs are this prefix followed by the slug. A URN does not
/// pretend to resolve; point `problem_type_base` at published docs instead.
pub const DEFAULT_PROBLEM_TYPE_BASE: &str = "urn:cnf-guard:problem:";
/// The key Istio's RequestAuthentication uses for `payload_in_metadata`.
pub const DEFAULT_METADATA_KEY: &str = "payload";

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub mode: Mode,
    pub binding: BindingPolicy,
    pub thumbprint: ThumbprintKind,
    pub certificate: CertificateConfig,
    pub claims: ClaimsConfig,
    /// DPoP (RFC 9449) proof checking for `cnf.jkt`-bound tokens.
    pub dpop: DpopConfig,
    pub problem_type_base: String,
    /// Inserted into every metric name (`cnf_guard.<stat_prefix>.<outcome>`) so
    /// several cnf-guard instances in one Envoy keep separate counters.
    pub stat_prefix: String,
    /// Per-route overrides, first match wins; unmatched requests use the above.
    pub rules: Vec<Rule>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::default(),
            binding: BindingPolicy::default(),
            thumbprint: ThumbprintKind::default(),
            certificate: CertificateConfig::default(),
            claims: ClaimsConfig::default(),
            dpop: DpopConfig::default(),
            problem_type_base: DEFAULT_PROBLEM_TYPE_BASE.to_owned(),
            stat_prefix: String::new(),
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Denials are sent as local replies.
    #[default]
    Enforce,
    /// Denials are logged and counted, and the request goes on.
    DryRun,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BindingPolicy {
    /// A token without `cnf` is denied.
    #[default]
    Required,
    /// A token without `cnf` passes; a bound token must still match.
    Optional,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ThumbprintKind {
    /// RFC 8705 §3.1: SHA-256 of the whole DER certificate.
    #[default]
    Certificate,
    /// SHA-256 of the DER SubjectPublicKeyInfo (not RFC 8705; opt-in).
    Spki,
}

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

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimsConfig {
    pub source: ClaimsSource,
    /// jwt_authn's `payload_in_metadata` key.
    pub metadata_key: String,
    /// jwt_authn's `failed_status_in_metadata` key, if the deployment sets it.
    pub failed_status_key: Option<String>,
    /// Every place jwt_authn takes a token from; two tokens are refused.
    pub token_locations: TokenLocations,
}

impl Default for ClaimsConfig {
    fn default() -> Self {
        ClaimsConfig {
            source: ClaimsSource::default(),
            metadata_key: DEFAULT_METADATA_KEY.to_owned(),
            failed_status_key: None,
            token_locations: TokenLocations::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClaimsSource {
    /// The verified payload jwt_authn wrote to dynamic metadata.
    #[default]
    JwtAuthn,
    /// The payload segment of the `Authorization: Bearer` token that jwt_authn
    /// verified and forwarded (`forward: true`).
    AuthorizationHeader,
}

/// A configuration error, phrased for the log line that fails plugin start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the offending field (`.` for the document itself).
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid configuration at `{}`: {}",
            self.field, self.reason
        )
    }
}

impl Config {
    /// Parses and validates the plugin configuration. Empty input means defaults.
    pub fn parse(raw: &[u8]) -> Result<Config, ConfigError> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(Config::default());
        }
        // serde would also accept a struct written as a JSON array.
        if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(invalid(".", "the configuration must be a JSON object"));
        }
        let mut config: Config = serde_json::from_slice(raw).map_err(|error| {
            // At the end of the input there is no field; elsewhere the
            // error is in the field at its position.
            let field = if !error.is_eof() {
                path_at(raw, offset_of(raw, error.line(), error.column()))
            } else {
                ".".to_owned()
            };
            ConfigError {
                field,
                reason: strip_position(&error.to_string()),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        if !is_uri_prefix(&self.problem_type_base) {
            return Err(invalid(
                "problem_type_base",
                "must be an absolute URI prefix such as `https://docs.example.com/problems/` \
                 (a scheme, then no whitespace, quotes or control characters)",
            ));
        }
        if !is_metadata_key(&self.claims.metadata_key) {
            return Err(invalid(
                "claims.metadata_key",
                "must be a non-empty jwt_authn `payload_in_metadata` key without `.`, whitespace or control characters",
            ));
        }
        if let Some(key) = &self.claims.failed_status_key {
            if !is_metadata_key(key) {
                return Err(invalid(
                    "claims.failed_status_key",
                    "must be a non-empty jwt_authn `failed_status_in_metadata` key without `.`, whitespace or control characters",
                ));
            }
            if *key == self.claims.metadata_key {
                return Err(invalid(
                    "claims.failed_status_key",
                    "must differ from `claims.metadata_key`",
                ));
            }
        }
        self.claims
            .token_locations
            .validate("claims.token_locations")?;
        self.certificate.validate("certificate", self.thumbprint)?;
        self.dpop.validate()?;
        crate::rules::validate(self)?;
        if !self
            .stat_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(invalid(
                "stat_prefix",
                "may only contain ASCII letters, digits and `_`",
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for Config {
    /// One line for the start-up log, in the configuration's own terms.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mode={} binding={} thumbprint={} certificate.source={} certificate.header={} \
             certificate.remove_header={} claims.source={} claims.metadata_key={} \
             claims.failed_status_key={} claims.token_locations.headers={} \
             claims.token_locations.query_parameters={} claims.token_locations.cookies={} \
             {} problem_type_base={} stat_prefix={} rules={}",
            snake_name(&self.mode),
            snake_name(&self.binding),
            snake_name(&self.thumbprint),
            snake_name(&self.certificate.source),
            self.certificate.header_name().as_deref().unwrap_or("-"),
            self.certificate.remove_header,
            snake_name(&self.claims.source),
            self.claims.metadata_key,
            self.claims.failed_status_key.as_deref().unwrap_or("-"),
            list(&self.claims.token_locations.headers),
            list(&self.claims.token_locations.query_parameters),
            list(&self.claims.token_locations.cookies),
            self.dpop,
            self.problem_type_base,
            if self.stat_prefix.is_empty() {
                "-"
            } else {
                &self.stat_prefix
            },
            self.rules.len(),
        )
    }
}

/// A list for the start-up line: comma-separated, `-` when empty.
fn list(values: &[String]) -> String {
    if values.is_empty() {
        return "-".to_owned();
    }
    values.join(",")
}

/// A unit variant as the configuration spells it (`DryRun` → `dry_run`).
pub(crate) fn snake_name(value: &dyn std::fmt::Debug) -> String {
    let debug = format!("{value:?}");
    let mut snake = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    snake
}

pub(crate) fn invalid(field: &str, reason: &str) -> ConfigError {
    ConfigError {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

/// serde_json appends "at line L column C"; the field path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message.get(..at).unwrap_or(message).to_owned(),
        None => message.to_owned(),
    }
}

fn is_uri_prefix(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once(':') else {
        return false;
    };
    let mut scheme_chars = scheme.chars();
    let scheme_ok = scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    scheme_ok
        && !rest.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '<' | '>'))
}

pub(crate) fn is_header_name(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_metadata_key(value: &str) -> bool {
    !value.is_empty() && value.chars().all(|c| c.is_ascii_graphic() && c != '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_braces_mean_defaults() {
        assert_eq!(Config::parse(b"").unwrap(), Config::default());
        assert_eq!(Config::parse(b"  \n").unwrap(), Config::default());
        assert_eq!(Config::parse(b"{}").unwrap(), Config::default());
        let defaults = Config::default();
        assert_eq!(defaults.mode, Mode::Enforce);
        assert_eq!(defaults.binding, BindingPolicy::Required);
        assert_eq!(defaults.thumbprint, ThumbprintKind::Certificate);
        assert_eq!(defaults.claims.source, ClaimsSource::JwtAuthn);
        assert_eq!(defaults.claims.metadata_key, "payload");
        assert_eq!(defaults.problem_type_base, DEFAULT_PROBLEM_TYPE_BASE);
    }

    #[test]
    fn every_field_parses() {
        let config = Config::parse(
            br#"{"mode":"dry_run","binding":"optional","thumbprint":"spki",
                "claims":{"source":"authorization_header","metadata_key":"jwt","failed_status_key":"jwt_failure"},
                "problem_type_base":"https://docs.example.com/problems/","stat_prefix":"edge"}"#,
        )
        .unwrap();
        assert_eq!(config.mode, Mode::DryRun);
        assert_eq!(config.binding, BindingPolicy::Optional);
        assert_eq!(config.thumbprint, ThumbprintKind::Spki);
        assert_eq!(config.claims.source, ClaimsSource::AuthorizationHeader);
        assert_eq!(config.claims.metadata_key, "jwt");
        assert_eq!(
            config.claims.failed_status_key.as_deref(),
            Some("jwt_failure")
        );
        assert_eq!(
            config.problem_type_base,
            "https://docs.example.com/problems/"
        );
        assert_eq!(config.stat_prefix, "edge");
    }

    fn error_of(raw: &str) -> ConfigError {
        Config::parse(raw.as_bytes()).unwrap_err()
    }

    #[test]
    fn unknown_fields_are_named() {
        let error = error_of(r#"{"mod":"enforce"}"#);
        assert_eq!(error.field, "mod");
        assert!(error.reason.contains("unknown field `mod`"), "{error}");
        let error = error_of(r#"{"claims":{"sauce":"jwt_authn"}}"#);
        assert_eq!(error.field, "claims.sauce");
        assert!(error.reason.contains("unknown field `sauce`"), "{error}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let error = error_of(r#"{"mode":"enforcing"}"#);
        assert_eq!(error.field, "mode");
        assert!(
            error.reason.contains("unknown variant `enforcing`"),
            "{error}"
        );
        assert_eq!(error_of(r#"{"binding":true}"#).field, "binding");
        assert_eq!(error_of(r#"{"thumbprint":"x5t"}"#).field, "thumbprint");
        assert_eq!(
            error_of(r#"{"claims":{"source":"query"}}"#).field,
            "claims.source"
        );
        assert_eq!(
            error_of(r#"{"claims":{"metadata_key":""}}"#).field,
            "claims.metadata_key"
        );
        assert_eq!(
            error_of(r#"{"claims":{"metadata_key":"a.b"}}"#).field,
            "claims.metadata_key"
        );
        assert_eq!(
            error_of(r#"{"claims":{"failed_status_key":"payload"}}"#).field,
            "claims.failed_status_key"
        );
        assert_eq!(
            error_of(r#"{"problem_type_base":"problems/"}"#).field,
            "problem_type_base"
        );
        assert_eq!(
            error_of(r#"{"problem_type_base":"https://x/ y"}"#).field,
            "problem_type_base"
        );
        assert_eq!(error_of(r#"{"stat_prefix":"a.b"}"#).field, "stat_prefix");
    }

    #[test]
    fn bad_dpop_settings_name_the_field() {
        for (json, field, reason) in [
            (
                r#"{"dpop":{"policy":"on"}}"#,
                "dpop.policy",
                "unknown variant",
            ),
            (
                r#"{"dpop":{"algorithms":["ES256","none"]}}"#,
                "dpop.algorithms",
                "`none` is not accepted",
            ),
            (
                r#"{"dpop":{"algorithms":["HS256"]}}"#,
                "dpop.algorithms",
                "HMAC prove nothing",
            ),
            (
                r#"{"dpop":{"algorithms":[]}}"#,
                "dpop.algorithms",
                "at least one",
            ),
            (
                r#"{"dpop":{"algorithms":["ES256","ES256"]}}"#,
                "dpop.algorithms",
                "twice",
            ),
            (
                r#"{"dpop":{"external_origin":"https://a.example/v1"}}"#,
                "dpop.external_origin",
                "no path",
            ),
            (
                r#"{"dpop":{"max_age_seconds":0}}"#,
                "dpop.max_age_seconds",
                "1 to 3600",
            ),
            (
                r#"{"dpop":{"replay_cache_capacity":1}}"#,
                "dpop.replay_cache_capacity",
                "16 to",
            ),
            (
                r#"{"dpop":{"nonce":{"secret":"c2hvcnQ="}}}"#,
                "dpop.nonce.secret",
                "32 random bytes",
            ),
            (
                r#"{"dpop":{"nonse":{}}}"#,
                "dpop.nonse",
                "unknown field `nonse`",
            ),
            (
                r#"{"rules":[{"match":{},"skip":true,"dpop":"required"}]}"#,
                "rules[0].skip",
                "`dpop`",
            ),
        ] {
            let error = error_of(json);
            assert_eq!(error.field, field, "{json}: {error}");
            assert!(error.reason.contains(reason), "{json}: {error}");
        }
        let config =
            Config::parse(br#"{"rules":[{"match":{"route":"pay"},"dpop":"required"}]}"#).unwrap();
        assert!(config.dpop_enabled());
        assert!(!Config::default().dpop_enabled());
    }

    #[test]
    fn summary_uses_config_names() {
        let config =
            Config::parse(br#"{"mode":"dry_run","claims":{"source":"authorization_header"}}"#)
                .unwrap();
        assert_eq!(
            config.to_string(),
            "mode=dry_run binding=required thumbprint=certificate certificate.source=connection \
             certificate.header=- certificate.remove_header=false \
             claims.source=authorization_header claims.metadata_key=payload claims.failed_status_key=- \
             claims.token_locations.headers=authorization \
             claims.token_locations.query_parameters=access_token \
             claims.token_locations.cookies=- dpop.policy=off dpop.algorithms=ES256,RS256,PS256,EdDSA dpop.external_origin=- \
             dpop.max_age_seconds=60 dpop.max_clock_skew_seconds=10 \
             dpop.replay_cache_capacity=1048576 dpop.nonce=off \
             problem_type_base=urn:cnf-guard:problem: stat_prefix=- rules=0"
        );
        let config = Config::parse(
            br#"{"dpop":{"policy":"optional","nonce":{"enabled":true,"secret":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="}}}"#,
        )
        .unwrap();
        let summary = config.to_string();
        assert!(summary.contains(
            "dpop.nonce=on dpop.nonce.lifetime_seconds=300 dpop.nonce.key=configured_secret"
        ));
        assert!(!summary.contains("c2VjcmV0"), "the secret is never logged");
    }

    #[test]
    fn malformed_json_is_rejected() {
        assert_eq!(error_of("{").field, ".");
        assert_eq!(error_of(r#"{"mode": "enforce""#).field, ".");
        assert!(Config::parse(b"[]").is_err());
        assert!(Config::parse(b"{} {}").is_err());
        assert!(Config::parse(b"null").is_err());
    }
}
