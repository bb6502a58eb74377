//! What a connection keeps of its upgrade request: [`ConnInfo`], and the
//! compact form every connection holds it in ([`RequestInfo`]).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

/// What is known about a connection from its upgrade request.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// The request path (`/game/42`).
    pub path: String,
    /// The route pattern it matched (`/game/:room_id`).
    pub route: String,
    /// Path parameters captured by the route.
    pub params: Vec<(String, String)>,
    /// Query parameters, percent-decoded.
    pub query: Vec<(String, String)>,
    /// Request headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The peer's address; behind a trusted proxy
    /// (`WsConfig::trusted_proxies`), the client it forwarded for.
    pub remote_addr: Option<SocketAddr>,
    /// Our address.
    pub local_addr: Option<SocketAddr>,
    /// The negotiated subprotocol.
    pub protocol: Option<String>,
}

/// A connection's [`ConnInfo`], compact: the route is shared with the
/// route's other connections, and the path, parameters, query, headers and
/// subprotocol are one string of length-prefixed fields (`5:/chat`), read
/// in place by `ws.header()`, `ws.param()` and the like. The owned
/// [`ConnInfo`] is built from it only if `ws.info()` asks, once.
///
/// An idle connection with a few headers held ~200 bytes of `ConnInfo`
/// and a dozen small heap strings; this is ~110 bytes and one string
/// (BENCHMARKS.md, "Idle connections").
pub(crate) struct RequestInfo {
    route: Arc<str>,
    /// Path, protocol (`+name`, or empty for none), then the params,
    /// query and headers, each as a count followed by its name/value pairs.
    fields: Box<str>,
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) local_addr: Option<SocketAddr>,
    full: OnceLock<Box<ConnInfo>>,
}

/// A section of `RequestInfo::fields`.
#[derive(Clone, Copy)]
enum Section {
    Params = 0,
    Query = 1,
    Headers = 2,
}

impl RequestInfo {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        route: Arc<str>,
        path: &str,
        params: &[(String, String)],
        query: &[(String, String)],
        headers: &[(String, String)],
        protocol: Option<&str>,
        remote_addr: Option<SocketAddr>,
        local_addr: Option<SocketAddr>,
    ) -> RequestInfo {
        let pairs = [params, query, headers];
        let bytes: usize = pairs.iter().flat_map(|p| p.iter()).map(|(k, v)| k.len() + v.len() + 8).sum();
        let mut fields = String::with_capacity(path.len() + protocol.map_or(0, str::len) + bytes + 16);
        put(&mut fields, path);
        match protocol {
            Some(p) => {
                let _ = write!(fields, "{}:+{p}", p.len() + 1);
            }
            None => put(&mut fields, ""),
        }
        for section in pairs {
            put(&mut fields, &section.len().to_string());
            for (name, value) in section {
                put(&mut fields, name);
                put(&mut fields, value);
            }
        }
        RequestInfo { route, fields: fields.into_boxed_str(), remote_addr, local_addr, full: OnceLock::new() }
    }

    /// The route pattern it matched.
    pub(crate) fn route(&self) -> &str {
        &self.route
    }

    /// The request path.
    pub(crate) fn path(&self) -> &str {
        self.reader().next().unwrap_or_default()
    }

    /// The negotiated subprotocol.
    pub(crate) fn protocol(&self) -> Option<&str> {
        let mut r = self.reader();
        r.next();
        r.next().and_then(|p| p.strip_prefix('+'))
    }

    /// The value of the first pair named `name` in `section`.
    fn find(&self, section: Section, name: &str) -> Option<&str> {
        self.pairs(section).find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// A request header, by case-insensitive name (names are stored
    /// lowercased).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.pairs(Section::Headers).find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// A path parameter.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.find(Section::Params, name)
    }

    /// A query parameter.
    pub(crate) fn query(&self, name: &str) -> Option<&str> {
        self.find(Section::Query, name)
    }

    /// The owned form, built on the first call.
    pub(crate) fn full(&self) -> &ConnInfo {
        self.full.get_or_init(|| {
            let owned = |section| self.pairs(section).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            Box::new(ConnInfo {
                path: self.path().to_owned(),
                route: self.route().to_owned(),
                params: owned(Section::Params),
                query: owned(Section::Query),
                headers: owned(Section::Headers),
                remote_addr: self.remote_addr,
                local_addr: self.local_addr,
                protocol: self.protocol().map(str::to_owned),
            })
        })
    }

    fn reader(&self) -> Fields<'_> {
        Fields { rest: &self.fields }
    }

    /// The name/value pairs of one section.
    fn pairs(&self, section: Section) -> impl Iterator<Item = (&str, &str)> {
        let mut r = self.reader();
        r.next();
        r.next();
        for _ in 0..section as usize {
            let count = r.count_field();
            for _ in 0..count * 2 {
                r.next();
            }
        }
        let count = r.count_field();
        (0..count).map_while(move |_| Some((r.next()?, r.next()?)))
    }
}

/// Appends one length-prefixed field.
fn put(out: &mut String, field: &str) {
    let _ = write!(out, "{}:", field.len());
    out.push_str(field);
}

/// Reads the fields `put` wrote, in order.
struct Fields<'a> {
    rest: &'a str,
}

impl<'a> Fields<'a> {
    fn count_field(&mut self) -> usize {
        self.next().and_then(|n| n.parse().ok()).unwrap_or(0)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        // The length's digits read by hand: `ws.path()` runs this on every
        // broadcast, and `find` + `parse` cost ~200 instructions a field.
        let bytes = self.rest.as_bytes();
        let mut len = 0usize;
        let mut colon = 0;
        loop {
            match *bytes.get(colon)? {
                b':' if colon > 0 => break,
                d @ b'0'..=b'9' => len = len.checked_mul(10)?.checked_add(usize::from(d - b'0'))?,
                _ => return None,
            }
            colon += 1;
        }
        let end = (colon + 1).checked_add(len)?;
        let field = self.rest.get(colon + 1..end)?;
        self.rest = &self.rest[end..];
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn fields_read_back_as_written_whatever_they_hold() {
        let params = pairs(&[("room", "4:2"), ("x", "")]);
        // Percent-decoded values may hold anything: colons, digits, newlines.
        let query = pairs(&[("q", "12:ab\n\0"), ("", "empty name"), ("q", "second")]);
        let headers = pairs(&[("host", "example.com:80"), ("user-agent", "t/1")]);
        let remote: SocketAddr = "10.0.0.1:5".parse().unwrap();
        let info = RequestInfo::new(
            Arc::from("/r/:room"),
            "/r/4:2",
            &params,
            &query,
            &headers,
            Some("chat.v1"),
            Some(remote),
            None,
        );
        assert_eq!(info.path(), "/r/4:2");
        assert_eq!(info.route(), "/r/:room");
        assert_eq!(info.protocol(), Some("chat.v1"));
        assert_eq!(info.param("room"), Some("4:2"));
        assert_eq!(info.param("x"), Some(""));
        assert_eq!(info.param("q"), None);
        assert_eq!(info.query("q"), Some("12:ab\n\0"));
        assert_eq!(info.query(""), Some("empty name"));
        assert_eq!(info.header("host"), Some("example.com:80"));
        assert_eq!(info.header("User-Agent"), Some("t/1"));
        assert_eq!(info.header("room"), None);
        let full = info.full();
        assert_eq!((full.params.clone(), full.query.clone(), full.headers.clone()), (params, query, headers));
        assert_eq!((full.remote_addr, full.local_addr), (Some(remote), None));
        assert_eq!(full.protocol.as_deref(), Some("chat.v1"));
        assert!(std::ptr::eq(full, info.full()), "built once");
    }

    #[test]
    fn no_protocol_and_empty_sections() {
        let info = RequestInfo::new(Arc::from(""), "", &[], &[], &[], None, None, None);
        assert_eq!((info.path(), info.protocol(), info.header("host")), ("", None, None));
        let with_empty = RequestInfo::new(Arc::from(""), "/", &[], &[], &[], Some(""), None, None);
        assert_eq!(with_empty.protocol(), Some(""));
        assert!(info.full().headers.is_empty());
    }
}
