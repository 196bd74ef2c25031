//! The shipped example configurations (envoy/*.yaml): each validates, and
//! the demo, the edge pair, per-route and problem-json-for-every-failure
//! serve what they promise, in an Envoy of their own on free ports.

use super::assertions::assert_detail_contains;
use super::forwarded::forged_xfcc;
use super::{NamedTrial, World};
use crate::support;
use crate::support::client::{Client, Request};
use crate::support::envoy::{free_port, validate, Envoy};
use std::path::PathBuf;

pub fn trials() -> Vec<NamedTrial> {
    vec![
        (
            "examples::edge_and_behind_edge_serve_together",
            edge_examples_serve,
        ),
        ("examples::per_route_yaml_serves", per_route_example_serves),
        ("examples::every_envoy_yaml_validates", examples_validate),
        ("examples::demo_yaml_serves_the_demo", demo_yaml_serves),
        (
            "examples::problem_json_for_every_failure_yaml_serves",
            every_failure_yaml_serves,
        ),
    ]
}

fn example_configs() -> Vec<PathBuf> {
    let mut configs: Vec<PathBuf> = std::fs::read_dir(support::repo_root().join("envoy"))
        .expect("envoy/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        // The compose file runs demo.yaml in a container; it is no Envoy config.
        .filter(|p| !p.ends_with("docker-compose.yaml"))
        .collect();
    configs.sort();
    assert!(!configs.is_empty());
    configs
}

/// A working directory laid out like the repository for the examples'
/// relative paths: `.demo/` material and the built wasm under `target/`.
pub fn demo_workdir(world: &World) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = dir.path().join(".demo");
    std::fs::create_dir_all(&demo).expect("mkdir");
    for entry in std::fs::read_dir(&world.material)
        .expect("material")
        .flatten()
    {
        std::fs::copy(entry.path(), demo.join(entry.file_name())).expect("copy");
    }
    let wasm_dir = dir.path().join("target/wasm32-wasip1/release");
    std::fs::create_dir_all(&wasm_dir).expect("mkdir");
    std::fs::copy(support::wasm_path(), wasm_dir.join("cnf_guard.wasm")).expect("copy wasm");
    dir
}

fn examples_validate(world: &World) {
    let dir = demo_workdir(world);
    for config in example_configs() {
        let output = validate(dir.path(), &config);
        assert!(
            output.status.success(),
            "{} does not validate:\n{}",
            config.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Starts an example config with each of its fixed ports (admin included)
/// moved to a free one, so tests never clash with `make run`.
pub fn start_example(dir: &std::path::Path, file: &str) -> Envoy {
    start_examples(dir, &[file]).pop().expect("one Envoy")
}

/// Starts example configs that refer to each other's ports (in order), with
/// every fixed port moved to the same free one in all of them. Each Envoy
/// keeps its files in a subdirectory; the examples' relative paths are made
/// absolute under `dir`.
fn start_examples(dir: &std::path::Path, files: &[&str]) -> Vec<Envoy> {
    let configs: Vec<String> = files
        .iter()
        .map(|file| {
            std::fs::read_to_string(support::repo_root().join("envoy").join(file)).expect("example")
        })
        .collect();
    let fixed: std::collections::BTreeSet<String> = configs
        .iter()
        .flat_map(|config| {
            config
                .split("port_value: ")
                .skip(1)
                .filter_map(|rest| rest.split('}').next().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    let moved: Vec<(String, u16)> = fixed.into_iter().map(|port| (port, free_port())).collect();
    configs
        .into_iter()
        .enumerate()
        .map(|(index, mut config)| {
            for (port, free) in &moved {
                config = config.replace(
                    &format!("port_value: {port}}}"),
                    &format!("port_value: {free}}}"),
                );
            }
            // Relative paths (.demo/, target/) resolve against `dir`.
            let log_dir = dir.join(format!("envoy-{index}"));
            std::fs::create_dir_all(&log_dir).expect("mkdir");
            let config = config
                .replace(
                    "filename: .demo/",
                    &format!("filename: {}/.demo/", dir.display()),
                )
                .replace(
                    "filename: target/",
                    &format!("filename: {}/target/", dir.display()),
                );
            Envoy::start(&log_dir, &config, 1)
        })
        .collect()
}

fn demo_yaml_serves(world: &World) {
    let dir = demo_workdir(world);
    let envoy = start_example(dir.path(), "demo.yaml");
    let client = Client {
        material: dir.path().join(".demo"),
    };
    let port = envoy.port("protected");
    let ok = client.send(Request::new(port).bearer(&world.tokens.bound_1));
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(ok.body.starts_with("hello from the upstream"), "{ok:?}");
    let denied = client.send(Request::new(port).bearer(&world.tokens.bound_2));
    assert_eq!(denied.status, 401);
    assert_eq!(
        denied.json()["type"],
        "urn:cnf-guard:problem:mtls-binding-mismatch"
    );
    let unverified = client.send(Request::new(port).bearer(&world.tokens.rogue_signer));
    assert_eq!(
        (unverified.status, unverified.body.as_str()),
        (401, "Jwt verification fails")
    );
}

fn every_failure_yaml_serves(world: &World) {
    let dir = demo_workdir(world);
    let envoy = start_example(dir.path(), "problem-json-for-every-failure.yaml");
    let client = Client {
        material: dir.path().join(".demo"),
    };
    let port = envoy.port("protected");
    let ok = client.send(Request::new(port).bearer(&world.tokens.bound_1));
    assert_eq!(ok.status, 200, "{ok:?}");
    for (token, reason) in [
        (None, "Jwt is missing"),
        (Some(&world.tokens.rogue_signer), "Jwt verification fails"),
        (Some(&world.tokens.expired), "Jwt is expired"),
    ] {
        let mut request = Request::new(port);
        if let Some(token) = token {
            request = request.bearer(token);
        }
        let response = client.send(request);
        assert_eq!(response.status, 401);
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json")
        );
        let document = response.json();
        assert_eq!(
            document["type"],
            "urn:cnf-guard:problem:authentication-failed"
        );
        assert_detail_contains(&document, reason);
    }
}

fn edge_examples_serve(world: &World) {
    let dir = demo_workdir(world);
    let envoys = start_examples(dir.path(), &["behind-edge.yaml", "edge.yaml"]);
    let client = Client {
        material: dir.path().join(".demo"),
    };
    let port = envoys[1].port("edge");
    let ok = client.send(Request::new(port).bearer(&world.tokens.bound_1));
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.body, "hello from the upstream behind the edge\n");
    let stolen = client.send(
        Request::new(port)
            .certificate(Some(2))
            .bearer(&world.tokens.bound_1)
            .header("x-forwarded-client-cert", forged_xfcc(world, 1)),
    );
    assert_eq!(stolen.status, 401);
    assert_eq!(
        stolen.json()["type"],
        "urn:cnf-guard:problem:mtls-binding-mismatch"
    );
    // Around the edge, straight to cnf-guard: the forged header is ignored.
    let around = client.send(
        Request::new(envoys[0].port("protected"))
            .certificate(Some(2))
            .bearer(&world.tokens.bound_1)
            .header("x-forwarded-client-cert", forged_xfcc(world, 1)),
    );
    assert_eq!(around.json()["type"], "urn:cnf-guard:problem:mtls-required");
}

fn per_route_example_serves(world: &World) {
    let dir = demo_workdir(world);
    let envoy = start_example(dir.path(), "per-route.yaml");
    let client = Client {
        material: dir.path().join(".demo"),
    };
    let port = envoy.port("protected");
    let unbound = &world.tokens.unbound;
    let expect = |request: Request, status: u16| {
        let response = client.send(request);
        assert_eq!(response.status, status, "{response:?}");
    };
    expect(Request::new(port).path("/healthz").certificate(None), 200);
    expect(Request::new(port).path("/orders").bearer(unbound), 200);
    expect(Request::new(port).path("/admin").bearer(unbound), 401);
    expect(Request::new(port).path("/v2/orders").bearer(unbound), 200);
    expect(
        Request::new(port)
            .path("/orders")
            .method("POST")
            .bearer(unbound),
        401,
    );
    assert!(envoy.wait_for_log("would deny (dry run) slug=token-unbound"));
    assert!(envoy.wait_for_log("rule=orders-v2-rollout"));
}
