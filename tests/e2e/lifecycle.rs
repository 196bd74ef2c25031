//! The plugin's life in Envoy: a new configuration over LDS applies without
//! dropping a request in flight (and a bad one is refused, the old one kept),
//! and a failed VM under each `failure_policy`.

use super::assertions::wait_for_counter;
use super::{NamedTrial, World};
use crate::support;
use crate::support::bootstrap::{
    lds_bootstrap, lds_resources, upstream_cluster, JwtAuthn, Listener,
};
use crate::support::client::Request;
use crate::support::envoy::{free_port, Envoy};

pub fn trials() -> Vec<NamedTrial> {
    vec![
        (
            "reload::new_plugin_configuration_applies_without_dropping_in_flight_requests",
            lds_reload,
        ),
        (
            "fail_closed::a_failed_vm_denies_with_fail_closed_and_fail_reload",
            failed_vm,
        ),
    ]
}

// ---- configuration reload (LDS) -------------------------------------------------

/// Replaces the LDS file the way a control plane would: write, then rename.
fn push_listener(world: &World, dir: &std::path::Path, port: u16, plugin_config: &str) {
    let listener = Listener::new("reloaded", JwtAuthn::default(), plugin_config.to_owned());
    let resources = lds_resources(&world.material, &support::wasm_path(), &listener, port);
    let staged = dir.join("lds.staged.yaml");
    std::fs::write(&staged, resources).expect("write lds");
    std::fs::rename(&staged, dir.join("lds.yaml")).expect("rename lds");
}

fn lds_reload(world: &World) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    push_listener(world, dir.path(), port, r#"{"mode": "dry_run"}"#);
    let envoy_dir = dir.path().join("envoy");
    std::fs::create_dir_all(&envoy_dir).expect("mkdir");
    let envoy = Envoy::start(
        &envoy_dir,
        &lds_bootstrap(&dir.path().join("lds.yaml"), world.upstream.port),
        2,
    );
    let stolen = || {
        Request::new(port)
            .certificate(Some(2))
            .bearer(&world.tokens.bound_1)
    };
    // Dry run: the stolen token passes (and is logged).
    assert_eq!(world.client.send(stolen()).status, 200);

    // A request in flight (the upstream holds it for 1.5 s) while the update lands.
    let in_flight = std::thread::scope(|scope| {
        let slow = scope.spawn(|| {
            world.client.send(
                Request::new(port)
                    .bearer(&world.tokens.bound_1)
                    .header("x-upstream-delay-ms", "1500"),
            )
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        push_listener(world, dir.path(), port, r#"{"mode": "enforce"}"#);
        wait_for_counter(&envoy, "listener_manager.lds.update_success", 2);
        slow.join().expect("in-flight request")
    });
    assert_eq!(
        in_flight.status, 200,
        "the in-flight request was dropped: {in_flight:?}"
    );
    assert!(world.upstream.saw(&in_flight.request_id));

    // The new configuration is in force: the stolen token is denied.
    let denied = world.client.send(stolen());
    assert_eq!(
        denied.json()["type"],
        "urn:cnf-guard:problem:mtls-binding-mismatch"
    );

    // A bad configuration is refused as a whole; the enforcing one stays.
    push_listener(world, dir.path(), port, r#"{"mode": "enforcing"}"#);
    wait_for_counter(&envoy, "listener_manager.lds.update_rejected", 1);
    assert!(envoy.log().contains("invalid configuration at `mode`"));
    let still_denied = world.client.send(stolen());
    assert_eq!(
        still_denied.json()["type"],
        "urn:cnf-guard:problem:mtls-binding-mismatch"
    );
    let allowed = world
        .client
        .send(Request::new(port).bearer(&world.tokens.bound_1));
    assert_eq!(allowed.status, 200);
}

// ---- a failed VM -----------------------------------------------------------------

/// One plain-HTTP listener per `failure_policy`, each with its own VM of a
/// plugin that traps on `x-trap` (tests/trap-plugin).
fn failed_vm_bootstrap(world: &World, wasm: &std::path::Path) -> String {
    let mut yaml = String::from(
        "admin:\n  address: {socket_address: {address: 127.0.0.1, port_value: 0}}\nstatic_resources:\n  listeners:\n",
    );
    for policy in ["FAIL_CLOSED", "FAIL_RELOAD", "FAIL_OPEN"] {
        yaml.push_str(&format!(
            r#"  - name: {policy}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {policy}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                route: {{cluster: upstream}}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: trap-{policy}
                failure_policy: {policy}
                reload_config: {{backoff: {{base_interval: 0.1s, max_interval: 0.2s}}}}
                vm_config:
                  vm_id: trap-{policy}
                  runtime: envoy.wasm.runtime.v8
                  code: {{local: {{filename: {wasm}}}}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#,
            wasm = wasm.display()
        ));
    }
    yaml.push_str(&upstream_cluster(world.upstream.port));
    yaml
}

/// Status of a plain-HTTP GET, and whether the upstream saw it.
fn plain_get(world: &World, port: u16, trap: bool) -> (u16, bool) {
    let request_id = format!(
        "vm-{port}-{}-{trap}",
        std::time::UNIX_EPOCH.elapsed().expect("clock").as_nanos()
    );
    let mut command = std::process::Command::new("curl");
    command.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "5",
        "-H",
    ]);
    command.arg(format!("x-request-id: {request_id}"));
    if trap {
        command.args(["-H", "x-trap: 1"]);
    }
    let output = command
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("curl");
    let status = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (status, world.upstream.saw(&request_id))
}

fn failed_vm(world: &World) {
    let wasm =
        support::repo_root().join("target/trap-plugin/wasm32-wasip1/release/trap_plugin.wasm");
    assert!(
        wasm.exists(),
        "build it with `make trap-plugin` ({} missing)",
        wasm.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let envoy = Envoy::start(dir.path(), &failed_vm_bootstrap(world, &wasm), 1);
    for policy in ["FAIL_CLOSED", "FAIL_RELOAD", "FAIL_OPEN"] {
        let port = envoy.port(policy);
        assert_eq!(
            plain_get(world, port, false),
            (200, true),
            "{policy}: healthy VM"
        );
        let (status, reached) = plain_get(world, port, true);
        assert!(
            !reached && status >= 500,
            "{policy}: the trapping request got {status}"
        );
    }
    // FAIL_CLOSED: the VM stays failed and every request is refused.
    let closed = envoy.port("FAIL_CLOSED");
    for _ in 0..3 {
        let (status, reached) = plain_get(world, closed, false);
        assert!(
            !reached && status >= 500,
            "FAIL_CLOSED let a request through ({status})"
        );
    }
    // FAIL_RELOAD: refused until a fresh VM is up, then served again.
    let reload = envoy.port("FAIL_RELOAD");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, reached) = plain_get(world, reload, false);
        if status == 200 {
            assert!(reached);
            break;
        }
        assert!(
            !reached,
            "FAIL_RELOAD: a refused request reached the upstream"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "FAIL_RELOAD never reloaded the VM"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // FAIL_OPEN (never for a security filter): the failed filter is skipped.
    assert_eq!(
        plain_get(world, envoy.port("FAIL_OPEN"), false),
        (200, true)
    );
}
