//! Trusted proxies: who the client is when a reverse proxy stands between
//! it and us (`Forwarded`, RFC 7239, and `X-Forwarded-For`), believed only
//! from configured proxy addresses.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use blaze_proto::handshake::HttpRequest;

/// An address block, `10.0.0.0/8` or `2001:db8::/32`; a bare address is a
/// block of one (`/32` or `/128`). For [`crate::WsConfig::trusted_proxies`].
///
/// ```
/// use blaze_server::Cidr;
/// let block: Cidr = "10.0.0.0/8".parse().unwrap();
/// assert!(block.contains("10.1.2.3".parse().unwrap()));
/// assert!(!block.contains("11.0.0.1".parse().unwrap()));
/// assert!("10.0.0.0/33".parse::<Cidr>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A [`Cidr`] that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address block {0:?} (expected an IP address, optionally /prefix)")]
pub struct CidrParseError(String);

impl Cidr {
    /// The block of `prefix` leading bits of `addr` (clamped to the
    /// address's length).
    pub fn new(addr: IpAddr, prefix: u8) -> Cidr {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr, prefix: prefix.min(max) }
    }

    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address is
    /// matched as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrParseError;
    fn from_str(s: &str) -> Result<Cidr, CidrParseError> {
        let err = || CidrParseError(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr = canonical(addr.trim().parse().map_err(|_| err())?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.trim().parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(err)?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the TCP `peer` unless it is a trusted proxy, in
/// which case the forwarded hops are walked from the right (the hop the
/// proxy itself appended) past every trusted proxy to the first address
/// that is not one. A hop that is not an address (`unknown`, an
/// obfuscated name, garbage) stops the walk at the proxy that reported it.
/// `Forwarded` is used if present, else `X-Forwarded-For`.
pub(crate) fn client_addr(peer: Option<SocketAddr>, request: &HttpRequest, trusted: &[Cidr]) -> Option<SocketAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if trusted.is_empty() || !is_trusted(peer.ip()) {
        return Some(peer);
    }
    let forwarded: Vec<&str> = request.header_all("forwarded").collect();
    let hops: Vec<Option<SocketAddr>> = if !forwarded.is_empty() {
        forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, v)| parse_node(v.trim().trim_matches('"')))
            })
            .collect()
    } else {
        request.header_all("x-forwarded-for").flat_map(|v| v.split(',')).map(|h| parse_node(h.trim())).collect()
    };
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        match hop {
            Some(addr) if is_trusted(addr.ip()) => client = addr,
            Some(addr) => return Some(addr),
            None => return Some(client),
        }
    }
    Some(client)
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:80`, `2001:db8::1`; port 0
/// when none is given.
fn parse_node(node: &str) -> Option<SocketAddr> {
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(SocketAddr::new(canonical(addr.ip()), addr.port()));
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(SocketAddr::new(canonical(ip), 0));
    }
    let inner = node.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<Ipv6Addr>().ok().map(|ip| SocketAddr::new(canonical(IpAddr::V6(ip)), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            path: "/".into(),
            query: None,
            version: 1,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let r = req(&[("x-forwarded-for", "9.9.9.9"), ("forwarded", "for=8.8.8.8")]);
        assert_eq!(client_addr(peer("1.2.3.4:5"), &r, &cidrs(&["10.0.0.0/8"])), peer("1.2.3.4:5"));
        assert_eq!(client_addr(peer("1.2.3.4:5"), &r, &[]), peer("1.2.3.4:5"));
    }

    #[test]
    fn rightmost_untrusted_hop_is_the_client() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let r = req(&[("x-forwarded-for", "6.6.6.6, 7.7.7.7, 10.0.0.2")]);
        // 6.6.6.6 is what the client claimed; 7.7.7.7 is who connected to our proxy chain.
        assert_eq!(client_addr(peer("10.0.0.1:1"), &r, &trusted), peer("7.7.7.7:0"));
        let r = req(&[("x-forwarded-for", "10.0.0.3"), ("x-forwarded-for", "10.0.0.2")]);
        assert_eq!(client_addr(peer("10.0.0.1:1"), &r, &trusted), peer("10.0.0.3:0"));
        let r = req(&[("x-forwarded-for", "7.7.7.7, unknown")]);
        assert_eq!(client_addr(peer("10.0.0.1:1"), &r, &trusted), peer("10.0.0.1:1"));
        let r = req(&[]);
        assert_eq!(client_addr(peer("10.0.0.1:1"), &r, &trusted), peer("10.0.0.1:1"));
    }

    #[test]
    fn forwarded_header_wins_and_carries_ports() {
        let trusted = cidrs(&["127.0.0.1", "::1"]);
        let r = req(&[
            ("forwarded", r#"for=192.0.2.60;proto=http, For="[2001:db8:cafe::17]:4711""#),
            ("x-forwarded-for", "5.5.5.5"),
        ]);
        assert_eq!(client_addr(peer("[::1]:9"), &r, &trusted), Some("[2001:db8:cafe::17]:4711".parse().unwrap()));
        let r = req(&[("forwarded", "for=_hidden")]);
        assert_eq!(client_addr(peer("127.0.0.1:9"), &r, &trusted), peer("127.0.0.1:9"));
    }

    #[test]
    fn no_peer_address_means_no_forwarded_client() {
        // A Unix socket: nobody to trust, so the headers are not believed.
        let r = req(&[("x-forwarded-for", "203.0.113.1")]);
        assert_eq!(client_addr(None, &r, &cidrs(&["0.0.0.0/0", "::/0"])), None);
    }

    #[test]
    fn mapped_addresses_match_ipv4_blocks() {
        let block: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(block.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!block.contains("::1".parse().unwrap()));
        assert!("::/0".parse::<Cidr>().unwrap().contains("2001:db8::1".parse().unwrap()));
        assert!("garbage".parse::<Cidr>().is_err());
        assert!("::1/129".parse::<Cidr>().is_err());
    }
}
