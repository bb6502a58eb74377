//! The same-origin check: the one-line defence against cross-site
//! WebSocket hijacking (see SECURITY.md).

use crate::Request;

/// Whether an upgrade request is same-origin: its `Origin`'s host and port
/// equal its `Host`'s (host compared case-insensitively; a missing port is
/// the default of the Origin's scheme, 80 for `http`, 443 for `https`).
/// A request with no `Origin` passes (browsers always send one on a
/// WebSocket upgrade, so only non-browser clients omit it, and those are
/// not the confused deputy the check protects against). `Origin: null`
/// (sandboxed frames, `file:` pages), an unparsable Origin or a missing
/// `Host` fail.
///
/// Use it as `WsConfig::default().same_origin()` or
/// `.check_origin(blaze_server::same_origin)`.
///
/// Behind a proxy that rewrites `Host`, compare against your public
/// origins with [`crate::WsConfig::allowed_origins`] instead.
pub fn same_origin(request: &Request) -> bool {
    let Some(origin) = request.header("origin") else { return true };
    let Some(host) = request.header("host") else { return false };
    let Some((scheme, origin_authority)) = origin.trim().split_once("://") else { return false };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        _ => return false,
    };
    if origin_authority.contains(['/', '@', '?', '#']) {
        return false;
    }
    match (host_port(origin_authority, default_port), host_port(host.trim(), default_port)) {
        (Some((oh, op)), Some((hh, hp))) => op == hp && oh.eq_ignore_ascii_case(hh),
        _ => false,
    }
}

/// `host[:port]` or `[v6]:port`, with `default_port` when none is given.
fn host_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        None => default_port,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: Option<&str>, host: Option<&str>) -> Request {
        let mut headers = Vec::new();
        if let Some(o) = origin {
            headers.push(("origin".to_owned(), o.to_owned()));
        }
        if let Some(h) = host {
            headers.push(("host".to_owned(), h.to_owned()));
        }
        Request {
            method: "GET".into(),
            path: "/".into(),
            params: Vec::new(),
            query: Vec::new(),
            headers,
            remote_addr: None,
            local_addr: None,
            body: bytes::Bytes::new(),
        }
    }

    #[test]
    fn same_host_and_port_pass() {
        assert!(same_origin(&request(Some("http://example.com"), Some("example.com"))));
        assert!(same_origin(&request(Some("http://example.com:80"), Some("example.com"))));
        assert!(same_origin(&request(Some("https://example.com"), Some("example.com:443"))));
        assert!(same_origin(&request(Some("http://127.0.0.1:8080"), Some("127.0.0.1:8080"))));
        assert!(same_origin(&request(Some("http://EXAMPLE.com:8080"), Some("example.COM:8080"))));
        assert!(same_origin(&request(Some("http://[::1]:9000"), Some("[::1]:9000"))));
    }

    #[test]
    fn other_hosts_ports_and_odd_origins_fail() {
        assert!(!same_origin(&request(Some("http://evil.example"), Some("example.com"))));
        assert!(!same_origin(&request(Some("http://example.com:8081"), Some("example.com:8080"))));
        assert!(!same_origin(&request(Some("https://example.com"), Some("example.com:80"))));
        assert!(!same_origin(&request(Some("null"), Some("example.com"))));
        assert!(!same_origin(&request(Some("http://example.com.evil.example"), Some("example.com"))));
        assert!(!same_origin(&request(Some("http://user@example.com"), Some("example.com"))));
        assert!(!same_origin(&request(Some("ftp://example.com"), Some("example.com"))));
        assert!(!same_origin(&request(Some("http://example.com"), None)));
    }

    #[test]
    fn no_origin_passes() {
        assert!(same_origin(&request(None, Some("example.com"))));
        assert!(same_origin(&request(None, None)));
    }
}
