//! The deployment artefacts: Istio manifests against Istio's CRD schemas and
//! against the filter's own configuration parser, the OCI image recipe, and
//! the docker-compose rig. The schema tools come from the npm registry
//! (`make manifest-tools`, which `make test` runs first).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::Value;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tools() -> PathBuf {
    repo_root().join("tests/manifests")
}

/// Runs one of the node tools on `files`. Missing tools fail the test loudly:
/// a skipped schema check would look like a passing one.
fn node(script: &str, files: &[PathBuf]) -> Output {
    assert!(
        tools()
            .join("node_modules/@kubernetes-models/istio")
            .exists()
            && tools().join("node_modules/yaml").exists(),
        "the schema tools are not installed: run `make manifest-tools` (or `make test`)"
    );
    Command::new("node")
        .arg(tools().join(script))
        .args(files)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run node (needed for the manifest checks): {e}"))
}

fn istio_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("deploy/istio"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

/// The resources in deploy/istio, each validated against its CRD schema.
fn istio_resources() -> Vec<Value> {
    let output = node("validate-istio.mjs", &istio_files());
    assert!(
        output.status.success(),
        "deploy/istio does not match the Istio CRD schemas:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    listed
        .into_iter()
        .map(|entry| entry["resource"].clone())
        .collect()
}

fn of_kind<'a>(resources: &'a [Value], kind: &str) -> Vec<&'a Value> {
    resources.iter().filter(|r| r["kind"] == kind).collect()
}

fn check_config(config: &Value) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cnf-guard"))
        .args(["check-config", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.to_string().as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn istio_manifests_match_the_crd_schemas() {
    let resources = istio_resources();
    let plugins = of_kind(&resources, "WasmPlugin");
    assert!(plugins.len() >= 4, "{plugins:?}");
    for plugin in &plugins {
        let spec = &plugin["spec"];
        let name = format!(
            "{}/{}",
            plugin["metadata"]["namespace"], plugin["metadata"]["name"]
        );
        assert_eq!(spec["phase"], "AUTHZ", "{name}: runs after jwt_authn");
        assert_eq!(spec["failStrategy"], "FAIL_CLOSE", "{name}");
        assert!(
            spec["url"].as_str().unwrap().starts_with("oci://"),
            "{name}"
        );
        assert!(
            spec["selector"]["matchLabels"].is_object() || spec["targetRefs"].is_array(),
            "{name}: attaches to something"
        );
    }
    assert!(plugins.iter().any(|p| p["spec"]["selector"].is_object()));
    assert!(plugins.iter().any(|p| p["spec"]["targetRefs"].is_array()));
    assert!(plugins.iter().any(|p| p["spec"]["sha256"].is_string()));

    let peer = of_kind(&resources, "PeerAuthentication");
    assert!(peer.iter().any(|p| p["spec"]["mtls"]["mode"] == "STRICT"));
    assert!(!of_kind(&resources, "RequestAuthentication").is_empty());
}

#[test]
fn istio_plugin_configs_pass_the_filters_parser() {
    let resources = istio_resources();
    let mut rollout = Vec::new();
    for plugin in of_kind(&resources, "WasmPlugin") {
        let config = &plugin["spec"]["pluginConfig"];
        let output = check_config(config);
        assert!(
            output.status.success(),
            "{}: {}",
            plugin["metadata"]["name"],
            String::from_utf8_lossy(&output.stdout)
        );
        rollout.push((
            config["mode"].as_str().unwrap_or("enforce").to_owned(),
            config["binding"].as_str().unwrap_or("required").to_owned(),
        ));
    }
    for step in [
        ("dry_run", "required"),
        ("enforce", "optional"),
        ("enforce", "required"),
    ] {
        assert!(
            rollout
                .iter()
                .any(|(m, b)| (m.as_str(), b.as_str()) == step),
            "no {step:?} example in {rollout:?}"
        );
    }
}

/// DPoP across replicas, by affinity: the workload's DestinationRule hashes
/// on the header every replay of a proof must repeat byte for byte.
#[test]
fn istio_dpop_affinity_hashes_on_the_authorization_header() {
    let resources = istio_resources();
    let rules = of_kind(&resources, "DestinationRule");
    let dpop_plugin = of_kind(&resources, "WasmPlugin")
        .into_iter()
        .find(|p| p["metadata"]["name"] == "cnf-guard-dpop")
        .expect("the DPoP WasmPlugin");
    let namespace = dpop_plugin["metadata"]["namespace"].as_str().unwrap();
    let affinity: Vec<&Value> = rules
        .iter()
        .copied()
        .filter(|r| r["spec"]["trafficPolicy"]["loadBalancer"]["consistentHash"].is_object())
        .collect();
    assert_eq!(affinity.len(), 1, "{rules:?}");
    let rule = affinity[0];
    let load_balancer = &rule["spec"]["trafficPolicy"]["loadBalancer"];
    assert_eq!(
        load_balancer["consistentHash"]["httpHeaderName"], "authorization",
        "{rule}"
    );
    assert!(load_balancer["simple"].is_null(), "{rule}");
    // The DPoP workload's own Service, in its namespace.
    assert_eq!(rule["metadata"]["namespace"], namespace, "{rule}");
    assert!(
        rule["spec"]["host"]
            .as_str()
            .unwrap()
            .ends_with(&format!(".{namespace}.svc.cluster.local")),
        "{rule}"
    );
}

/// DPoP across replicas, with the shared store: the plugin reaches webdis
/// through the sidecar's outbound cluster for its Service, whose name Istio
/// spells `outbound|<port>||<FQDN>`, with the FQDN as the authority.
#[test]
fn istio_dpop_replay_store_uses_the_sidecars_cluster_name() {
    let resources = istio_resources();
    let stores: Vec<&Value> = of_kind(&resources, "WasmPlugin")
        .into_iter()
        .map(|p| &p["spec"]["pluginConfig"]["dpop"]["replay_store"])
        .filter(|store| !store.is_null())
        .collect();
    assert_eq!(stores.len(), 1, "{stores:?}");
    let store = stores[0];
    let authority = store["authority"].as_str().unwrap();
    assert!(authority.ends_with(".svc.cluster.local"), "{store}");
    let cluster = store["cluster"].as_str().unwrap();
    let parts: Vec<&str> = cluster.split('|').collect();
    assert_eq!(parts.len(), 4, "{cluster}");
    assert_eq!((parts[0], parts[2], parts[3]), ("outbound", "", authority));
    assert!(parts[1].parse::<u16>().is_ok(), "{cluster}");
    assert_eq!(store["on_unavailable"], "deny", "{store}");
}

#[test]
fn schema_check_rejects_broken_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: x}\n\
         spec:\n  selector: {matchLabels: {app: a}}\n  \
         targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: g}]\n  \
         url: oci://registry.example.com/x:1\n  phase: AUTHZ\n  failStrategy: FAIL_CLOSED\n  \
         sha256: 0000000000000000000000000000000000000000000000000000000000000000\n\
         ---\n\
         apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: y}\n\
         spec:\n  url: oci://registry.example.com/x:1\n  priorty: 10\n\
         ---\n\
         apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: z}\n\
         spec:\n  host: a\n  trafficPolicy:\n    loadBalancer:\n      simple: ROUND_ROBIN\n      \
         consistentHash: {httpHeaderName: authorization}\n\
         ---\n\
         apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: w}\n\
         spec:\n  host: a\n  trafficPolicy:\n    loadBalancer:\n      \
         consistentHash: {httpHeader: authorization}\n",
    )
    .unwrap();
    let output = node("validate-istio.mjs", &[broken]);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    for expected in [
        "failStrategy must be equal to one of the allowed values",
        "sha256 must be string",
        "only one of targetRefs or selector",
        "'\"priorty\"' does not exist",
        "loadBalancer must match exactly one schema in \"oneOf\"",
        "'\"httpHeader\"' does not exist",
    ] {
        assert!(errors.contains(expected), "{expected}: {errors}");
    }
}

fn makefile_variable(name: &str) -> String {
    let makefile = std::fs::read_to_string(repo_root().join("Makefile")).unwrap();
    makefile
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} := ")))
        .unwrap_or_else(|| panic!("Makefile has no {name}"))
        .trim()
        .to_owned()
}

#[test]
fn oci_image_is_the_built_module_at_plugin_wasm() {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let instructions: Vec<&str> = dockerfile
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    // The Makefile's module path, with its default target directory.
    assert_eq!(
        makefile_variable("TARGET_DIR"),
        "$(or $(CARGO_TARGET_DIR),target)"
    );
    let wasm = makefile_variable("WASM").replace("$(TARGET_DIR)", "target");
    assert_eq!(wasm, "target/wasm32-wasip1/release/cnf_guard.wasm");
    assert_eq!(
        instructions,
        [
            "FROM scratch",
            &format!("ARG WASM={wasm}"),
            "COPY ${WASM} /plugin.wasm"
        ]
    );
    let ignore = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == format!("!{wasm}")), "{ignore}");
}

#[test]
fn compose_runs_the_demo_config_the_tests_validate() {
    let compose = repo_root().join("envoy/docker-compose.yaml");
    let output = node("read-yaml.mjs", std::slice::from_ref(&compose));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let documents: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let envoy = &documents[0]["document"]["services"]["envoy"];
    assert!(envoy["image"]
        .as_str()
        .unwrap()
        .starts_with("envoyproxy/envoy:v1.40"));
    // The repository root is mounted and is the working directory, so the
    // config's relative paths (.demo/…, target/…) resolve as in `make run`.
    let working_dir = envoy["working_dir"].as_str().unwrap();
    let mounts: Vec<&str> = envoy["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let root = mounts
        .iter()
        .find_map(|m| {
            let mut parts = m.split(':');
            let (host, container) = (parts.next()?, parts.next()?);
            (container == working_dir).then_some(host)
        })
        .unwrap_or_else(|| panic!("nothing mounted at {working_dir}: {mounts:?}"));
    let root = compose.parent().unwrap().join(root).canonicalize().unwrap();
    assert_eq!(root, repo_root().canonicalize().unwrap());
    let command: Vec<&str> = envoy["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let config = command
        .windows(2)
        .find_map(|w| (w[0] == "-c").then_some(w[1]))
        .expect("-c");
    assert_eq!(config, "envoy/demo.yaml");
    assert!(Path::new(&root).join(config).exists());
}
