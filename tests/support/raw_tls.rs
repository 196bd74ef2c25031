//! A raw HTTP/1.1-over-TLS client (rustls, std sockets) for what curl cannot
//! do: open connections first and write on them later, back to back with no
//! delay (races between Envoy workers), and send header lines exactly as
//! written, repeated names included, in the order given.
//!
//! Answers are parsed into the same `Response` as the curl client's, so the
//! suite's assertions apply unchanged.

use super::client::Response;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where the client finds `ca.pem` and `client-N.{pem,key}`, as `Client` does.
#[derive(Clone)]
pub struct RawClient {
    material: PathBuf,
}

/// One request, written as is: the request line, `host`, `x-request-id`
/// (unless given), then `headers` in order.
pub struct RawRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: Vec<(&'a str, String)>,
}

impl<'a> RawRequest<'a> {
    pub fn get(path: &'a str) -> RawRequest<'a> {
        RawRequest {
            method: "GET",
            path,
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// The request's bytes for `localhost:port`, and its `x-request-id`.
    pub fn encode(&self, port: u16) -> (Vec<u8>, String) {
        let request_id = self
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("x-request-id"))
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| {
                format!(
                    "raw-{}-{}",
                    std::process::id(),
                    NEXT_ID.fetch_add(1, Ordering::Relaxed)
                )
            });
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: localhost:{port}\r\n",
            self.method, self.path
        );
        if !self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("x-request-id"))
        {
            head.push_str(&format!("x-request-id: {request_id}\r\n"));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        (head.into_bytes(), request_id)
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A TLS connection whose handshake is complete.
pub struct RawConnection {
    tls: ClientConnection,
    socket: TcpStream,
    /// `x-request-id`s of requests written and not yet answered, oldest first.
    pending: Vec<String>,
    /// Plaintext read past the last parsed response.
    buffered: Vec<u8>,
}

impl RawClient {
    pub fn new(material: &Path) -> RawClient {
        RawClient {
            material: material.to_owned(),
        }
    }

    fn config(&self, certificate: Option<u8>) -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.material.join("ca.pem")).expect("ca.pem") {
            roots
                .add(cert.expect("CA certificate"))
                .expect("trust anchor");
        }
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
        let mut config = match certificate {
            Some(n) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_file_iter(self.material.join(format!("client-{n}.pem")))
                        .expect("client certificate")
                        .map(|cert| cert.expect("PEM certificate"))
                        .collect();
                let key =
                    PrivateKeyDer::from_pem_file(self.material.join(format!("client-{n}.key")))
                        .expect("client key");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client auth")
            }
            None => builder.with_no_client_auth(),
        };
        // HTTP/1.1 only: the point is writing header lines as they are.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Connects to `localhost:port` presenting client certificate `n` (if
    /// any) and completes the TLS handshake before returning.
    pub fn connect(&self, port: u16, certificate: Option<u8>) -> RawConnection {
        let server = ServerName::try_from("localhost").expect("server name");
        let mut tls = ClientConnection::new(self.config(certificate), server).expect("tls client");
        let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        socket.set_nodelay(true).expect("nodelay");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        while tls.is_handshaking() {
            tls.complete_io(&mut socket).expect("TLS handshake");
        }
        RawConnection {
            tls,
            socket,
            pending: Vec::new(),
            buffered: Vec::new(),
        }
    }

    /// One request on a fresh connection, and its answer.
    pub fn send(&self, port: u16, certificate: Option<u8>, request: &RawRequest<'_>) -> Response {
        let mut connection = self.connect(port, certificate);
        connection.write(port, request);
        connection.flush();
        connection.read_response()
    }
}

impl RawConnection {
    /// Encrypts the request into the connection's outgoing buffer; nothing is
    /// sent until `flush`, so several connections can be flushed back to back.
    pub fn write(&mut self, port: u16, request: &RawRequest<'_>) {
        let (bytes, request_id) = request.encode(port);
        self.tls.writer().write_all(&bytes).expect("write request");
        self.pending.push(request_id);
    }

    /// Sends whatever `write` queued.
    pub fn flush(&mut self) {
        while self.tls.wants_write() {
            self.tls.write_tls(&mut self.socket).expect("send");
        }
    }

    /// Reads one HTTP/1.1 response (`content-length`, chunked, or up to close).
    pub fn read_response(&mut self) -> Response {
        let request_id = if self.pending.is_empty() {
            String::new()
        } else {
            self.pending.remove(0)
        };
        let head_end = loop {
            if let Some(end) = find(&self.buffered, b"\r\n\r\n") {
                break end;
            }
            assert!(
                self.fill(),
                "connection closed before a response head: {:?}",
                String::from_utf8_lossy(&self.buffered)
            );
        };
        let head = String::from_utf8_lossy(&self.buffered[..head_end]).into_owned();
        let mut rest = self.buffered.split_off(head_end + 4);
        self.buffered.clear();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.split_whitespace();
        let version = parts.next().unwrap_or_default().to_owned();
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {head:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let body = if let Some(length) = header("content-length") {
            let length: usize = length.parse().expect("content-length");
            while rest.len() < length {
                std::mem::swap(&mut rest, &mut self.buffered);
                assert!(self.fill(), "connection closed inside a body");
                std::mem::swap(&mut rest, &mut self.buffered);
            }
            self.buffered = rest.split_off(length);
            rest
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            self.buffered = rest;
            self.read_chunked()
        } else {
            self.buffered = rest;
            while self.fill() {}
            std::mem::take(&mut self.buffered)
        };
        Response {
            version,
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            request_id,
        }
    }

    fn read_chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(end) = find(&self.buffered, b"\r\n") {
                    break end;
                }
                assert!(self.fill(), "connection closed inside a chunk size");
            };
            let size_text = String::from_utf8_lossy(&self.buffered[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .expect("chunk size");
            self.buffered.drain(..line_end + 2);
            while self.buffered.len() < size + 2 {
                assert!(self.fill(), "connection closed inside a chunk");
            }
            body.extend(self.buffered.drain(..size));
            self.buffered.drain(..2);
            if size == 0 {
                return body;
            }
        }
    }

    /// Reads more plaintext into `buffered`; false at the end of the stream.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.tls.reader().read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buffered.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: the end, as far as HTTP goes.
                Err(error) if error.kind() == ErrorKind::UnexpectedEof => return false,
                Err(error) => panic!("TLS read: {error}"),
            }
            match self.tls.read_tls(&mut self.socket) {
                Ok(0) => {
                    // No more records; whatever was decrypted is all there is.
                    let _ = self.tls.process_new_packets();
                    let mut rest = Vec::new();
                    let _ = self.tls.reader().read_to_end(&mut rest);
                    self.buffered.extend_from_slice(&rest);
                    return !rest.is_empty();
                }
                Ok(_) => {
                    self.tls.process_new_packets().expect("TLS records");
                }
                Err(error) if error.kind() == ErrorKind::ConnectionReset => return false,
                Err(error) => panic!("socket read: {error}"),
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
