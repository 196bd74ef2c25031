#![allow(dead_code)]
//! A fleet on loopback: cnf-guard replicas (one Envoy each, plain HTTP),
//! a front Envoy that load-balances over them, a real Redis behind webdis as
//! the shared replay store, and the DPoP clients and attacker that talk to
//! the front. Every process started here is stopped when its handle drops.

use crate::support::client::Response;
use crate::support::dpop::{claims, fresh_jti, now, TestKey};
use crate::support::envoy::{free_port, Envoy};
use crate::support::material::Issuer;
use crate::support::upstream::BODY;
use jwt_simple::prelude::Duration;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// Where every client request goes, and what a replica names itself in.
pub const PATH: &str = "/orders/7";
pub const REPLICA_HEADER: &str = "x-replica";
/// The cluster name each replica reaches the store by.
pub const STORE_CLUSTER: &str = "cnf_guard_replay_store";

// ---- replicas --------------------------------------------------------------------

/// One cnf-guard Envoy: jwt_authn (DPoP scheme, `forward: true`) → cnf-guard
/// → router to the recording upstream. Every response it gives, the filter's
/// own denials included, carries `x-replica: <name>`.
pub struct Replica {
    pub name: String,
    pub envoy: Envoy,
    _dir: tempfile::TempDir,
}

impl Replica {
    /// `store_port`: the webdis port the `cnf_guard_replay_store` cluster
    /// points at, if the replica has that cluster.
    pub fn start(
        name: &str,
        material: &Path,
        upstream_port: u16,
        plugin_config: &Value,
        store_port: Option<u16>,
    ) -> Replica {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = replica_yaml(
            name,
            material,
            &crate::support::wasm_path(),
            upstream_port,
            plugin_config,
            store_port,
        );
        let envoy = Envoy::start(dir.path(), &yaml, 1);
        Replica {
            name: name.to_owned(),
            envoy,
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.envoy.port("replica")
    }
}

/// `names` replicas with the same plugin configuration.
pub fn replicas(
    names: &[&str],
    material: &Path,
    upstream_port: u16,
    plugin_config: &Value,
    store_port: Option<u16>,
) -> Vec<Replica> {
    names
        .iter()
        .map(|name| Replica::start(name, material, upstream_port, plugin_config, store_port))
        .collect()
}

pub fn replica_yaml(
    name: &str,
    material: &Path,
    wasm: &Path,
    upstream_port: u16,
    plugin_config: &Value,
    store_port: Option<u16>,
) -> String {
    let m = material.display();
    let config = serde_json::to_string(&plugin_config.to_string()).expect("json string");
    let mut yaml = format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: replica
    stat_prefix: replica
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: replica
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                route: {{cluster: upstream}}
          http_filters:
          # First in the chain, so it also marks the local replies of the
          # filters after it (route-level response_headers_to_add does not).
          - name: envoy.filters.http.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations:
                response_mutations:
                - append: {{header: {{key: {REPLICA_HEADER}, value: {name}}}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                issuer:
                  issuer: {issuer}
                  audiences: [{audience}]
                  local_jwks: {{filename: {m}/jwks.json}}
                  from_headers:
                  - {{name: authorization, value_prefix: "Bearer "}}
                  - {{name: authorization, value_prefix: "DPoP "}}
                  forward: true
                  payload_in_metadata: payload
              rules:
              - match: {{prefix: /}}
                requires: {{provider_name: issuer}}
{cnf_guard}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{clusters}"#,
        issuer = crate::support::material::ISSUER,
        audience = crate::support::material::AUDIENCE,
        cnf_guard = crate::support::bootstrap::cnf_guard_filter("cnf-guard", &config, wasm),
        clusters = crate::support::bootstrap::upstream_cluster(upstream_port),
    );
    if let Some(port) = store_port {
        yaml.push_str(&format!(
            "  - name: {STORE_CLUSTER}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: {STORE_CLUSTER}\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}\n"
        ));
    }
    yaml
}

// ---- the front -------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balancer {
    RoundRobin,
    /// `RING_HASH` with `hash_policy: [{header: {header_name: authorization}}]`.
    RingHashOnAuthorization,
    /// `MAGLEV` with the same hash policy.
    MaglevOnAuthorization,
}

impl Balancer {
    pub fn label(self) -> &'static str {
        match self {
            Balancer::RoundRobin => "round_robin",
            Balancer::RingHashOnAuthorization => "ring_hash(authorization)",
            Balancer::MaglevOnAuthorization => "maglev(authorization)",
        }
    }
}

/// The load balancer in front of the replicas: one worker (so round robin
/// is strict), plain HTTP, the `Host` header passed on as the client sent it.
pub struct Front {
    pub envoy: Envoy,
    pub port: u16,
    pub balancer: Balancer,
    pub replicas: usize,
    _dir: tempfile::TempDir,
}

impl Front {
    pub fn start(balancer: Balancer, replicas: &[&Replica]) -> Front {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let ports: Vec<u16> = replicas.iter().map(|r| r.port()).collect();
        let envoy = Envoy::start(dir.path(), &front_yaml(balancer, port, &ports), 1);
        Front {
            envoy,
            port,
            balancer,
            replicas: replicas.len(),
            _dir: dir,
        }
    }

    /// How a client addresses the service through this front: the proof's
    /// `htu` is this front's origin (the replicas see the same `Host`).
    pub fn entry(&self) -> Entry {
        Entry::new(self.port, &format!("127.0.0.1:{}", self.port), None)
    }

    /// Through this front, to replicas configured with `external_origin`.
    pub fn entry_for_origin(&self, origin: &str) -> Entry {
        Entry::new(self.port, &format!("127.0.0.1:{}", self.port), Some(origin))
    }
}

pub fn front_yaml(balancer: Balancer, port: u16, replica_ports: &[u16]) -> String {
    let on_authorization =
        "\n                  hash_policy: [{header: {header_name: authorization}}]";
    let (lb_policy, hash_policy) = match balancer {
        Balancer::RoundRobin => ("ROUND_ROBIN", ""),
        Balancer::RingHashOnAuthorization => ("RING_HASH", on_authorization),
        Balancer::MaglevOnAuthorization => ("MAGLEV", on_authorization),
    };
    let endpoints: String = replica_ports
        .iter()
        .map(|p| {
            format!("        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {p}}}}}}}\n")
        })
        .collect();
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: front
    stat_prefix: front
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: front
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                route:
                  cluster: replicas{hash_policy}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: replicas
    type: STATIC
    connect_timeout: 1s
    lb_policy: {lb_policy}
    load_assignment:
      cluster_name: replicas
      endpoints:
      - lb_endpoints:
{endpoints}"#
    )
}

// ---- the shared replay store ------------------------------------------------------

/// Redis (no persistence) and webdis in front of it, allowing `SET` only.
/// Both are killed on drop (a paused Redis is resumed first).
pub struct Store {
    redis: Child,
    webdis: Child,
    pub redis_port: u16,
    pub http_port: u16,
    dir: tempfile::TempDir,
}

impl Store {
    pub fn start() -> Store {
        let dir = tempfile::tempdir().expect("tempdir");
        let redis_port = free_port();
        let http_port = free_port();
        let redis = Command::new("redis-server")
            .args(["--port", &redis_port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .current_dir(dir.path())
            .stdout(log_file(dir.path(), "redis.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (apt-get install redis-server)");
        let config = json!({
            "redis_host": "127.0.0.1", "redis_port": redis_port,
            "http_host": "127.0.0.1", "http_port": http_port,
            "threads": 2, "pool_size": 8, "daemonize": false, "database": 0,
            "acl": [{"disabled": ["*"]}, {"enabled": ["SET"]}],
            "verbosity": 3,
            "logfile": dir.path().join("webdis.log"),
        });
        let config_path = dir.path().join("webdis.json");
        std::fs::write(&config_path, config.to_string()).expect("write webdis.json");
        // Redis first: webdis connects its pool at start.
        wait_until("redis-server answers PING", || {
            redis_cli(redis_port, &["PING"]).trim() == "PONG"
        });
        let webdis = Command::new("webdis")
            .arg(&config_path)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(log_file(dir.path(), "webdis.stderr"))
            .spawn()
            .expect("start webdis (apt-get install webdis)");
        let store = Store {
            redis,
            webdis,
            redis_port,
            http_port,
            dir,
        };
        // A key outside cnf-guard's prefix: proves the SET path end to end.
        wait_until("webdis answers SET", || {
            plain_get(http_port, "/SET/fleet:ready/1").is_some_and(|r| r.status == 200)
        });
        store
    }

    /// Keys whose name starts with `prefix`, counted by redis-cli (not
    /// through webdis, which allows `SET` only).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        redis_cli(
            self.redis_port,
            &["--scan", "--pattern", &format!("{prefix}*")],
        )
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
    }

    /// Stops Redis for good; webdis stays up and answers 503.
    pub fn kill_redis(&mut self) {
        let _ = self.redis.kill();
        let _ = self.redis.wait();
    }

    /// Stops webdis for good: the cluster's connections are refused.
    pub fn kill_webdis(&mut self) {
        let _ = self.webdis.kill();
        let _ = self.webdis.wait();
    }

    /// SIGSTOP to Redis until the guard drops (SIGCONT): webdis then holds
    /// every call without answering.
    pub fn pause_redis(&self) -> Paused {
        signal(self.redis.id(), "-STOP");
        Paused(self.redis.id())
    }

    pub fn webdis_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("webdis.log")).unwrap_or_default()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        signal(self.redis.id(), "-CONT");
        for child in [&mut self.webdis, &mut self.redis] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A paused Redis; resumed when this drops.
pub struct Paused(u32);

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn log_file(dir: &Path, name: &str) -> Stdio {
    std::fs::File::create(dir.join(name))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

// ---- plain HTTP/1.1 --------------------------------------------------------------

/// How a client reaches the service: the port it connects to, the `Host`
/// it sends, and the origin its proofs' `htu` names.
#[derive(Clone, Debug)]
pub struct Entry {
    pub port: u16,
    pub host: String,
    pub origin: String,
}

impl Entry {
    pub fn new(port: u16, host: &str, origin: Option<&str>) -> Entry {
        Entry {
            port,
            host: host.to_owned(),
            origin: origin.map_or_else(|| format!("http://{host}"), str::to_owned),
        }
    }

    /// The same service (`Host`, origin) reached on another port: a replica
    /// addressed directly, as the front would forward to it.
    pub fn via(&self, port: u16) -> Entry {
        Entry {
            port,
            ..self.clone()
        }
    }

    pub fn htu(&self) -> String {
        format!("{}{PATH}", self.origin)
    }
}

/// One GET on a fresh connection (`connection: close`), read to the end.
pub fn get(entry: &Entry, headers: &[(&str, &str)]) -> Response {
    let request_id = format!("fleet-{}", fresh_jti());
    let mut request = format!(
        "GET {PATH} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\nx-request-id: {request_id}\r\n",
        entry.host
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    exchange(entry.port, &request, request_id)
        .unwrap_or_else(|e| panic!("GET {PATH} on port {}: {e}", entry.port))
}

fn plain_get(port: u16, path: &str) -> Option<Response> {
    let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n");
    exchange(port, &request, String::new()).ok()
}

fn exchange(port: u16, request: &str, request_id: String) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {raw:?}")))?;
    Ok(Response {
        version: status_line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
        status,
        headers: lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect(),
        body: body.to_owned(),
        request_id,
    })
}

/// The replica that answered, from its `x-replica` header.
pub fn replica_of(response: &Response) -> String {
    response
        .header(REPLICA_HEADER)
        .unwrap_or_else(|| panic!("no {REPLICA_HEADER} header: {response:?}"))
        .to_owned()
}

/// The problem slug of a cnf-guard denial, if the response is one.
pub fn slug(response: &Response) -> Option<String> {
    let document: Value = serde_json::from_str(&response.body).ok()?;
    document["type"]
        .as_str()?
        .strip_prefix("urn:cnf-guard:problem:")
        .map(str::to_owned)
}

fn asks_for_nonce(response: &Response) -> Option<String> {
    let challenge = response.header("www-authenticate")?;
    if response.status != 401 || !challenge.starts_with("DPoP error=\"use_dpop_nonce\"") {
        return None;
    }
    response.header("dpop-nonce").map(str::to_owned)
}

// ---- clients and the attacker ----------------------------------------------------

/// A proof as it went over the wire: what an attacker on the path captures.
#[derive(Clone, Debug)]
pub struct Captured {
    pub authorization: String,
    pub proof: String,
    /// The replica that accepted it.
    pub replica: String,
    /// Which client sent it.
    pub client: usize,
}

/// A DPoP client per RFC 9449: a key, the token bound to it, a fresh proof
/// per request, and the latest nonce the server gave it (§8: on
/// `use_dpop_nonce`, retry once with the nonce in `DPoP-Nonce`).
pub struct DpopClient {
    pub id: usize,
    key: TestKey,
    token: String,
    nonce: Option<String>,
}

/// What one client request came to.
#[derive(Debug)]
pub enum Outcome {
    Accepted(Captured),
    /// Refused after the flow ran out of retries; the last response.
    Refused(Response),
}

impl DpopClient {
    pub fn new(issuer: &Issuer, id: usize) -> DpopClient {
        let key = TestKey::es256();
        let token = issuer.token(
            &format!("fleet-client-{id}"),
            json!({"cnf": {"jkt": key.jkt().to_jkt()}}),
            Duration::from_hours(1),
        );
        DpopClient {
            id,
            key,
            token,
            nonce: None,
        }
    }

    pub fn authorization(&self) -> String {
        format!("DPoP {}", self.token)
    }

    /// A fresh proof for `entry`, with the nonce the client holds.
    pub fn proof(&self, entry: &Entry) -> String {
        let mut body = claims("GET", &entry.htu(), &self.token, now(), &fresh_jti());
        if let Some(nonce) = &self.nonce {
            body["nonce"] = json!(nonce);
        }
        self.key.sign(&self.key.header(), &body)
    }

    /// One client request: a fresh proof; on `use_dpop_nonce` with a
    /// `DPoP-Nonce`, one retry with a fresh proof carrying it.
    pub fn request(&mut self, entry: &Entry, tally: &mut Tally) -> Outcome {
        tally.requests += 1;
        let authorization = self.authorization();
        let mut attempt = 0;
        loop {
            let proof = self.proof(entry);
            let response = get(
                entry,
                &[("authorization", &authorization), ("dpop", &proof)],
            );
            if (200..300).contains(&response.status) {
                assert_eq!(response.body, BODY, "the upstream's answer: {response:?}");
                let replica = replica_of(&response);
                *tally.accepted_by.entry(replica.clone()).or_default() += 1;
                tally.ok += 1;
                break Outcome::Accepted(Captured {
                    authorization,
                    proof,
                    replica,
                    client: self.id,
                });
            }
            if let Some(nonce) = asks_for_nonce(&response) {
                tally.nonce_401s += 1;
                self.nonce = Some(nonce);
                if attempt == 0 {
                    attempt += 1;
                    tally.extra_round_trips += 1;
                    continue;
                }
            }
            tally.failed += 1;
            break Outcome::Refused(response);
        }
    }
}

/// Sends a captured proof (same `Authorization`, same `DPoP`) `times` times
/// through `entry`; returns the replicas that accepted it, in order.
pub fn replay(entry: &Entry, captured: &Captured, times: usize, tally: &mut Tally) -> Vec<String> {
    let mut accepted = Vec::new();
    for _ in 0..times {
        tally.replays_attempted += 1;
        let response = get(
            entry,
            &[
                ("authorization", &captured.authorization),
                ("dpop", &captured.proof),
            ],
        );
        if (200..300).contains(&response.status) {
            assert_eq!(response.body, BODY, "{response:?}");
            tally.replays_accepted += 1;
            accepted.push(replica_of(&response));
        } else {
            let slug = slug(&response).unwrap_or_else(|| "-".to_owned());
            *tally.replay_refusals.entry(slug).or_default() += 1;
        }
    }
    accepted
}

/// A seeded xorshift: the order in which clients take turns, the same on
/// every run.
pub struct Turns(u64);

impl Turns {
    pub fn seeded(seed: u64) -> Turns {
        Turns(seed.max(1))
    }

    pub fn next_below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x % n.max(1) as u64) as usize
    }
}

// ---- figures ---------------------------------------------------------------------

/// What one configuration came to: the line the docs' figures come from.
#[derive(Default, Debug)]
pub struct Tally {
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    /// Retries after `use_dpop_nonce`: round trips a client without the
    /// nonce would not have made.
    pub extra_round_trips: u64,
    /// Every `use_dpop_nonce` 401 (a failed retry is one more).
    pub nonce_401s: u64,
    pub replays_attempted: u64,
    pub replays_accepted: u64,
    /// Refused replays, by problem slug (`-` for a reply that is not one).
    pub replay_refusals: BTreeMap<String, u64>,
    /// Client requests accepted, by replica.
    pub accepted_by: BTreeMap<String, u64>,
}

impl Tally {
    /// Adds another tally's counts (a client that ran on its own thread).
    pub fn absorb(&mut self, other: Tally) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.failed += other.failed;
        self.extra_round_trips += other.extra_round_trips;
        self.nonce_401s += other.nonce_401s;
        self.replays_attempted += other.replays_attempted;
        self.replays_accepted += other.replays_accepted;
        for (slug, n) in other.replay_refusals {
            *self.replay_refusals.entry(slug).or_default() += n;
        }
        for (replica, n) in other.accepted_by {
            *self.accepted_by.entry(replica).or_default() += n;
        }
    }

    pub fn per_100(&self, count: u64) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            count as f64 * 100.0 / self.requests as f64
        }
    }

    /// One line of figures, to stderr.
    pub fn report(&self, configuration: &str, replicas: usize, lb: &str, nonce: &str) {
        let list = |map: &BTreeMap<String, u64>| {
            map.iter()
                .map(|(name, n)| format!("{name}:{n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        eprintln!(
            "fleet-figures: {configuration}: replicas={replicas} lb={lb} nonce={nonce} \
             client_requests={} ok={} failed={} extra_401_round_trips_per_100={:.1} \
             use_dpop_nonce_401s_per_100={:.1} replays_attempted={} replays_accepted={} \
             replay_refusals=[{}] accepted_by=[{}]",
            self.requests,
            self.ok,
            self.failed,
            self.per_100(self.extra_round_trips),
            self.per_100(self.nonce_401s),
            self.replays_attempted,
            self.replays_accepted,
            list(&self.replay_refusals),
            list(&self.accepted_by),
        );
    }
}
