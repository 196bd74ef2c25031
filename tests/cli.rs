//! The `cnf-guard` CLI end to end: the built binary on certificates and tokens
//! made here, checked against independently computed thumbprints and the
//! documented exit codes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{json, Value};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use support::dpop::{fresh_jti, now, TestKey};
use support::material::{make_pki, write, write_pki, Issuer, Pki};

struct Fixture {
    dir: tempfile::TempDir,
    pki: Pki,
    issuer: Issuer,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let pki = make_pki();
        write_pki(&pki, dir.path());
        Fixture {
            dir,
            pki,
            issuer: Issuer::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cert(&self, n: u8) -> String {
        self.path(&format!("client-{n}.pem")).display().to_string()
    }

    fn file(&self, name: &str, contents: &str) -> String {
        write(self.dir.path(), name, contents);
        self.path(name).display().to_string()
    }

    fn bound_to(&self, n: usize) -> String {
        self.issuer
            .bound_token("client", &self.pki.clients[n - 1].x5t())
    }

    fn with_claims(&self, claims: Value) -> String {
        self.issuer.token(
            "client",
            claims,
            jwt_simple::prelude::Duration::from_hours(1),
        )
    }
}

fn cli(args: &[&str]) -> Output {
    cli_with_stdin(args, None)
}

fn cli_with_stdin(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cnf-guard"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cnf-guard");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exit code")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs with `--json` and returns the exit code and the parsed document.
fn cli_json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let output = cli(&all);
    let document = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}{}",
            stdout(&output),
            stderr(&output)
        )
    });
    (code(&output), document)
}

fn inspect(token: &str, cert: Option<&str>, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["inspect", "--token", token];
    if let Some(cert) = cert {
        args.extend(["--cert", cert]);
    }
    args.extend_from_slice(extra);
    cli_json(&args)
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn thumbprint_is_the_rfc_8705_value_and_envoys_hex_digest() {
    let fixture = Fixture::new();
    let client = &fixture.pki.clients[0];
    let (exit, document) = cli_json(&["thumbprint", &fixture.cert(1)]);
    assert_eq!(exit, 0);
    assert_eq!(document["x5t#S256"], client.x5t());
    assert_eq!(document["sha256_hex"], hex_sha256(&client.cert_der));
    assert_eq!(document["subject"], "CN=client-1");

    let (exit, document) = cli_json(&["thumbprint", &fixture.cert(1), "--spki"]);
    assert_eq!(exit, 0);
    assert_eq!(document["thumbprint"], "spki");
    assert_eq!(document["x5t#S256"], client.spki_x5t());

    let text = cli(&["thumbprint", &fixture.cert(2)]);
    assert_eq!(code(&text), 0);
    assert!(stdout(&text).contains(&fixture.pki.clients[1].x5t()));
}

#[test]
fn thumbprint_reads_a_chain_and_stdin() {
    let fixture = Fixture::new();
    let [client_1, client_2] = &fixture.pki.clients;
    let chain = format!("{}{}", client_1.cert_pem, client_2.cert_pem);
    let output = cli_with_stdin(&["--json", "thumbprint", "-"], Some(&chain));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(document["x5t#S256"], client_1.x5t());
}

#[test]
fn bound_token_with_its_certificate_is_allowed() {
    let fixture = Fixture::new();
    let (exit, document) = inspect(&fixture.bound_to(1), Some(&fixture.cert(1)), &[]);
    assert_eq!(exit, 0, "{document}");
    assert_eq!(document["verdict"], "allow");
    assert_eq!(document["outcome"], "allowed");
    assert_eq!(document["slug"], Value::Null);
    assert_eq!(document["reply"], Value::Null);
    assert_eq!(document["token"]["signature_verified"], false);
    assert_eq!(
        document["cnf"],
        json!({"x5t#S256": fixture.pki.clients[0].x5t()})
    );
    assert_eq!(
        document["certificate"]["x5t#S256"],
        fixture.pki.clients[0].x5t()
    );
}

#[test]
fn dpop_proofs_are_checked_as_envoy_checks_them() {
    let fixture = Fixture::new();
    let key = TestKey::es256();
    let token = fixture.with_claims(json!({"cnf": {"jkt": key.jkt().to_jkt()}}));
    let config = fixture.file("dpop.json", r#"{"dpop": {"policy": "optional"}}"#);
    let run = |proof_method: &str| {
        let proof = key.proof(
            proof_method,
            "https://localhost/orders/7",
            &token,
            now(),
            &fresh_jti(),
        );
        let authorization = format!("authorization: DPoP {token}");
        let dpop = format!("dpop: {proof}");
        inspect(
            &token,
            None,
            &[
                "--config",
                &config,
                "--path",
                "/orders/7",
                "-H",
                &authorization,
                "-H",
                &dpop,
            ],
        )
    };
    let (exit, document) = run("GET");
    assert_eq!(
        (exit, &document["verdict"]),
        (0, &json!("allow")),
        "{document}"
    );
    let (exit, document) = run("POST");
    assert_eq!(exit, 1, "{document}");
    assert_eq!(document["slug"], "dpop-proof-invalid");
    assert!(document["reply"]["headers"]["www-authenticate"]
        .as_str()
        .unwrap()
        .starts_with("DPoP error=\"invalid_dpop_proof\""));
    // Without the proof headers the token goes as Bearer: a downgrade.
    let (exit, document) = inspect(&token, None, &["--config", &config]);
    assert_eq!(
        (exit, &document["slug"]),
        (1, &json!("dpop-required")),
        "{document}"
    );
}

#[test]
fn another_certificate_is_a_mismatch_with_the_filters_reply() {
    let fixture = Fixture::new();
    let (exit, document) = inspect(
        &fixture.bound_to(2),
        Some(&fixture.cert(1)),
        &["--path", "/orders/7?q=1", "--request-id", "req-42"],
    );
    assert_eq!(exit, 1, "{document}");
    assert_eq!(document["verdict"], "deny");
    assert_eq!(document["slug"], "mtls-binding-mismatch");
    let reply = &document["reply"];
    assert_eq!(reply["status"], 401);
    assert_eq!(reply["headers"]["content-type"], "application/problem+json");
    assert!(reply["headers"]["www-authenticate"]
        .as_str()
        .unwrap()
        .starts_with("Bearer error=\"invalid_token\""));
    assert_eq!(
        reply["body"]["type"],
        "urn:cnf-guard:problem:mtls-binding-mismatch"
    );
    assert_eq!(reply["body"]["instance"], "/orders/7");
    assert_eq!(reply["body"]["request_id"], "req-42");
    let log = document["log"][0]["message"].as_str().unwrap();
    assert!(log.contains(&format!(
        "token_x5t={} certificate_x5t={}",
        fixture.pki.clients[1].x5t(),
        fixture.pki.clients[0].x5t()
    )));
}

#[test]
fn every_slug_the_default_policy_reaches() {
    let fixture = Fixture::new();
    let x5t = fixture.pki.clients[0].x5t();
    let cert = fixture.cert(1);
    let cases = [
        (fixture.bound_to(1), None, "mtls-required"),
        (
            fixture.with_claims(json!({"scope": "orders"})),
            Some(cert.as_str()),
            "token-unbound",
        ),
        (
            fixture.with_claims(
                json!({"cnf": {"x5t#S256": hex_sha256(&fixture.pki.clients[0].cert_der)}}),
            ),
            Some(cert.as_str()),
            "token-invalid",
        ),
        (
            fixture.with_claims(json!({"cnf": {"x5t#S256": format!("{x5t}=")}})),
            Some(cert.as_str()),
            "token-invalid",
        ),
        (
            fixture.with_claims(json!({"cnf": {"jkt": "abc"}})),
            Some(cert.as_str()),
            "token-invalid",
        ),
        (
            fixture.with_claims(json!({"cnf": null})),
            Some(cert.as_str()),
            "token-invalid",
        ),
        (
            fixture.with_claims(json!({"cnf": [x5t]})),
            Some(cert.as_str()),
            "token-invalid",
        ),
    ];
    for (token, cert, slug) in cases {
        let (exit, document) = inspect(&token, cert, &[]);
        assert_eq!(
            (exit, document["slug"].as_str()),
            (1, Some(slug)),
            "{document}"
        );
        assert_eq!(
            document["reply"]["body"]["type"],
            format!("urn:cnf-guard:problem:{slug}")
        );
    }
}

#[test]
fn hex_thumbprint_detail_says_so() {
    let fixture = Fixture::new();
    let hex = hex_sha256(&fixture.pki.clients[0].cert_der);
    let token = fixture.with_claims(json!({"cnf": {"x5t#S256": hex}}));
    let output = cli(&["inspect", "--token", &token, "--cert", &fixture.cert(1)]);
    assert_eq!(code(&output), 1);
    let text = stdout(&output);
    assert!(text.contains("signature NOT verified"), "{text}");
    assert!(text.contains("verdict: DENY: token-invalid"), "{text}");
    assert!(text.contains("hexadecimal digest"), "{text}");
}

#[test]
fn configuration_changes_the_verdict() {
    let fixture = Fixture::new();
    let unbound = fixture.with_claims(json!({"scope": "orders"}));
    let optional = fixture.file("optional.json", r#"{"binding": "optional"}"#);
    let (exit, document) = inspect(&unbound, None, &["--config", &optional]);
    assert_eq!(
        (exit, document["outcome"].as_str()),
        (0, Some("allowed_unbound"))
    );

    let dry_run = fixture.file("dry-run.json", r#"{"mode": "dry_run"}"#);
    let (exit, document) = inspect(&unbound, None, &["--config", &dry_run]);
    assert_eq!(
        exit, 1,
        "a would-be denial still fails the check: {document}"
    );
    assert_eq!(document["verdict"], "allow");
    assert_eq!(document["outcome"], "dry_run");
    assert_eq!(document["slug"], "token-unbound");
    assert_eq!(document["reply"], Value::Null);

    let spki = fixture.file("spki.json", r#"{"thumbprint": "spki"}"#);
    let spki_token = fixture
        .issuer
        .bound_token("client", &fixture.pki.clients[0].spki_x5t());
    let (exit, _) = inspect(&spki_token, Some(&fixture.cert(1)), &["--config", &spki]);
    assert_eq!(exit, 0);
    let (exit, _) = inspect(&spki_token, Some(&fixture.cert(1)), &[]);
    assert_eq!(exit, 1);

    let base = fixture.file(
        "base.json",
        r#"{"problem_type_base": "https://docs.example.com/problems/"}"#,
    );
    let (_, document) = inspect(&unbound, None, &["--config", &base]);
    assert_eq!(
        document["reply"]["body"]["type"],
        "https://docs.example.com/problems/token-unbound"
    );

    let header_source = fixture.file(
        "header.json",
        r#"{"claims": {"source": "authorization_header"}}"#,
    );
    let (exit, _) = inspect(
        &fixture.bound_to(1),
        Some(&fixture.cert(1)),
        &["--config", &header_source],
    );
    assert_eq!(exit, 0);
}

#[test]
fn token_from_stdin_with_or_without_bearer() {
    let fixture = Fixture::new();
    let cert = fixture.cert(1);
    for input in [
        fixture.bound_to(1),
        format!("Bearer {}\n", fixture.bound_to(1)),
    ] {
        let output = cli_with_stdin(&["inspect", "--token", "-", "--cert", &cert], Some(&input));
        assert_eq!(code(&output), 0, "{}", stderr(&output));
    }
}

#[test]
fn check_config_uses_the_filters_parser() {
    let fixture = Fixture::new();
    let good = fixture.file("good.json", r#"{"mode": "dry_run", "stat_prefix": "edge"}"#);
    let (exit, document) = cli_json(&["check-config", &good]);
    assert_eq!(exit, 0);
    assert_eq!(document["valid"], true);
    assert!(document["configured"]
        .as_str()
        .unwrap()
        .contains("mode=dry_run"));

    let typo = fixture.file("typo.json", r#"{"mod": "enforce"}"#);
    let output = cli(&["check-config", &typo]);
    assert_eq!(code(&output), 1);
    assert!(
        stdout(&output).contains("invalid configuration at `mod`: unknown field `mod`"),
        "{}",
        stdout(&output)
    );
    assert!(stdout(&output).contains("the plugin will not start"));

    let nested = fixture.file("nested.json", r#"{"claims": {"metadata_key": "a.b"}}"#);
    let (exit, document) = cli_json(&["check-config", &nested]);
    assert_eq!(exit, 1);
    assert_eq!(document["field"], "claims.metadata_key");

    let output = cli_with_stdin(&["check-config", "-"], Some("{}"));
    assert_eq!(code(&output), 0);
}

#[test]
fn unusable_input_exits_2_with_a_clear_error() {
    let fixture = Fixture::new();
    let missing = fixture.path("nope.pem").display().to_string();
    let not_pem = fixture.file("not.pem", "hello");
    let token = fixture.bound_to(1);
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (vec!["thumbprint", &missing], &["cannot read"]),
        (vec!["thumbprint", &not_pem], &["no PEM certificate"]),
        (
            vec!["inspect", "--token", &token, "--cert", &not_pem],
            &["no PEM certificate"],
        ),
        (
            vec!["inspect", "--token", &token, "--cert", &missing],
            &["cannot read", "nope.pem"],
        ),
        (vec!["inspect", "--token", "abc"], &["malformed token"]),
        (vec!["inspect", "--token", "e30.e30"], &["malformed token"]),
        (
            vec!["inspect", "--token", "e30.!!!.c2ln"],
            &["malformed token"],
        ),
        (vec!["check-config", &missing], &["cannot read"]),
        // Usage errors are clap's, naming what is wrong.
        (
            vec!["inspect", "--cert", &not_pem],
            &["required arguments were not provided", "--token"],
        ),
        (
            vec!["frobnicate"],
            &["unrecognized subcommand", "frobnicate"],
        ),
        (vec![], &["Usage: cnf-guard", "inspect", "check-config"]),
        (
            vec!["inspect", "--token", &token, "-H", "no-colon"],
            &["--header", "no-colon", "name: value"],
        ),
        (
            vec!["inspect", "--token", &token, "--path", "/a", "--path", "/b"],
            &["--path", "cannot be used multiple times"],
        ),
        (
            vec!["inspect", "--token", "-", "--cert", "-"],
            &["only one input can be read from stdin"],
        ),
        (vec!["thumbprint"], &["required", "CERT.pem"]),
    ];
    for (args, messages) in cases {
        let output = cli(&args);
        assert_eq!(code(&output), 2, "{args:?}: {}", stderr(&output));
        for message in messages {
            assert!(
                stderr(&output).contains(message),
                "{args:?}: {message}: {}",
                stderr(&output)
            );
        }
    }
    let bad_config = fixture.file("bad.json", r#"{"binding": "sometimes"}"#);
    let output = cli(&["inspect", "--token", &token, "--config", &bad_config]);
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("`binding`"));

    let (exit, document) = cli_json(&["thumbprint", &missing]);
    assert_eq!(exit, 2);
    assert!(document["error"].as_str().unwrap().contains("cannot read"));
}

#[test]
fn help_documents_the_exit_codes() {
    for help in [&["--help"][..], &["-h"], &["help"]] {
        let output = cli(help);
        assert_eq!(code(&output), 0, "{help:?}");
        let help = stdout(&output);
        for line in [
            "EXIT CODES",
            "0  allowed",
            "1  the filter would deny",
            "2  usage error",
            "thumbprint",
            "inspect",
            "check-config",
        ] {
            assert!(help.contains(line), "{help}");
        }
    }
    let (exit, document) = cli_json(&["--help"]);
    assert_eq!(exit, 0);
    assert!(document["text"].as_str().unwrap().contains("EXIT CODES"));

    let output = cli(&["inspect", "--help"]);
    assert_eq!(code(&output), 0);
    let help = stdout(&output);
    for flag in [
        "--token <TOKEN|FILE|->",
        "a file holding it",
        "--cert",
        "--config",
        "--path",
        "--method",
        "--request-id",
        "-H, --header",
        "--json",
    ] {
        assert!(help.contains(flag), "{flag}: {help}");
    }

    let output = cli(&["--version"]);
    assert_eq!(code(&output), 0);
    assert_eq!(
        stdout(&output),
        format!("cnf-guard {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unknown_flag_is_named() {
    let fixture = Fixture::new();
    let token = fixture.bound_to(1);
    for args in [
        vec!["inspect", "--token", &token, "--frobnicate"],
        vec!["thumbprint", &fixture.cert(1), "--frobnicate"],
        vec!["check-config", "-", "--frobnicate"],
        vec!["--frobnicate", "inspect", "--token", &token],
    ] {
        let output = cli(&args);
        assert_eq!(code(&output), 2, "{args:?}");
        assert!(stdout(&output).is_empty(), "{args:?}: {}", stdout(&output));
        assert!(
            stderr(&output).contains("unexpected argument '--frobnicate'"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    // With --json the error is a JSON document too, wherever --json stands.
    for args in [
        vec!["--json", "inspect", "--token", &token, "--frobnicate"],
        vec!["inspect", "--token", &token, "--frobnicate", "--json"],
    ] {
        let output = cli(&args);
        assert_eq!(code(&output), 2, "{args:?}");
        let document: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            document["error"], "unexpected argument '--frobnicate' found",
            "{args:?}"
        );
    }
}

#[test]
fn token_inline_or_from_a_file() {
    let fixture = Fixture::new();
    let token = fixture.bound_to(1);
    let cert = fixture.cert(1);
    let (exit, inline) = inspect(&token, Some(&cert), &[]);
    assert_eq!((exit, &inline["verdict"]), (0, &json!("allow")), "{inline}");

    // A file holding the token: surrounding whitespace and a Bearer prefix are fine.
    for contents in [
        token.clone(),
        format!("\n  {token}\n\n"),
        format!("Bearer {token}\n"),
    ] {
        let file = fixture.file("token.jwt", &contents);
        let (exit, from_file) = inspect(&file, Some(&cert), &[]);
        assert_eq!(exit, 0, "{from_file}");
        assert_eq!(from_file["token"], inline["token"]);
        assert_eq!(from_file["verdict"], "allow");
    }

    // A bare file name (no `/`, no extension) in the working directory.
    fixture.file("token", &format!("{token}\n"));
    let output = Command::new(env!("CARGO_BIN_EXE_cnf-guard"))
        .args(["--json", "inspect", "--token", "token", "--cert", &cert])
        .current_dir(fixture.dir.path())
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(document["token"], inline["token"]);

    // The token in a file is checked like an inline one: a mismatch is a mismatch.
    let other = fixture.file("other.jwt", &fixture.bound_to(2));
    let (exit, document) = inspect(&other, Some(&cert), &[]);
    assert_eq!(
        (exit, &document["slug"]),
        (1, &json!("mtls-binding-mismatch"))
    );

    // A file that holds no token says which file.
    let not_a_token = fixture.file("not-a-token.txt", "hello");
    let output = cli(&["inspect", "--token", &not_a_token]);
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains(&format!("{not_a_token}: malformed token")),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_token_path_that_names_no_file_is_not_parsed_as_a_token() {
    let fixture = Fixture::new();
    let missing = fixture.path("missing.jwt").display().to_string();
    for value in [
        missing.as_str(),
        "missing.jwt",
        "token.txt",
        "./token",
        "tokens/client-1",
    ] {
        let output = cli(&["inspect", "--token", value]);
        assert_eq!(code(&output), 2, "{value}");
        let error = stderr(&output);
        assert!(
            error.contains(&format!("no such file: {value}")),
            "{value}: {error}"
        );
        assert!(!error.contains("malformed token"), "{value}: {error}");

        let (exit, document) = cli_json(&["inspect", "--token", value]);
        assert_eq!(exit, 2);
        assert!(document["error"]
            .as_str()
            .unwrap()
            .starts_with(&format!("no such file: {value}")));
    }
}

#[test]
fn certificates_and_configurations_inline_or_from_files() {
    let fixture = Fixture::new();
    let client = &fixture.pki.clients[0];
    let token = fixture.bound_to(1);

    // A certificate: a file, stdin, or the PEM itself (plain or URL-encoded).
    let encoded: String = client
        .cert_pem
        .bytes()
        .map(|byte| match byte {
            b'\n' => "%0A".to_owned(),
            b' ' => "%20".to_owned(),
            b'+' => "%2B".to_owned(),
            b'/' => "%2F".to_owned(),
            b'=' => "%3D".to_owned(),
            other => (other as char).to_string(),
        })
        .collect();
    for pem in [&client.cert_pem, &encoded] {
        let (exit, document) = cli_json(&["thumbprint", "--", pem]);
        assert_eq!(exit, 0, "{document}");
        assert_eq!(document["x5t#S256"], client.x5t());
        assert_eq!(document["certificate"], "inline PEM");

        let cert = format!("--cert={pem}");
        let (exit, document) = inspect(&token, None, &[&cert]);
        assert_eq!(exit, 0, "{document}");
        assert_eq!(document["certificate"]["x5t#S256"], client.x5t());
    }
    let output = cli_with_stdin(
        &["--json", "inspect", "--token", &token, "--cert", "-"],
        Some(&client.cert_pem),
    );
    assert_eq!(code(&output), 0, "{}", stderr(&output));

    // A configuration: a file, stdin, or the JSON itself.
    let unbound = fixture.with_claims(json!({"scope": "orders"}));
    let optional = r#"{"binding": "optional"}"#;
    let file = fixture.file("optional.json", optional);
    for config in [file.as_str(), optional] {
        let (exit, document) = inspect(&unbound, None, &["--config", config]);
        assert_eq!(
            (exit, &document["outcome"]),
            (0, &json!("allowed_unbound")),
            "{config}"
        );
    }
    let output = cli_with_stdin(
        &["--json", "inspect", "--token", &unbound, "--config", "-"],
        Some(optional),
    );
    assert_eq!(code(&output), 0, "{}", stderr(&output));

    let (exit, document) = cli_json(&["check-config", r#"{"mode": "dry_run"}"#]);
    assert_eq!(exit, 0, "{document}");
    assert_eq!(document["file"], "inline JSON");
    let (exit, document) = cli_json(&["check-config", r#"{"mod": "dry_run"}"#]);
    assert_eq!((exit, &document["field"]), (1, &json!("mod")));

    // A missing file is still reported as one.
    let output = cli(&["inspect", "--token", &token, "--config", "nope.json"]);
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("cannot read nope.json"));
}
