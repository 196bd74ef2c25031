//! Per-route policy: rules evaluated in order, the first match wins, and a
//! request no rule matches gets the top-level settings.
//!
//! A rule matches on Envoy's route name, the path (query removed) and the
//! method; every condition it sets must hold. It either skips the check or
//! overrides some of `mode`, `binding`, `thumbprint` and `certificate`.

use crate::certificate::config::CertificateConfig;
use crate::certificate::thumbprint::ThumbprintKind;
use crate::dpop::settings::DpopPolicy;
use crate::policy::fields::{invalid, snake_name, ConfigError};
use crate::policy::settings::{BindingPolicy, Mode};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Shown in log lines and warnings; defaults to `rules[<index>]`.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matches: RuleMatch,
    /// No check at all for matching requests (health checks, public routes).
    #[serde(default)]
    pub skip: bool,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub binding: Option<BindingPolicy>,
    #[serde(default)]
    pub thumbprint: Option<ThumbprintKind>,
    /// Replaces the whole top-level `certificate` block.
    #[serde(default)]
    pub certificate: Option<CertificateConfig>,
    /// Overrides `dpop.policy`; the rest of the `dpop` block applies as is.
    #[serde(default)]
    pub dpop: Option<DpopPolicy>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RuleMatch {
    /// Envoy's route name (`xds.route_name`): exactly what Envoy routed by.
    pub route: Option<String>,
    pub path: Option<PathMatch>,
    /// Upper-case methods; any of them matches.
    pub methods: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

/// The request facts rules match on; each is fetched only if some rule uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    pub route: Option<String>,
    /// `:path` without query and fragment.
    pub path: Option<String>,
    pub method: Option<String>,
}

/// Which facts any rule needs, so the filter reads nothing else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NeededFacts {
    pub route: bool,
    pub path: bool,
    pub method: bool,
}

/// The settings that apply to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy<'a> {
    pub mode: Mode,
    pub binding: BindingPolicy,
    pub thumbprint: ThumbprintKind,
    pub certificate: &'a CertificateConfig,
    pub dpop: DpopPolicy,
    /// The rule that set it, for log lines; `None` for the top level.
    pub rule: Option<&'a Rule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution<'a> {
    Skip(&'a Rule),
    Check(Policy<'a>),
}

/// Whether any request can be checked for DPoP, given the top-level policy.
pub fn dpop_enabled(rules: &[Rule], top: DpopPolicy) -> bool {
    top != DpopPolicy::Off
        || rules
            .iter()
            .any(|rule| rule.dpop.is_some_and(|policy| policy != DpopPolicy::Off))
}

pub fn needed_facts(rules: &[Rule]) -> NeededFacts {
    let mut needed = NeededFacts::default();
    for rule in rules {
        needed.route |= rule.matches.route.is_some();
        needed.path |= rule.matches.path.is_some();
        needed.method |= !rule.matches.methods.is_empty();
    }
    needed
}

/// The first matching rule's overrides over `top`, or `top` itself.
pub fn resolve<'a>(rules: &'a [Rule], top: Policy<'a>, request: &RequestFacts) -> Resolution<'a> {
    let Some(rule) = rules.iter().find(|rule| rule.matches.accepts(request)) else {
        return Resolution::Check(top);
    };
    if rule.skip {
        return Resolution::Skip(rule);
    }
    Resolution::Check(Policy {
        mode: rule.mode.unwrap_or(top.mode),
        binding: rule.binding.unwrap_or(top.binding),
        thumbprint: rule.thumbprint.unwrap_or(top.thumbprint),
        certificate: rule.certificate.as_ref().unwrap_or(top.certificate),
        dpop: rule.dpop.unwrap_or(top.dpop),
        rule: Some(rule),
    })
}

/// Rules that can never match because an earlier one matches all they do.
pub fn warnings(rules: &[Rule]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (later_index, later) in rules.iter().enumerate() {
        let shadow = rules
            .iter()
            .take(later_index)
            .enumerate()
            .find(|(_, earlier)| earlier.matches.covers(&later.matches));
        if let Some((earlier_index, earlier)) = shadow {
            warnings.push(format!(
                "{} is unreachable: {} matches every request it would",
                label(later, later_index),
                label(earlier, earlier_index)
            ));
        }
    }
    warnings
}

impl RuleMatch {
    fn accepts(&self, request: &RequestFacts) -> bool {
        let route_ok = match &self.route {
            None => true,
            Some(route) => request.route.as_deref() == Some(route.as_str()),
        };
        let path_ok = match (&self.path, request.path.as_deref()) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(PathMatch::Exact(exact)), Some(path)) => path == exact,
            (Some(PathMatch::Prefix(prefix)), Some(path)) => path.starts_with(prefix.as_str()),
        };
        let method_ok = self.methods.is_empty()
            || request
                .method
                .as_deref()
                .is_some_and(|method| self.methods.iter().any(|m| m == method));
        route_ok && path_ok && method_ok
    }

    /// True if every request `other` matches, `self` matches too.
    fn covers(&self, other: &RuleMatch) -> bool {
        let route = self.route.is_none() || self.route == other.route;
        let path = match (&self.path, &other.path) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(PathMatch::Exact(a)), Some(PathMatch::Exact(b))) => a == b,
            (Some(PathMatch::Exact(_)), Some(PathMatch::Prefix(_))) => false,
            (Some(PathMatch::Prefix(a)), Some(PathMatch::Exact(b) | PathMatch::Prefix(b))) => {
                b.starts_with(a.as_str())
            }
        };
        let methods = self.methods.is_empty()
            || (!other.methods.is_empty()
                && other.methods.iter().all(|m| self.methods.contains(m)));
        route && path && methods
    }
}

/// The rule's name, or its place in the list.
pub fn label(rule: &Rule, index: usize) -> String {
    match &rule.name {
        Some(name) => format!("rule `{name}`"),
        None => format!("rules[{index}]"),
    }
}

impl Policy<'_> {
    /// `rule=<name>` for log lines, `-` for the top level.
    pub fn rule_name(&self) -> &str {
        self.rule
            .and_then(|rule| rule.name.as_deref())
            .unwrap_or("-")
    }
}

impl std::fmt::Display for Rule {
    /// `match route=admin path^=/admin methods=GET,POST → binding=required`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "match")?;
        if let Some(route) = &self.matches.route {
            write!(f, " route={route}")?;
        }
        match &self.matches.path {
            Some(PathMatch::Exact(path)) => write!(f, " path={path}")?,
            Some(PathMatch::Prefix(prefix)) => write!(f, " path^={prefix}")?,
            None => {}
        }
        if !self.matches.methods.is_empty() {
            write!(f, " methods={}", self.matches.methods.join(","))?;
        }
        if self.matches == RuleMatch::default() {
            write!(f, " everything")?;
        }
        if self.skip {
            return write!(f, " → skip");
        }
        write!(f, " →")?;
        let overrides = [
            self.mode.map(|v| format!("mode={}", snake_name(&v))),
            self.binding.map(|v| format!("binding={}", snake_name(&v))),
            self.thumbprint
                .map(|v| format!("thumbprint={}", snake_name(&v))),
            self.certificate
                .as_ref()
                .map(|c| format!("certificate.source={}", snake_name(&c.source))),
            self.dpop.map(|v| format!("dpop={}", snake_name(&v))),
        ];
        let mut any = false;
        for text in overrides.iter().flatten() {
            write!(f, " {text}")?;
            any = true;
        }
        if !any {
            write!(f, " top-level settings")?;
        }
        Ok(())
    }
}

/// Checks every rule against the top level's `thumbprint` and `certificate`,
/// which a rule may override.
pub(crate) fn validate(
    rules: &[Rule],
    thumbprint: ThumbprintKind,
    certificate: &CertificateConfig,
) -> Result<(), ConfigError> {
    // A list, not a HashSet: rule lists are short, and hashing costs 9 KB of wasm.
    let mut names: Vec<&str> = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        let field = |rest: &str| format!("rules[{index}]{rest}");
        if let Some(name) = &rule.name {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_graphic()) {
                return Err(invalid(
                    &field(".name"),
                    "must be non-empty printable ASCII without spaces (it appears in log lines)",
                ));
            }
            if names.contains(&name.as_str()) {
                return Err(invalid(&field(".name"), "another rule has this name"));
            }
            names.push(name);
        }
        if let Some(route) = &rule.matches.route {
            if route.is_empty() {
                return Err(invalid(&field(".match.route"), "must not be empty"));
            }
        }
        match &rule.matches.path {
            Some(PathMatch::Exact(path)) => check_path(&field(".match.path.exact"), path)?,
            Some(PathMatch::Prefix(path)) => check_path(&field(".match.path.prefix"), path)?,
            None => {}
        }
        for method in &rule.matches.methods {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(invalid(
                    &field(".match.methods"),
                    &format!("`{method}` is not an upper-case HTTP method such as GET"),
                ));
            }
        }
        let overrides = rule.mode.is_some()
            || rule.binding.is_some()
            || rule.thumbprint.is_some()
            || rule.certificate.is_some()
            || rule.dpop.is_some();
        if rule.skip && overrides {
            return Err(invalid(
                &field(".skip"),
                "a skipped request is not checked, so `mode`, `binding`, `thumbprint`, \
                 `certificate` and `dpop` would have no effect; remove them or `skip`",
            ));
        }
        let thumbprint = rule.thumbprint.unwrap_or(thumbprint);
        match &rule.certificate {
            Some(own) => own.validate(&field(".certificate"), thumbprint)?,
            None => certificate
                .validate(&field(".thumbprint"), thumbprint)
                .map_err(|error| ConfigError {
                    field: field(".thumbprint"),
                    reason: format!("with the top-level certificate source: {}", error.reason),
                })?,
        }
    }
    Ok(())
}

fn check_path(field: &str, path: &str) -> Result<(), ConfigError> {
    if !path.starts_with('/') {
        return Err(invalid(field, "must start with `/`"));
    }
    if path.contains(['?', '#']) {
        return Err(invalid(
            field,
            "is matched against the path without its query, so `?` or `#` never matches",
        ));
    }
    if !path.chars().all(|c| c.is_ascii_graphic()) {
        return Err(invalid(
            field,
            "must be printable ASCII without spaces (percent-encode the rest)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::config::Config;

    fn config(json: &str) -> Config {
        Config::parse(json.as_bytes()).unwrap()
    }

    fn request(route: Option<&str>, path: &str, method: &str) -> RequestFacts {
        RequestFacts {
            route: route.map(str::to_owned),
            path: Some(path.to_owned()),
            method: Some(method.to_owned()),
        }
    }

    const RULES: &str = r#"{"binding": "optional", "rules": [
        {"name": "health", "match": {"path": {"prefix": "/healthz"}}, "skip": true},
        {"name": "admin", "match": {"route": "admin"}, "binding": "required"},
        {"name": "rollout", "match": {"path": {"exact": "/v2/orders"}, "methods": ["POST"]}, "mode": "dry_run"}
    ]}"#;

    #[test]
    fn first_match_wins() {
        let config = config(RULES);
        assert!(matches!(
            config.resolve(&request(Some("admin"), "/healthz/live", "GET")),
            Resolution::Skip(rule) if rule.name.as_deref() == Some("health")
        ));
        let Resolution::Check(admin) = config.resolve(&request(Some("admin"), "/admin", "GET"))
        else {
            panic!("admin is checked")
        };
        assert_eq!(admin.binding, BindingPolicy::Required);
        assert_eq!(admin.mode, Mode::Enforce);
        assert_eq!(admin.rule_name(), "admin");
        let Resolution::Check(rollout) = config.resolve(&request(None, "/v2/orders", "POST"))
        else {
            panic!("rollout is checked")
        };
        assert_eq!(
            (rollout.mode, rollout.binding),
            (Mode::DryRun, BindingPolicy::Optional)
        );
        let Resolution::Check(top) = config.resolve(&request(None, "/v2/orders", "GET")) else {
            panic!("top level is checked")
        };
        assert_eq!(top.rule, None);
        assert_eq!(top.rule_name(), "-");
        assert_eq!(top.binding, BindingPolicy::Optional);
    }

    #[test]
    fn unknown_facts_never_match() {
        let config = config(RULES);
        let Resolution::Check(policy) = config.resolve(&RequestFacts::default()) else {
            panic!("checked")
        };
        assert_eq!(policy.rule, None);
        assert_eq!(
            config.needed_facts(),
            NeededFacts {
                route: true,
                path: true,
                method: true
            }
        );
        assert_eq!(Config::default().needed_facts(), NeededFacts::default());
    }

    #[test]
    fn prefix_is_textual_and_exact_is_exact() {
        let config = config(
            r#"{"rules": [{"match": {"path": {"prefix": "/api/"}}, "skip": true},
                                          {"match": {"path": {"exact": "/x"}}, "skip": true}]}"#,
        );
        let skipped = |path: &str| {
            matches!(
                config.resolve(&request(None, path, "GET")),
                Resolution::Skip(_)
            )
        };
        assert!(skipped("/api/v1"));
        assert!(!skipped("/api"));
        assert!(!skipped("/API/v1"));
        assert!(skipped("/x"));
        assert!(!skipped("/x/"));
    }

    #[test]
    fn rule_certificate_replaces_the_top_level_block() {
        let config = config(
            r#"{"rules": [{"match": {"route": "edge"}, "certificate": {"source": "xfcc_cert",
                 "trusted_proxy": {"source_cidrs": ["10.0.0.0/8"]}}}]}"#,
        );
        let Resolution::Check(edge) = config.resolve(&request(Some("edge"), "/", "GET")) else {
            panic!("checked")
        };
        assert_eq!(
            edge.certificate.header_name().as_deref(),
            Some("x-forwarded-client-cert")
        );
        let Resolution::Check(top) = config.resolve(&request(Some("other"), "/", "GET")) else {
            panic!("checked")
        };
        assert_eq!(top.certificate.header_name(), None);
    }

    #[test]
    fn unreachable_rules_are_flagged() {
        let config = config(
            r#"{"rules": [
                {"name": "api", "match": {"path": {"prefix": "/api"}}, "skip": true},
                {"name": "api-v1", "match": {"path": {"prefix": "/api/v1"}, "methods": ["GET"]}, "mode": "dry_run"},
                {"match": {"methods": ["GET", "POST"]}, "binding": "optional"},
                {"match": {"methods": ["POST"], "route": "r"}},
                {"match": {"route": "r"}},
                {"match": {}, "binding": "optional"},
                {"match": {"path": {"exact": "/x"}}}
            ]}"#,
        );
        assert_eq!(
            config.warnings(),
            vec![
                "rule `api-v1` is unreachable: rule `api` matches every request it would",
                "rules[3] is unreachable: rules[2] matches every request it would",
                "rules[6] is unreachable: rules[5] matches every request it would",
            ]
        );
        assert!(self::config(RULES).warnings().is_empty());
    }

    #[test]
    fn rules_read_well_in_the_log() {
        let config = config(RULES);
        let lines: Vec<String> = config.rules.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "match path^=/healthz → skip",
                "match route=admin → binding=required",
                "match path=/v2/orders methods=POST → mode=dry_run",
            ]
        );
        let catch_all = self::config(r#"{"rules": [{"match": {}}]}"#);
        assert_eq!(
            catch_all.rules[0].to_string(),
            "match everything → top-level settings"
        );
    }

    fn error_of(json: &str) -> ConfigError {
        Config::parse(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn bad_rules_name_the_field() {
        let cases = [
            (
                r#"{"rules": [{"skip": true}]}"#,
                "rules[0]",
                "missing field `match`",
            ),
            (
                r#"{"rules": [{"match": {"paths": "/"}}]}"#,
                "rules[0].match.paths",
                "unknown field",
            ),
            (
                r#"{"rules": [{"match": {"path": {"regex": "/"}}}]}"#,
                "rules[0].match.path.regex",
                "unknown variant `regex`",
            ),
            (
                r#"{"rules": [{"match": {"path": {"exact": "/", "prefix": "/"}}}]}"#,
                "rules[0].match.path.exact",
                "",
            ),
            (
                r#"{"rules": [{"match": {"path": {"prefix": "api"}}}]}"#,
                "rules[0].match.path.prefix",
                "start with `/`",
            ),
            (
                r#"{"rules": [{"match": {"path": {"exact": "/a?b"}}}]}"#,
                "rules[0].match.path.exact",
                "query",
            ),
            (
                r#"{"rules": [{"match": {"path": {"exact": "/a b"}}}]}"#,
                "rules[0].match.path.exact",
                "printable",
            ),
            (
                r#"{"rules": [{"match": {"methods": ["get"]}}]}"#,
                "rules[0].match.methods",
                "`get`",
            ),
            (
                r#"{"rules": [{"match": {"route": ""}}]}"#,
                "rules[0].match.route",
                "empty",
            ),
            (
                r#"{"rules": [{"match": {}}, {"match": {}, "skip": true, "mode": "dry_run"}]}"#,
                "rules[1].skip",
                "no effect",
            ),
            (
                r#"{"rules": [{"name": "a", "match": {}}, {"name": "a", "match": {}}]}"#,
                "rules[1].name",
                "another rule",
            ),
            (
                r#"{"rules": [{"match": {}, "mode": "audit"}]}"#,
                "rules[0].mode",
                "unknown variant",
            ),
            (
                r#"{"rules": [{"match": {}, "certificate": {"source": "xfcc_hash"}}]}"#,
                "rules[0].certificate.trusted_proxy",
                "trusted proxy",
            ),
            (
                r#"{"certificate": {"source": "xfcc_hash", "trusted_proxy": {"source_cidrs": ["10.0.0.0/8"]}},
                    "rules": [{"match": {}, "thumbprint": "spki"}]}"#,
                "rules[0].thumbprint",
                "xfcc_hash",
            ),
        ];
        for (json, field, reason) in cases {
            let error = error_of(json);
            assert_eq!(error.field, field, "{json}: {error}");
            assert!(error.reason.contains(reason), "{json}: {error}");
        }
    }
}
