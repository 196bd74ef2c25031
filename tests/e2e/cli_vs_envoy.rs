//! The `cnf-guard` CLI against the real filter: `cnf-guard inspect` on the
//! emulated Envoy reaches the real Envoy's answer for the same request.

use super::assertions::send;
use super::{listeners, NamedTrial, World};

pub fn trials() -> Vec<NamedTrial> {
    vec![("cli::inspect_verdict_equals_envoys", cli_agrees_with_envoy)]
}

/// `cnf-guard inspect` must reach Envoy's verdict, slug, detail and challenge
/// for every token jwt_authn lets through, on several plugin configurations.
fn cli_agrees_with_envoy(world: &World) {
    let tokens = &world.tokens;
    let mut cases: Vec<(&str, &String)> = vec![
        ("bound_1", &tokens.bound_1),
        ("bound_2", &tokens.bound_2),
        ("unbound", &tokens.unbound),
        ("unbound_odd_claims", &tokens.unbound_odd_claims),
        ("spki_1", &tokens.spki_1),
    ];
    cases.extend(tokens.malformed.iter().map(|(name, token)| (*name, token)));
    let configs = tempfile::tempdir().expect("tempdir");
    for listener in listeners()
        .into_iter()
        .filter(|l| ["default", "optional", "spki", "header_source"].contains(&l.name))
    {
        let config = configs.path().join(format!("{}.json", listener.name));
        std::fs::write(&config, &listener.plugin_config).expect("write config");
        for (name, token) in &cases {
            for certificate in [Some(1u8), None] {
                let envoy = send(world, listener.name, certificate, Some(token));
                let mut args = vec![
                    "--json".to_owned(),
                    "inspect".to_owned(),
                    "--token".to_owned(),
                    (*token).clone(),
                    "--config".to_owned(),
                    config.display().to_string(),
                ];
                if let Some(n) = certificate {
                    args.push("--cert".to_owned());
                    args.push(
                        world
                            .material
                            .join(format!("client-{n}.pem"))
                            .display()
                            .to_string(),
                    );
                }
                let output = std::process::Command::new(env!("CARGO_BIN_EXE_cnf-guard"))
                    .args(&args)
                    .output()
                    .expect("run cnf-guard");
                let cli: serde_json::Value =
                    serde_json::from_slice(&output.stdout).expect("cnf-guard --json");
                let case = format!("{} / {name} / certificate {certificate:?}", listener.name);
                if envoy.status == 200 {
                    assert_eq!(cli["verdict"], "allow", "{case}: {cli}");
                    assert_eq!(output.status.code(), Some(0), "{case}");
                    continue;
                }
                assert_eq!(envoy.status, 401, "{case}: {envoy:?}");
                let reply = &cli["reply"];
                assert_eq!(cli["verdict"], "deny", "{case}: {cli}");
                assert_eq!(output.status.code(), Some(1), "{case}");
                assert_eq!(
                    reply["headers"]["www-authenticate"].as_str(),
                    envoy.header("www-authenticate"),
                    "{case}"
                );
                let document = envoy.json();
                for member in ["type", "title", "status", "detail", "instance"] {
                    assert_eq!(reply["body"][member], document[member], "{case}: {member}");
                }
            }
        }
    }
}
