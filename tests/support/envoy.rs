//! Starts, queries and stops a real Envoy. Every Envoy started here is killed
//! when its handle drops.

use super::client::admin_get;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `ENVOY_BIN`, else the one `make` installs into `.venv`.
pub fn envoy_bin() -> PathBuf {
    match std::env::var_os("ENVOY_BIN") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => super::repo_root().join(".venv/bin/envoy"),
    }
}

pub struct Envoy {
    child: Child,
    pub admin_port: u16,
    pub listeners: HashMap<String, u16>,
    log_path: PathBuf,
}

impl Envoy {
    /// Starts Envoy on `config` (in `dir`) and waits until every listener is bound.
    pub fn start(dir: &Path, config: &str, concurrency: u32) -> Envoy {
        let config_path = dir.join("envoy.yaml");
        std::fs::write(&config_path, config).expect("write config");
        let admin_path = dir.join("admin-address");
        let _ = std::fs::remove_file(&admin_path);
        let log_path = dir.join("envoy.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(envoy_bin())
            .current_dir(dir)
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args([
                "--use-dynamic-base-id",
                // Access logs are read back by tests: flush them often (the
                // default is every 10 s).
                "--file-flush-interval-msec",
                "200",
                "--concurrency",
                &concurrency.to_string(),
                "-l",
                "info",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", envoy_bin().display()));
        let mut envoy = Envoy {
            child,
            admin_port: 0,
            listeners: HashMap::new(),
            log_path,
        };
        envoy.wait_ready();
        envoy
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("envoy exited ({status}) during start:\n{}", self.log());
            }
            if self.admin_port == 0 {
                if let Ok(address) =
                    std::fs::read_to_string(self.log_path.with_file_name("admin-address"))
                {
                    self.admin_port = address
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                }
            }
            if self.admin_port != 0 && admin_get(self.admin_port, "/ready").trim() == "LIVE" {
                self.listeners =
                    listener_ports(&admin_get(self.admin_port, "/listeners?format=json"));
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("envoy did not become ready:\n{}", self.log());
    }

    /// Pins each worker thread (`wrk:worker_<n>`) to a CPU of its own, with
    /// `taskset`, until the returned guard drops (which restores each
    /// thread's previous CPU list). For tests that need the workers to run
    /// truly in parallel. Fails (changing nothing) where there are fewer CPUs
    /// than workers or no `taskset`.
    pub fn pin_workers(&self) -> Result<PinnedWorkers, String> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .map_err(|e| format!("cannot list Envoy's threads: {e}"))?;
        let mut workers: Vec<(u32, String)> = tasks
            .flatten()
            .filter_map(|task| {
                let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
                let worker = name.trim().strip_prefix("wrk:worker_")?.parse().ok()?;
                Some((worker, task.file_name().to_string_lossy().into_owned()))
            })
            .collect();
        workers.sort();
        let mut pinned = PinnedWorkers {
            restore: Vec::new(),
        };
        for (worker, thread) in &workers {
            let current = taskset(&["-p", "-c", thread])?;
            let list = current
                .rsplit(": ")
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned();
            let cpus = cpu_list(&list);
            if cpus.len() < workers.len() {
                return Err(format!("{} workers, CPUs {list}", workers.len()));
            }
            let cpu = cpus[*worker as usize % cpus.len()].to_string();
            taskset(&["-p", "-c", &cpu, thread])?;
            pinned.restore.push((thread.clone(), list, cpu));
        }
        if pinned.restore.is_empty() {
            return Err("no worker threads found".to_owned());
        }
        Ok(pinned)
    }

    pub fn port(&self, listener: &str) -> u16 {
        *self
            .listeners
            .get(listener)
            .unwrap_or_else(|| panic!("no listener {listener}"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The access-log line of the request with this `x-request-id`, once
    /// Envoy has flushed it (every 200 ms here, see `start`).
    pub fn access_log_line(&self, request_id: &str) -> String {
        let path = self.log_path.with_file_name("access.log");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            if let Some(line) = log
                .lines()
                .find(|line| line.starts_with(&format!("{request_id} ")))
            {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no access-log line for {request_id} in {}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A stat's current value from `/stats`, if Envoy has it.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let stats = admin_get(
            self.admin_port,
            &format!("/stats?filter=^{}$", name.replace('.', "\\.")),
        );
        stats.lines().find_map(|line| {
            let (stat, value) = line.split_once(": ")?;
            (stat == name).then(|| value.trim().parse().ok()).flatten()
        })
    }

    /// Waits for a counter the filter flushes on its timer to reach `expected`.
    pub fn wait_for_stat(&self, name: &str, expected: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let value = self.stat(name).unwrap_or(0);
            if value >= expected || Instant::now() > deadline {
                return value;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for a log line containing `needle` (Envoy writes logs asynchronously).
    pub fn wait_for_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Worker threads pinned by `Envoy::pin_workers`; dropping it unpins them.
pub struct PinnedWorkers {
    /// (thread id, CPU list before, CPU now).
    restore: Vec<(String, String, String)>,
}

impl std::fmt::Display for PinnedWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cpus: Vec<&str> = self
            .restore
            .iter()
            .map(|(_, _, cpu)| cpu.as_str())
            .collect();
        write!(f, "to CPUs {}", cpus.join(", "))
    }
}

impl Drop for PinnedWorkers {
    fn drop(&mut self) {
        for (thread, list, _) in &self.restore {
            let _ = taskset(&["-p", "-c", list, thread]);
        }
    }
}

fn taskset(args: &[&str]) -> Result<String, String> {
    let output = Command::new("taskset")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run taskset: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "taskset {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `0,2-3` → [0, 2, 3].
fn cpu_list(list: &str) -> Vec<u32> {
    list.split(',')
        .filter_map(|part| match part.split_once('-') {
            Some((from, to)) => {
                Some((from.trim().parse().ok()?..=to.trim().parse().ok()?).collect())
            }
            None => Some(vec![part.trim().parse().ok()?]),
        })
        .flatten()
        .collect()
}

fn listener_ports(json: &str) -> HashMap<String, u16> {
    let value: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let mut ports = HashMap::new();
    for listener in value["listener_statuses"].as_array().into_iter().flatten() {
        let name = listener["name"].as_str().unwrap_or_default().to_owned();
        if let Some(port) = listener["local_address"]["socket_address"]["port_value"].as_u64() {
            ports.insert(name, port as u16);
        }
    }
    ports
}

/// A port no other test in this process was given. Envoy binds listeners with
/// SO_REUSEPORT, so two example Envoys handed the same free port would both
/// bind it and share its connections.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut handed_out = HANDED_OUT.lock().expect("lock");
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// `envoy --mode validate` on a config file, run in `dir`.
pub fn validate(dir: &Path, config_path: &Path) -> Output {
    Command::new(envoy_bin())
        .current_dir(dir)
        .args([
            "--mode",
            "validate",
            "--use-dynamic-base-id",
            "-l",
            "info",
            "-c",
        ])
        .arg(config_path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", envoy_bin().display()))
}
