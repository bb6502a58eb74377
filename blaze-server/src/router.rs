//! Route patterns with `:param` segments and a trailing `*wildcard`.

/// A compiled route pattern such as `/game/:room_id` or `/files/*path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    raw: String,
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
        Pattern { raw: normalize(raw), segments }
    }

    /// The pattern as written, normalized (`/game/:room_id`). Connections
    /// are registered under it, so a broadcast to `/game/:room_id` reaches
    /// every room; rooms are topics.
    pub(crate) fn as_str(&self) -> &str {
        &self.raw
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
    fn plus_in_a_path_segment_is_literal() {
        assert_eq!(Pattern::parse("/t/:x").matches("/t/a+b"), Some(vec![("x".into(), "a+b".into())]));
    }
}
