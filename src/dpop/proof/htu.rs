//! The `htu` comparison (RFC 9449 §4.3 check 9): the HTTP URI without query
//! and fragment, compared after RFC 3986 §6.2.2 syntax-based and §6.2.3
//! scheme-based normalisation.

/// A normalised `scheme://host[:port]/path`, or why the text is not one.
pub fn normalize(uri: &str) -> Result<String, &'static str> {
    let uri = uri.split(['?', '#']).next().ok_or("the URI is empty")?;
    let (scheme, rest) = uri.split_once("://").ok_or("the URI has no scheme")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return Err("the URI scheme is not http or https"),
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    let origin = normalize_authority(authority, default_port)?;
    let path = remove_dot_segments(&normalize_percent_encoding(path)?);
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    Ok(format!("{scheme}://{origin}{path}"))
}

/// Normalises an origin (`scheme://host[:port]`) as configured for
/// `external_origin`; a path, query or fragment is not allowed.
pub fn normalize_origin(origin: &str) -> Result<String, &'static str> {
    let (_, rest) = origin.split_once("://").ok_or("the origin has no scheme")?;
    if origin.contains(['?', '#']) || rest.trim_end_matches('/').contains('/') {
        return Err("an origin has no path, query or fragment");
    }
    Ok(normalize(origin)?.trim_end_matches('/').to_owned())
}

fn normalize_authority(authority: &str, default_port: &str) -> Result<String, &'static str> {
    if authority.contains('@') {
        return Err("the URI carries user information");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("the IPv6 host is not closed")?;
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err("the bracketed host is not an IPv6 address");
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("junk after the IPv6 host")?),
        };
        (format!("[{}]", host.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b))
        {
            return Err("the URI host is empty or has characters a host cannot have");
        }
        (host.to_ascii_lowercase(), port)
    };
    match port {
        None | Some("") => Ok(host),
        Some(port) if !port.bytes().all(|b| b.is_ascii_digit()) => {
            Err("the URI port is not a number")
        }
        Some(port) => {
            let port = port.trim_start_matches('0');
            if port == default_port.trim_start_matches('0') {
                Ok(host)
            } else if port.is_empty() {
                Ok(format!("{host}:0"))
            } else {
                Ok(format!("{host}:{port}"))
            }
        }
    }
}

/// Upper-case hex in escapes; unreserved characters decoded (RFC 3986 §6.2.2.2).
fn normalize_percent_encoding(path: &str) -> Result<String, &'static str> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let hex = bytes
                .get(index + 1..index + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("the URI path has a broken percent-escape")?;
            if hex.is_ascii_alphanumeric() || b"-._~".contains(&hex) {
                out.push(char::from(hex));
            } else {
                out.push_str(&format!("%{hex:02X}"));
            }
            index += 3;
        } else if byte.is_ascii_graphic() {
            out.push(char::from(byte));
            index += 1;
        } else {
            return Err("the URI path has a character a URI cannot have");
        }
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 for an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (index, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {
                if index == last {
                    output.push("");
                }
            }
            ".." => {
                output.pop();
                if index == last {
                    output.push("");
                }
            }
            segment => output.push(segment),
        }
    }
    if segments.is_empty() {
        return String::new();
    }
    format!("/{}", output.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equivalent_spellings_normalise_alike() {
        for uri in [
            "https://api.example.com/orders/7",
            "HTTPS://API.Example.COM/orders/7",
            "https://api.example.com:443/orders/7",
            "https://api.example.com/orders/7?x=1#frag",
            "https://api.example.com/orders/./7",
            "https://api.example.com/orders/a/../7",
            "https://api.example.com/%6Frders/7",
        ] {
            assert_eq!(
                normalize(uri).as_deref(),
                Ok("https://api.example.com/orders/7"),
                "{uri}"
            );
        }
        assert_eq!(
            normalize("http://h:80").as_deref(),
            Ok("http://h/"),
            "an empty path is /"
        );
        assert_eq!(
            normalize("https://h/a%2fb").as_deref(),
            Ok("https://h/a%2Fb")
        );
        assert_eq!(
            normalize("https://[::1]:8443/x").as_deref(),
            Ok("https://[::1]:8443/x")
        );
    }

    #[test]
    fn different_resources_stay_different() {
        let base = normalize("https://api.example.com/orders/7").unwrap();
        for uri in [
            "http://api.example.com/orders/7",
            "https://api.example.com:8443/orders/7",
            "https://api.example.org/orders/7",
            "https://api.example.com/orders/7/",
            "https://api.example.com/Orders/7",
            "https://api.example.com/orders%2F7",
        ] {
            assert_ne!(normalize(uri).unwrap(), base, "{uri}");
        }
    }

    #[test]
    fn non_http_uris_are_refused() {
        for uri in [
            "/orders/7",
            "ftp://h/x",
            "https://user@h/x",
            "https://h:abc/x",
            "https:///x",
            "https://h/a b",
            "https://h/%zz",
            "https://[::1/x",
            "https://h:1:2/x",
            "https://h[1]/x",
            "https://[zz]/x",
        ] {
            assert!(normalize(uri).is_err(), "{uri}");
        }
    }

    #[test]
    fn origins() {
        assert_eq!(
            normalize_origin("HTTPS://Api.Example.com:443").as_deref(),
            Ok("https://api.example.com")
        );
        assert_eq!(
            normalize_origin("https://api.example.com/").as_deref(),
            Ok("https://api.example.com")
        );
        for bad in [
            "https://api.example.com/v1",
            "https://h?x",
            "api.example.com",
        ] {
            assert!(normalize_origin(bad).is_err(), "{bad}");
        }
    }
}
