//! A recording HTTP/1.1 upstream: proves which requests got past the filter.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub const BODY: &str = r#"{"upstream":"reached"}"#;

/// Request headers (lower-cased names) by `x-request-id`.
type SeenRequests = Mutex<HashMap<String, Vec<(String, String)>>>;

#[derive(Clone)]
pub struct Upstream {
    pub port: u16,
    seen: Arc<SeenRequests>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let recorder = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let recorder = Arc::clone(&recorder);
                std::thread::spawn(move || serve(stream, &recorder));
            }
        });
        Upstream { port, seen }
    }

    /// Whether a request with this `x-request-id` reached the upstream.
    pub fn saw(&self, request_id: &str) -> bool {
        self.seen.lock().expect("lock").contains_key(request_id)
    }

    /// The value of `name` on the request with this `x-request-id`, if it arrived.
    pub fn header(&self, request_id: &str, name: &str) -> Option<String> {
        let seen = self.seen.lock().expect("lock");
        let headers = seen.get(request_id)?;
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

fn serve(stream: TcpStream, seen: &SeenRequests) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_id = None;
        let mut headers = Vec::new();
        let mut content_length = 0usize;
        let mut delay_ms = 0u64;
        let mut line = String::new();
        // Request line, then headers up to the blank line.
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        // The request target, recorded as `:path` so tests can read its query.
        if let Some(target) = line.split_whitespace().nth(1) {
            headers.push((":path".to_owned(), target.to_owned()));
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                headers.push((name.clone(), value.trim().to_owned()));
                match name.as_str() {
                    "x-request-id" => request_id = Some(value.trim().to_owned()),
                    "content-length" => content_length = value.trim().parse().unwrap_or(0),
                    // Lets a test keep a request in flight for a while.
                    "x-upstream-delay-ms" => delay_ms = value.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; content_length];
        if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
            return;
        }
        if let Some(id) = request_id {
            seen.lock().expect("lock").insert(id, headers);
        }
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
            BODY.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
