//! The plugin configuration as Envoy loads it: a rejected configuration
//! fails the plugin's start naming the field, an empty one means the
//! defaults, and unreachable rules are logged at start.

use super::{NamedTrial, World};
use crate::support;
use crate::support::bootstrap::{bootstrap, JwtAuthn, Listener};
use crate::support::envoy::validate;
use serde_json::json;

pub fn trials() -> Vec<NamedTrial> {
    vec![
        (
            "config::unreachable_rules_are_logged_at_start",
            unreachable_rules_logged,
        ),
        (
            "config::rejected_configurations_fail_plugin_start_naming_the_field",
            rejected_configs,
        ),
        (
            "config::empty_configuration_means_defaults",
            empty_config_accepted,
        ),
    ]
}

fn single_listener_config(world: &World, plugin_config: &str) -> String {
    let listener = Listener::new("only", JwtAuthn::default(), plugin_config.to_owned());
    bootstrap(
        &world.material,
        &support::wasm_path(),
        world.upstream.port,
        &[listener],
    )
}

fn rejected_configs(world: &World) {
    let cases = [
        (
            r#"{"mode": "enforcing"}"#,
            "mode",
            "unknown variant `enforcing`",
        ),
        (
            r#"{"binding": "sometimes"}"#,
            "binding",
            "unknown variant `sometimes`",
        ),
        (
            r#"{"thumbprint": "sha1"}"#,
            "thumbprint",
            "unknown variant `sha1`",
        ),
        (
            r#"{"claims": {"source": "cookie"}}"#,
            "claims.source",
            "unknown variant `cookie`",
        ),
        (
            r#"{"claims": {"metadata_key": ""}}"#,
            "claims.metadata_key",
            "must be a non-empty",
        ),
        (
            r#"{"problem_type_base": "not a uri"}"#,
            "problem_type_base",
            "absolute URI",
        ),
        (r#"{"strict": true}"#, "strict", "unknown field `strict`"),
        (
            r#"{"claims": {"key": "payload"}}"#,
            "claims.key",
            "unknown field `key`",
        ),
        (
            r#"{"certificate": {"source": "xfcc_cert"}}"#,
            "certificate.trusted_proxy",
            "only believed from a trusted proxy",
        ),
        (
            r#"{"thumbprint": "spki", "certificate": {"source": "xfcc_hash", "trusted_proxy": {"source_cidrs": ["10.0.0.0/8"]}}}"#,
            "certificate.source",
            "cannot give the `spki` thumbprint",
        ),
        (
            r#"{"certificate": {"source": "pem_header", "trusted_proxy": {"source_cidrs": ["10.0.0.0/8"]}}}"#,
            "certificate.header",
            "is required for this source",
        ),
        (
            r#"{"certificate": {"source": "client_cert", "trusted_proxy": {"source_cidrs": ["10.0.0.1/8"]}}}"#,
            "certificate.trusted_proxy.source_cidrs",
            "did you mean `10.0.0.0/8`",
        ),
        (
            r#"{"certificate": {"trusted_proxy": {"source_cidrs": ["10.0.0.0/8"]}}}"#,
            "certificate.source",
            "apply to forwarded sources only",
        ),
        (
            r#"{"rules": [{"match": {"path": {"prefix": "healthz"}}, "skip": true}]}"#,
            "rules[0].match.path.prefix",
            "must start with `/`",
        ),
        (r#"["enforce"]"#, ".", "must be a JSON object"),
        (r#"{"mode": "enforce""#, ".", "EOF"),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    for (index, (plugin_config, field, reason)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("rejected-{index}.yaml"));
        std::fs::write(&path, single_listener_config(world, plugin_config)).expect("write");
        let output = validate(dir.path(), &path);
        let log = String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "{plugin_config} was accepted");
        let line = log
            .lines()
            .find(|l| l.contains(&format!("invalid configuration at `{field}`")))
            .unwrap_or_else(|| panic!("no log line naming `{field}` for {plugin_config}:\n{log}"));
        assert!(
            line.contains("[error]") || line.contains("[critical]"),
            "{line}"
        );
        assert!(line.contains(reason), "{line} lacks {reason}");
    }
}

fn empty_config_accepted(world: &World) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (index, plugin_config) in ["", "{}", "  {}  "].iter().enumerate() {
        let path = dir.path().join(format!("empty-{index}.yaml"));
        std::fs::write(&path, single_listener_config(world, plugin_config)).expect("write");
        let output = validate(dir.path(), &path);
        assert!(
            output.status.success(),
            "{plugin_config:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn unreachable_rules_logged(world: &World) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("unreachable.yaml");
    let plugin_config = json!({"rules": [
        {"name": "api", "match": {"path": {"prefix": "/api"}}, "skip": true},
        {"name": "api-v1", "match": {"path": {"prefix": "/api/v1"}}, "mode": "dry_run"}
    ]});
    std::fs::write(
        &path,
        single_listener_config(world, &plugin_config.to_string()),
    )
    .expect("write");
    let output = validate(dir.path(), &path);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(
        log.lines().any(|l| l.contains("[warning]")
            && l.contains(
                "rule `api-v1` is unreachable: rule `api` matches every request it would"
            )),
        "{log}"
    );
    assert!(log.contains("rule `api`: match path^=/api → skip"), "{log}");
}
