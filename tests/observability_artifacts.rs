//! The operators' view in deploy/observability/ against what the filter
//! exports: the Grafana dashboard queries only series the filter exports and
//! shows every one of them; the Prometheus rules pass `promtool check rules`,
//! their unit tests, and label every exported counter correctly; and an alert
//! goes pending then firing in a real Prometheus scraping a real Envoy.
//!
//! The exported series are derived from the code (`Counter::all()` and
//! `Counter::metric_name`), so renaming a counter or adding a problem type
//! fails here until the dashboard and rules follow.
//!
//! promtool and prometheus come from Debian's prometheus package (`make
//! observability-tools`, a prerequisite of `make test`). Without them these
//! tests say so and pass, except under `make test` or in CI
//! (`CNF_GUARD_REQUIRE_PROMETHEUS` or `CI` set), where they fail.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use cnf_guard::reply::stats::Counter;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::envoy::{free_port, Envoy};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn observability_dir() -> PathBuf {
    repo_root().join("deploy/observability")
}

/// The name Envoy gives a counter at `/stats/prometheus`: the `wasmcustom.`
/// prefix dropped and every `.` made `_` (checked against Envoy 1.40; the
/// live test below scrapes them).
fn prometheus_name(counter: Counter, stat_prefix: &str) -> String {
    counter.metric_name(stat_prefix).replace('.', "_")
}

fn exported_series(stat_prefix: &str) -> BTreeSet<String> {
    Counter::all()
        .map(|counter| prometheus_name(counter, stat_prefix))
        .collect()
}

/// What the recording rules should make of a counter: its `outcome` label
/// and, for denials and would-be denials, its `slug`.
fn outcome_labels(counter: Counter) -> (&'static str, Option<&'static str>) {
    match counter {
        Counter::Allowed => ("allowed", None),
        Counter::AllowedUnbound => ("allowed_unbound", None),
        Counter::Skipped => ("skipped", None),
        Counter::ForwardedCertificateUntrusted => ("forwarded_certificate_untrusted", None),
        Counter::ReplayStoreUnavailable => ("dpop_replay_store_unavailable", None),
        Counter::ReplayStoreFallback => ("dpop_replay_store_fallback", None),
        Counter::Denied(kind) => ("denied", Some(kind.slug())),
        Counter::DryRun(kind) => ("would_deny", Some(kind.slug())),
    }
}

// ---- the tools ------------------------------------------------------------------

fn tools_required() -> bool {
    ["CNF_GUARD_REQUIRE_PROMETHEUS", "CI"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The tool, or `None` after saying why the test is skipped; a panic where
/// the tool must be there.
fn tool(name: &str) -> Option<PathBuf> {
    if let Some(path) = on_path(name) {
        return Some(path);
    }
    let message = format!(
        "`{name}` is not on PATH: install it with `make observability-tools` (Debian's prometheus package)"
    );
    assert!(
        !tools_required(),
        "{message}; required here (CNF_GUARD_REQUIRE_PROMETHEUS or CI is set)"
    );
    // Past the test harness's capture, so that a skip is seen.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {message}");
    None
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

// ---- the dashboard ----------------------------------------------------------------

fn dashboard() -> Value {
    let path = observability_dir().join("cnf-guard-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("dashboard");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every panel, those inside rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, into: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            into.push(panel);
            walk(&panel["panels"], into);
        }
    }
    let mut all = Vec::new();
    walk(&dashboard["panels"], &mut all);
    all
}

fn template_variable<'a>(dashboard: &'a Value, name: &str) -> &'a Value {
    dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .find(|variable| variable["name"] == name)
        .unwrap_or_else(|| panic!("no template variable `{name}`"))
}

/// The identifiers in a PromQL expression outside quoted strings and
/// `$variables`: metric names, functions, label names, keywords.
fn identifiers(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut chars = expr.chars().peekable();
    let mut current = String::new();
    let mut in_variable = false;
    while let Some(c) = chars.next() {
        if c == '"' || c == '\'' {
            for inner in chars.by_ref() {
                if inner == c {
                    break;
                }
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            current.push(c);
            continue;
        }
        if !current.is_empty() && !in_variable {
            found.push(std::mem::take(&mut current));
        }
        current.clear();
        in_variable = c == '$';
    }
    if !current.is_empty() && !in_variable {
        found.push(current);
    }
    found
}

/// Each query of the dashboard (panel targets and template variables) with
/// `${metric_prefix}` replaced by `prefix`.
fn queries(dashboard: &Value, prefix: &str) -> Vec<(String, String, String)> {
    let mut all = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a target has an expr");
            all.push((
                panel["title"].as_str().unwrap_or_default().to_owned(),
                target["legendFormat"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                expr.replace("${metric_prefix}", prefix),
            ));
        }
    }
    for name in ["job", "instance"] {
        let query = template_variable(dashboard, name)["query"]["query"]
            .as_str()
            .expect("variable query");
        all.push((
            format!("variable {name}"),
            String::new(),
            query.replace("${metric_prefix}", prefix),
        ));
    }
    all
}

/// Envoy's own series a query may use besides the filter's.
const ENVOY_SERIES: &[&str] = &["envoy_server_live"];

/// Checks every query against the exported series; returns the series that
/// some query shows on its own (one series, one line on a panel).
fn check_queries(dashboard: &Value, prefix: &str, exported: &BTreeSet<String>) -> BTreeSet<String> {
    let mut alone = BTreeSet::new();
    for (title, legend, expr) in queries(dashboard, prefix) {
        let names: BTreeSet<String> = identifiers(&expr)
            .into_iter()
            .filter(|name| name.starts_with("cnf_guard") || name.starts_with("envoy_"))
            .collect();
        for name in &names {
            assert!(
                exported.contains(name) || ENVOY_SERIES.contains(&name.as_str()),
                "{title} / {legend}: `{name}` is not a series the filter exports \
                 (with metric prefix {prefix:?}): {expr}"
            );
        }
        let own: Vec<&String> = names
            .iter()
            .filter(|name| exported.contains(*name))
            .collect();
        match own[..] {
            [] => {
                panic!("{title} / {legend}: the query names no series the filter exports: {expr}")
            }
            [only] => {
                alone.insert(only.clone());
            }
            _ => {}
        }
    }
    alone
}

#[test]
fn dashboard_queries_name_only_series_the_filter_exports_and_all_of_them() {
    let dashboard = dashboard();
    // The default metric prefix is the unprefixed counters' own.
    let allowed = prometheus_name(Counter::Allowed, "");
    let default_prefix = allowed.strip_suffix("allowed").expect("…allowed");
    let variable = template_variable(&dashboard, "metric_prefix");
    assert_eq!(variable["type"], "textbox");
    assert_eq!(variable["query"], default_prefix);
    assert_eq!(variable["current"]["value"], default_prefix);

    let exported = exported_series("");
    let shown = check_queries(&dashboard, default_prefix, &exported);
    let missing: Vec<_> = exported.difference(&shown).collect();
    assert!(
        missing.is_empty(),
        "exported series the dashboard does not show on a line of their own: {missing:?}"
    );

    // With a stat_prefix, the operator types the prefixed names' prefix.
    let edge_prefix = prometheus_name(Counter::Allowed, "edge");
    let edge_prefix = edge_prefix.strip_suffix("allowed").expect("…allowed");
    let edge = exported_series("edge");
    assert_eq!(check_queries(&dashboard, edge_prefix, &edge), edge);
}

#[test]
fn dashboard_panels_are_well_formed() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "cnf-guard");
    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("a panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("a panel has an id")),
            "{title}: duplicate id"
        );
        assert!(titles.insert(title.to_owned()), "{title}: duplicate title");
        for field in ["x", "y", "w", "h"] {
            assert!(panel["gridPos"][field].is_u64(), "{title}: gridPos.{field}");
        }
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no queries");
        let mut refs = BTreeSet::new();
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            assert!(
                refs.insert(target["refId"].as_str().expect("refId")),
                "{title}: refId"
            );
            // A query of one denial or would-be denial counter is labelled with its slug.
            let expr = target["expr"].as_str().expect("expr");
            let counters: Vec<Counter> = Counter::all()
                .filter(|counter| {
                    identifiers(&expr.replace("${metric_prefix}", "cnf_guard_"))
                        .contains(&prometheus_name(*counter, ""))
                })
                .collect();
            if let [Counter::Denied(kind) | Counter::DryRun(kind)] = counters[..] {
                assert_eq!(target["legendFormat"], kind.slug(), "{title}: {expr}");
            }
        }
    }
}

// ---- the rules ---------------------------------------------------------------------

fn rules_text() -> String {
    std::fs::read_to_string(observability_dir().join("cnf-guard-rules.yaml")).expect("rules")
}

fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .map(|name| name.trim().to_owned())
        .collect()
}

#[test]
fn every_alert_has_unit_tests_and_an_operating_section() {
    let rules = rules_text();
    let tests = std::fs::read_to_string(observability_dir().join("cnf-guard-rules.test.yaml"))
        .expect("rules tests");
    let operating = std::fs::read_to_string(repo_root().join("docs/operating.md")).expect("docs");
    let alerts = alert_names(&rules);
    assert!(alerts.len() >= 6, "{alerts:?}");
    for alert in alerts {
        // Each alert is evaluated at least twice: once firing, once not.
        let cases = tests.matches(&format!("alertname: {alert}\n")).count();
        assert!(
            cases >= 2,
            "{alert}: {cases} test case(s) in cnf-guard-rules.test.yaml"
        );
        assert!(
            operating.contains(&format!("\n### {alert}\n")),
            "{alert}: no `### {alert}` section in docs/operating.md"
        );
        assert!(
            rules.contains(&format!(
                "runbook_url: docs/operating.md#{}\n",
                alert.to_lowercase()
            )),
            "{alert}: its runbook_url is not its docs/operating.md section"
        );
    }
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let dir = observability_dir();
    let check = run(Command::new(&promtool).current_dir(&dir).args([
        "check",
        "rules",
        "cnf-guard-rules.yaml",
    ]));
    assert!(check.contains("SUCCESS"), "{check}");
    let tests = run(Command::new(&promtool).current_dir(&dir).args([
        "test",
        "rules",
        "cnf-guard-rules.test.yaml",
    ]));
    assert!(tests.contains("SUCCESS"), "{tests}");
}

/// The recording rules relabel each exported counter, for no prefix and for
/// prefixes with and without `_`, to its outcome, its slug (with hyphens, as
/// in the problem pages and the access log) and its stat_prefix.
#[test]
fn recording_rules_label_every_exported_counter() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut input = String::new();
    let mut expected = String::new();
    for stat_prefix in ["", "edge", "my_edge"] {
        for (index, counter) in Counter::all().enumerate() {
            let value = index + 1;
            input.push_str(&format!(
                "  - series: '{}{{job=\"envoy\", instance=\"a\"}}'\n    values: '{value}x5'\n",
                prometheus_name(counter, stat_prefix)
            ));
            let (outcome, slug) = outcome_labels(counter);
            let mut labels = format!("job=\"envoy\", instance=\"a\", outcome=\"{outcome}\"");
            if let Some(slug) = slug {
                labels.push_str(&format!(", slug=\"{slug}\""));
            }
            if !stat_prefix.is_empty() {
                labels.push_str(&format!(", stat_prefix=\"{stat_prefix}\""));
            }
            expected.push_str(&format!(
                "    - labels: 'cnf_guard:outcomes:counter{{{labels}}}'\n      value: {value}\n"
            ));
        }
    }
    let rules = observability_dir().join("cnf-guard-rules.yaml");
    let test = format!(
        "rule_files:\n- {rules}\nevaluation_interval: 1m\ntests:\n- interval: 1m\n  input_series:\n{input}  \
         promql_expr_test:\n  - expr: cnf_guard:outcomes:counter\n    eval_time: 3m\n    exp_samples:\n{expected}",
        rules = rules.display()
    );
    let path = dir.path().join("labels.test.yaml");
    std::fs::write(&path, test).expect("write");
    run(Command::new(promtool).args(["test", "rules"]).arg(&path));
}

// ---- a real Prometheus scraping a real Envoy --------------------------------------

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain HTTP/1.1 GET; the status and the body.
fn get(port: u16, target: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// cnf-guard on a plain HTTP listener: `/health` is skipped by a rule, every
/// other request has no verified token and is denied `authentication-failed`.
fn envoy_bootstrap(wasm: &Path) -> String {
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: plain
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: plain
          # Close at once after `connection: close`: the test reads to EOF.
          delayed_close_timeout: 0s
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                direct_response: {{status: 200, body: {{inline_string: "upstream\n"}}}}
          http_filters:
{cnf_guard}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#,
        cnf_guard = support::bootstrap::cnf_guard_filter(
            "cnf-guard",
            r#"'{"rules": [{"name": "health", "match": {"path": {"exact": "/health"}}, "skip": true}]}'"#,
            wasm
        )
    )
}

/// The state of each `CnfGuardDenialRateHigh` alert Prometheus holds.
fn denial_alert_states(prometheus: u16) -> Vec<(String, String)> {
    let Some((200, body)) = get(prometheus, "/api/v1/alerts") else {
        return Vec::new();
    };
    let document: Value = serde_json::from_str(&body).expect("alerts JSON");
    document["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|alert| alert["labels"]["alertname"] == "CnfGuardDenialRateHigh")
        .map(|alert| {
            (
                alert["labels"]["slug"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                alert["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Prometheus scrapes Envoy's `/stats/prometheus` every second with the
/// shipped rules (only `CnfGuardDenialRateHigh`'s `for` cut from 10m to 5s);
/// denied traffic makes that alert pending, then firing, for the slug the
/// filter denied with.
#[test]
fn a_denial_alert_goes_pending_then_firing_against_a_real_envoy() {
    let Some(prometheus_bin) = tool("prometheus") else {
        return;
    };
    let envoy_bin = support::envoy::envoy_bin();
    let (true, Some(wasm)) = (envoy_bin.is_file(), support::built_wasm()) else {
        let message = format!(
            "no Envoy at {} or no built module: `make test` builds and installs both",
            envoy_bin.display()
        );
        assert!(!tools_required(), "{message}");
        let _ = writeln!(std::io::stderr(), "SKIPPED: {message}");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let envoy = Envoy::start(dir.path(), &envoy_bootstrap(&wasm), 1);
    let (admin, listener, web) = (envoy.admin_port, envoy.port("plain"), free_port());

    let rules = rules_text();
    let fast = "    for: 5s\n";
    let marker = "- alert: CnfGuardDenialRateHigh\n";
    let (before, after) = rules.split_once(marker).expect("the alert");
    let after = after.replacen("    for: 10m\n", fast, 1);
    std::fs::write(
        dir.path().join("rules.yaml"),
        format!("{before}{marker}{after}"),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [rules.yaml]\n\
             scrape_configs:\n- job_name: envoy\n  metrics_path: /stats/prometheus\n  \
             static_configs: [{{targets: ['127.0.0.1:{admin}']}}]\n"
        ),
    )
    .expect("write");
    let prometheus_log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
    let _prometheus = Process(
        Command::new(prometheus_bin)
            .current_dir(dir.path())
            .arg("--config.file=prometheus.yml")
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(Stdio::null())
            .stderr(prometheus_log)
            .spawn()
            .expect("start Prometheus"),
    );
    // Two scrapes of the idle counters first: the rate starts from there.
    wait_for(
        "Prometheus to scrape cnf-guard's counters",
        Duration::from_secs(30),
        || {
            get(
            web,
            "/api/v1/query?query=count_over_time(cnf_guard_denied_authentication_failed%5B1m%5D)",
        )
        .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
        .and_then(|document| document["data"]["result"][0]["value"][1].as_str().map(str::to_owned))
        .and_then(|count| count.parse::<u32>().ok())
        .is_some_and(|count| count >= 2)
        },
    );
    assert!(denial_alert_states(web).is_empty());

    for _ in 0..10 {
        assert_eq!(
            get(listener, "/health").map(|(status, _)| status),
            Some(200)
        );
    }
    for _ in 0..100 {
        assert_eq!(
            get(listener, "/orders/7").map(|(status, _)| status),
            Some(401)
        );
    }

    let mut seen: Vec<String> = Vec::new();
    wait_for("the alert to fire", Duration::from_secs(60), || {
        for (slug, state) in denial_alert_states(web) {
            assert_eq!(slug, "authentication-failed");
            if seen.last() != Some(&state) {
                seen.push(state);
            }
        }
        seen.last().is_some_and(|state| state == "firing")
    });
    assert_eq!(seen, ["pending", "firing"]);
}
