//! `Sec-WebSocket-Extensions` offers (RFC 6455 §9.1), parsed so that
//! permessage-deflate (RFC 7692) can be negotiated from them.

/// One extension offer: a name and its parameters, each with an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionOffer {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// Parameters in order; quoted values are unquoted.
    pub params: Vec<(String, Option<String>)>,
}

impl ExtensionOffer {
    /// A parameter by name: `None` if absent, `Some(None)` if present
    /// without a value, `Some(Some(v))` with one.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_deref())
    }
}

/// Parses one header value: comma-separated offers, each a name followed
/// by `;`-separated parameters. Empty or unnamed items are skipped.
///
/// ```
/// use blaze_proto::handshake::parse_extensions;
/// let offers = parse_extensions("permessage-deflate; client_max_window_bits=\"10\", x-foo");
/// assert_eq!(offers[0].param("client_max_window_bits"), Some(Some("10")));
/// assert_eq!(offers[1].name, "x-foo");
/// ```
pub fn parse_extensions(value: &str) -> Vec<ExtensionOffer> {
    value
        .split(',')
        .filter_map(|offer| {
            let mut parts = offer.split(';').map(str::trim);
            let name = parts.next().filter(|n| !n.is_empty())?.to_ascii_lowercase();
            let params = parts
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().trim_matches('"').to_owned())),
                    None => (p.to_ascii_lowercase(), None),
                })
                .collect();
            Some(ExtensionOffer { name, params })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_deflate_offer() {
        let offers = parse_extensions("permessage-deflate; client_max_window_bits");
        assert_eq!(offers, vec![ExtensionOffer {
            name: "permessage-deflate".into(),
            params: vec![("client_max_window_bits".into(), None)],
        }]);
    }

    #[test]
    fn empty_items_are_skipped() {
        assert!(parse_extensions(" , ;x").is_empty());
    }
}
