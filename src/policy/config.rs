//! Plugin configuration: the JSON a user writes, parsed and validated once at start.
//!
//! Every field is optional; `{}` (or no configuration at all) means all defaults.
//! Unknown fields and bad values are errors that name the field, so a typo can
//! never silently weaken the policy.

use crate::certificate::config::CertificateConfig;
use crate::certificate::thumbprint::ThumbprintKind;
use crate::dpop::settings::DpopConfig;
use crate::policy::fields::{invalid, snake_name, ConfigError};
use crate::policy::json_path::{offset_of, path_at};
use crate::policy::rules::{self, NeededFacts, Policy, RequestFacts, Resolution, Rule};
use crate::policy::settings::{BindingPolicy, Mode};
use crate::token::claims::ClaimsConfig;
use serde::Deserialize;

/// Problem `type` URIs are this prefix followed by the slug. A URN does not
/// pretend to resolve; point `problem_type_base` at published docs instead.
pub const DEFAULT_PROBLEM_TYPE_BASE: &str = "urn:cnf-guard:problem:";

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
        rules::validate(&self.rules, self.thumbprint, &self.certificate)?;
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

impl Config {
    /// The policy where no rule matches.
    fn top_policy(&self) -> Policy<'_> {
        Policy {
            mode: self.mode,
            binding: self.binding,
            thumbprint: self.thumbprint,
            certificate: &self.certificate,
            dpop: self.dpop.policy,
            rule: None,
        }
    }

    /// Whether any request can be checked for DPoP.
    pub fn dpop_enabled(&self) -> bool {
        rules::dpop_enabled(&self.rules, self.dpop.policy)
    }

    /// What the rules match on, so the filter reads nothing else.
    pub fn needed_facts(&self) -> NeededFacts {
        rules::needed_facts(&self.rules)
    }

    /// The settings that apply to one request.
    pub fn resolve(&self, request: &RequestFacts) -> Resolution<'_> {
        rules::resolve(&self.rules, self.top_policy(), request)
    }

    /// Rules that can never match, for the start-up log.
    pub fn warnings(&self) -> Vec<String> {
        rules::warnings(&self.rules)
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

fn is_metadata_key(value: &str) -> bool {
    !value.is_empty() && value.chars().all(|c| c.is_ascii_graphic() && c != '.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::claims::ClaimsSource;

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
             dpop.replay_cache_capacity=1048576 dpop.verifier=auto dpop.replay_store=- dpop.nonce=off \
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
