//! The small part of HTTP/1.1 a WebSocket server needs: a parsed request
//! head and a response that renders to bytes.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

/// A parsed HTTP/1.1 request head. Header names are kept lowercase so
/// lookups are case-insensitive, as HTTP requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method, as sent (`GET`).
    pub method: String,
    /// The path, without the query string, as sent.
    pub path: String,
    /// The raw query string after `?`, if any.
    pub query: Option<String>,
    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    /// Header names (lowercased) and values, in the order received.
    pub headers: Vec<(String, String)>,
}

impl HttpRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of a header, by case-insensitive name.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The value of a query parameter, percent-decoded (`?token=a%20b`).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Every query parameter, percent-decoded, in order.
    pub fn query_pairs(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.query.as_deref().unwrap_or("").split('&').filter(|p| !p.is_empty()).map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
    }
}

/// Decodes `%XX` escapes and `+` as space; invalid escapes stay as written.
pub(crate) fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTTP response: the 101 that completes a handshake, a rejection
/// (400, 403, 404, 426, 431, 503, ...) or a plain page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Headers besides `Content-Length`, which rendering adds.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl HttpResponse {
    /// A response with a status and a plain-text body.
    pub fn text(status: u16, body: impl Into<String>) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: Bytes::from(body.into()),
        }
    }

    /// A response with a status, a content type and a body.
    pub fn with_body(status: u16, content_type: &str, body: impl Into<Bytes>) -> HttpResponse {
        HttpResponse { status, headers: vec![("Content-Type".into(), content_type.into())], body: body.into() }
    }

    /// Adds a header. A name or value holding CR or LF is refused: the
    /// header is left out, whole (stripping the line breaks could still
    /// splice attacker text into a value; leaving it out cannot inject a
    /// header or end the head early). [`HttpResponse::to_bytes`] applies
    /// the same rule to headers pushed straight into `headers`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> HttpResponse {
        let (name, value) = (name.into(), value.into());
        if is_safe_header(&name, &value) {
            self.headers.push((name, value));
        }
        self
    }

    /// The standard reason phrase for the status.
    pub fn reason(&self) -> &'static str {
        match self.status {
            101 => "Switching Protocols",
            200 => "OK",
            202 => "Accepted",
            204 => "No Content",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            413 => "Content Too Large",
            426 => "Upgrade Required",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            505 => "HTTP Version Not Supported",
            _ => "",
        }
    }

    /// Renders the response head and body. A 101 has no body and no
    /// `Content-Length`; every other response closes the connection.
    pub fn to_bytes(&self) -> Bytes {
        self.render(false)
    }

    /// Renders the response like [`HttpResponse::to_bytes`], but with
    /// `Connection: keep-alive`: the server reads another request on the
    /// connection after it (RFC 9112 §9.3).
    pub fn to_bytes_keep_alive(&self) -> Bytes {
        self.render(true)
    }

    fn render(&self, keep_alive: bool) -> Bytes {
        let headers: usize = self.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        let mut out = BytesMut::with_capacity(64 + headers + self.body.len());
        // Formatting straight into the output: no intermediate String.
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, self.reason());
        // A header with CR or LF (pushed into `headers` directly, say by a
        // guard) is left out: it could inject headers or a body.
        for (name, value) in self.headers.iter().filter(|(n, v)| is_safe_header(n, v)) {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        if self.status != 101 {
            let connection = if keep_alive { "keep-alive" } else { "close" };
            let _ = write!(out, "Content-Length: {}\r\nConnection: {connection}\r\n", self.body.len());
        }
        out.put_slice(b"\r\n");
        out.put_slice(&self.body);
        out.freeze()
    }
}

/// Whether a header can be written as one line: no CR or LF in its name
/// or value (response splitting, RFC 9110 §5.5).
fn is_safe_header(name: &str, value: &str) -> bool {
    !name.is_empty() && !name.bytes().chain(value.bytes()).any(|b| b == b'\r' || b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_percent_decoded() {
        let req = HttpRequest {
            method: "GET".into(),
            path: "/".into(),
            query: Some("token=a%20b&x=1+2&bad=%zz&flag".into()),
            version: 1,
            headers: vec![],
        };
        assert_eq!(req.query_param("token").as_deref(), Some("a b"));
        assert_eq!(req.query_param("x").as_deref(), Some("1 2"));
        assert_eq!(req.query_param("bad").as_deref(), Some("%zz"));
        assert_eq!(req.query_param("flag").as_deref(), Some(""));
        assert_eq!(req.query_param("missing"), None);
    }

    #[test]
    fn truncated_percent_escape_stays_literal() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%"), "%");
    }

    #[test]
    fn rejection_renders_status_length_and_close() {
        let bytes = HttpResponse::text(404, "no route").to_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.contains("Content-Length: 8\r\n"));
        assert!(text.ends_with("\r\n\r\nno route"));
    }

    #[test]
    fn headers_with_cr_or_lf_are_refused_not_injected() {
        let response = HttpResponse::text(401, "no")
            .header("X-Ok", "fine")
            .header("X-Bad", "a\r\nSet-Cookie: session=evil")
            .header("X-Lf", "a\nb")
            .header("X-Cr", "a\rb")
            .header("X-Evil\r\nSet-Cookie", "x");
        assert_eq!(response.headers.len(), 2, "{:?}", response.headers);
        let mut pushed = response.clone();
        pushed.headers.push(("Location".into(), "/\r\n\r\n<script>".into()));
        for r in [response, pushed] {
            let bytes = r.to_bytes();
            let text = std::str::from_utf8(&bytes).unwrap();
            assert!(text.contains("X-Ok: fine\r\n"));
            assert!(!text.contains("Set-Cookie") && !text.contains("Location") && !text.contains("<script>"), "{text}");
            assert!(text.ends_with("\r\n\r\nno"));
            assert_eq!(text.matches("\r\n\r\n").count(), 1);
        }
    }
}
