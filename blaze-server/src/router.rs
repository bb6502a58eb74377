//! Route patterns with `:param` segments and a trailing `*wildcard`, and
//! the one normalisation of request paths ([`normalize_path`]) that
//! routing, guards, the registry and the connection counts all share.

use std::borrow::Cow;
use std::sync::Arc;

/// A compiled route pattern such as `/game/:room_id` or `/files/*path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    /// Shared by every connection of the route (`ws.info().route`).
    raw: Arc<str>,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Wildcard(String),
}

/// Path parameters captured by a match, in pattern order.
pub(crate) type Params = Vec<(String, String)>;

impl Pattern {
    pub(crate) fn parse(raw: &str) -> Pattern {
        let segments = split(raw)
            .map(|s| match s.as_bytes().first() {
                Some(b':') => Segment::Param(s[1..].to_owned()),
                Some(b'*') => Segment::Wildcard(s[1..].to_owned()),
                _ => Segment::Literal(s.to_owned()),
            })
            .collect();
        Pattern { raw: Arc::from(normalize(raw)), segments }
    }

    /// The pattern as written, normalized (`/game/:room_id`). The route's
    /// `max_connections` and `max_connections_per_ip` count under it (every
    /// room of `/game/:room_id` together). Connections themselves are
    /// registered under their normalized request path ([`normalize_path`]),
    /// which for a route without parameters is this same string, so there
    /// `max_connections` and `App::connection_count` count the same set.
    pub(crate) fn as_str(&self) -> &str {
        &self.raw
    }

    /// The pattern, shared.
    pub(crate) fn key(&self) -> Arc<str> {
        self.raw.clone()
    }

    /// Matches a request path, capturing parameters (percent-decoded).
    pub(crate) fn matches(&self, path: &str) -> Option<Params> {
        // Exact capacity: every live connection keeps its params.
        let wanted = self.segments.iter().filter(|s| !matches!(s, Segment::Literal(_))).count();
        let mut params = Vec::with_capacity(wanted);
        let mut parts = split(path);
        for segment in &self.segments {
            match segment {
                Segment::Wildcard(name) => {
                    let rest: Vec<&str> = parts.by_ref().collect();
                    params.push((name.clone(), decode(&rest.join("/"))));
                    return Some(params);
                }
                Segment::Literal(lit) => {
                    if parts.next()? != lit {
                        return None;
                    }
                }
                Segment::Param(name) => params.push((name.clone(), decode(parts.next()?))),
            }
        }
        parts.next().is_none().then_some(params)
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// Joins a group prefix and a route path into one normalized path.
pub(crate) fn join(prefix: &str, path: &str) -> String {
    normalize(&format!("{prefix}/{path}"))
}

fn normalize(path: &str) -> String {
    let joined: Vec<&str> = split(path).collect();
    format!("/{}", joined.join("/"))
}

/// The one form of a request path that decides everything after the
/// request line: which route matches, what guards see as
/// [`crate::Request::path`], what [`crate::WebSocket::path`] returns, and
/// the registry key that `App::broadcast(path)`, `App::connection_count`
/// and `App::connections` look up (they normalize their argument the same
/// way). It is exactly what [`Pattern::matches`] already ignores:
///
/// * repeated slashes collapse (`//chat` and `/a//b` are `/chat`, `/a/b`);
/// * a trailing slash is dropped (`/chat/` is `/chat`; `/` stays `/`);
/// * a leading slash is added if missing.
///
/// Nothing else changes. In particular the path is **not**
/// percent-decoded: `/ch%61t` is not `/chat` (the router compares literal
/// segments undecoded, so it is a 404 on a `/chat` route), because decoding
/// before splitting would let `%2F` forge segment boundaries. Only captured
/// parameters are decoded (`ws.param`). Dot segments (`.`, `..`) are kept
/// as literal segments too; the router never resolves them either.
pub(crate) fn normalize_path(path: &str) -> Cow<'_, str> {
    let already = path.starts_with('/') && !path.contains("//") && (path.len() == 1 || !path.ends_with('/'));
    if already {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(normalize(path))
    }
}

fn decode(segment: &str) -> String {
    // Reuse the query decoder's rules, but `+` is literal in paths.
    let escaped = segment.replace('+', "%2B");
    blaze_proto::handshake::HttpRequest {
        method: String::new(),
        path: String::new(),
        query: Some(format!("v={escaped}")),
        version: 1,
        headers: Vec::new(),
    }
    .query_param("v")
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_captured() {
        let p = Pattern::parse("/game/:room_id/player/:name");
        assert_eq!(
            p.matches("/game/42/player/ann%20b"),
            Some(vec![("room_id".into(), "42".into()), ("name".into(), "ann b".into())])
        );
        assert_eq!(p.matches("/game/42/player"), None);
        assert_eq!(p.matches("/game/42/player/x/y"), None);
    }

    #[test]
    fn wildcard_takes_the_rest() {
        let p = Pattern::parse("/files/*path");
        assert_eq!(p.matches("/files/a/b.txt"), Some(vec![("path".into(), "a/b.txt".into())]));
    }

    #[test]
    fn slashes_are_normalized() {
        assert_eq!(join("/api/v1/", "/chat"), "/api/v1/chat");
        assert_eq!(join("", "/"), "/");
        assert!(Pattern::parse("/chat/").matches("/chat").is_some());
        assert!(Pattern::parse("/").matches("/").is_some());
    }

    #[test]
    fn request_paths_normalize_like_the_router_matches() {
        for raw in ["/chat", "/chat/", "//chat", "/chat//", "///chat///", "chat"] {
            assert_eq!(normalize_path(raw), "/chat", "{raw}");
            assert!(Pattern::parse("/chat").matches(raw).is_some(), "{raw}");
        }
        assert_eq!(normalize_path("/a//b/"), "/a/b");
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path("//"), "/");
        assert_eq!(normalize_path(""), "/");
        assert!(matches!(normalize_path("/a/b"), Cow::Borrowed(_)));
        assert!(matches!(normalize_path("/"), Cow::Borrowed(_)));
        // The normalized path of a static route is its pattern's key.
        assert_eq!(normalize_path("//api//v1/feed/"), Pattern::parse("/api/v1/feed").as_str());
    }

    #[test]
    fn request_paths_are_not_percent_decoded() {
        assert_eq!(normalize_path("/ch%61t"), "/ch%61t");
        assert_eq!(normalize_path("/a%2Fb"), "/a%2Fb");
        assert!(Pattern::parse("/chat").matches("/ch%61t").is_none());
        assert!(Pattern::parse("/a/b").matches("/a%2Fb").is_none());
        // Dot segments stay literal, as the router treats them.
        assert_eq!(normalize_path("/chat/."), "/chat/.");
        assert!(Pattern::parse("/chat").matches("/chat/.").is_none());
    }

    #[test]
    fn plus_in_a_path_segment_is_literal() {
        assert_eq!(Pattern::parse("/t/:x").matches("/t/a+b"), Some(vec![("x".into(), "a+b".into())]));
    }
}
