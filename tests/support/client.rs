//! Requests through curl: the same tool the README's examples use.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct Response {
    /// `HTTP/1.1` or `HTTP/2`, from the status line.
    pub version: String,
    pub status: u16,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub request_id: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// Where the client finds `ca.pem` and `client-N.{pem,key}`.
#[derive(Clone)]
pub struct Client {
    pub material: PathBuf,
}

pub struct Request<'a> {
    pub port: u16,
    pub path: &'a str,
    /// Which client certificate to present (1 or 2), if any.
    pub certificate: Option<u8>,
    pub method: &'a str,
    /// HTTP/2 (ALPN h2) instead of HTTP/1.1.
    pub http2: bool,
    pub headers: Vec<(&'a str, String)>,
}

impl<'a> Request<'a> {
    pub fn new(port: u16) -> Request<'a> {
        Request {
            port,
            path: "/",
            certificate: Some(1),
            method: "GET",
            http2: false,
            headers: Vec::new(),
        }
    }
    pub fn path(mut self, path: &'a str) -> Self {
        self.path = path;
        self
    }
    pub fn certificate(mut self, certificate: Option<u8>) -> Self {
        self.certificate = certificate;
        self
    }
    pub fn http2(mut self, http2: bool) -> Self {
        self.http2 = http2;
        self
    }
    pub fn method(mut self, method: &'a str) -> Self {
        self.method = method;
        self
    }
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }
    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Client {
    /// Sends `request` with a fresh `x-request-id` (unless one is given).
    pub fn send(&self, request: Request<'_>) -> Response {
        let request_id = request
            .headers
            .iter()
            .find(|(n, _)| *n == "x-request-id")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| {
                format!(
                    "test-{}-{}",
                    std::process::id(),
                    NEXT_ID.fetch_add(1, Ordering::Relaxed)
                )
            });
        let mut command = Command::new("curl");
        command
            .args(["-sS", "-i", "--max-time", "10", "--cacert"])
            .arg(self.material.join("ca.pem"))
            .arg("--resolve")
            .arg(format!("localhost:{}:127.0.0.1", request.port))
            .arg("-H")
            .arg(format!("x-request-id: {request_id}"))
            .args(["-X", request.method])
            .arg(if request.http2 {
                "--http2"
            } else {
                "--http1.1"
            });
        if let Some(n) = request.certificate {
            command
                .arg("--cert")
                .arg(self.material.join(format!("client-{n}.pem")))
                .arg("--key")
                .arg(self.material.join(format!("client-{n}.key")));
        }
        for (name, value) in request.headers.iter().filter(|(n, _)| *n != "x-request-id") {
            command.arg("-H").arg(format!("{name}: {value}"));
        }
        command.arg(format!(
            "https://localhost:{}{}",
            request.port, request.path
        ));
        let output = command.output().expect("run curl");
        assert!(
            output.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        parse(&String::from_utf8_lossy(&output.stdout), request_id)
    }
}

fn parse(raw: &str, request_id: String) -> Response {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let version = status_line
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    let status = Some(status_line)
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response {
        version,
        status,
        headers,
        body: body.to_owned(),
        request_id,
    }
}

/// GET over plain HTTP (the admin interface).
pub fn admin_get(port: u16, path: &str) -> String {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
