//! The permessage-deflate parameters (RFC 7692 §7.1), negotiated strictly
//! from either end.

use super::{CompressionMode, DeflateConfig, MAX_WINDOW_BITS, MIN_WINDOW_BITS};
use crate::handshake::ExtensionOffer;

/// The extension token.
pub(crate) const NAME: &str = "permessage-deflate";

/// What both ends agreed to: the parameters of the server's response
/// (`None` window bits: the parameter was absent, meaning 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeflateParams {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The server compresses with at most this window (8..=15).
    pub server_max_window_bits: Option<u8>,
    /// The client compresses with at most this window (8..=15).
    pub client_max_window_bits: Option<u8>,
}

/// Why a permessage-deflate offer or response is not acceptable. An offer
/// with one is declined (the next offer is tried); a response with one
/// fails the client's handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeflateParamsError {
    /// A parameter RFC 7692 does not define.
    #[error("unknown permessage-deflate parameter {0:?}")]
    Unknown(String),
    /// A parameter given twice (§7.1).
    #[error("permessage-deflate parameter {0:?} repeated")]
    Repeated(String),
    /// A value on a flag, a missing value, or a window outside 8..=15.
    #[error("invalid value for permessage-deflate parameter {0:?}")]
    InvalidValue(String),
    /// A response parameter the client did not allow (§7.1.1.1, §7.1.2).
    #[error("server answered {0}, which the offer did not allow")]
    NotAllowed(String),
    /// The response accepted permessage-deflate more than once.
    #[error("permessage-deflate accepted twice")]
    Duplicate,
}

/// The parameters of one offer or response, checked for form only.
#[derive(Debug, Default)]
struct Parsed {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (allowed in offers only).
    client_max_window_bits: Option<Option<u8>>,
}

fn parse(offer: &ExtensionOffer) -> Result<Parsed, DeflateParamsError> {
    let mut parsed = Parsed::default();
    let mut seen = [false; 4];
    for (name, value) in &offer.params {
        let slot = match name.as_str() {
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => 2,
            "client_max_window_bits" => 3,
            _ => return Err(DeflateParamsError::Unknown(name.clone())),
        };
        if std::mem::replace(&mut seen[slot], true) {
            return Err(DeflateParamsError::Repeated(name.clone()));
        }
        let invalid = || DeflateParamsError::InvalidValue(name.clone());
        match slot {
            0 | 1 if value.is_some() => return Err(invalid()),
            0 => parsed.server_no_context_takeover = true,
            1 => parsed.client_no_context_takeover = true,
            2 => parsed.server_max_window_bits = Some(window_bits(value.as_deref()).ok_or_else(invalid)?),
            _ => {
                parsed.client_max_window_bits = Some(match value {
                    None => None,
                    Some(v) => Some(window_bits(Some(v)).ok_or_else(invalid)?),
                })
            }
        }
    }
    Ok(parsed)
}

/// `1*DIGIT` with a value of 8..=15, no leading zero (§7.1.2.1).
fn window_bits(value: Option<&str>) -> Option<u8> {
    let value = value?;
    if value.is_empty() || value.len() > 2 || value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (8..=MAX_WINDOW_BITS).contains(&bits).then_some(bits)
}

impl DeflateParams {
    /// The server's choice (§7.1): the first acceptable permessage-deflate
    /// offer, answered as `config` says; `None` declines them all. Offers
    /// that break §7.1 (unknown or repeated parameters, bad values) are
    /// skipped, never a failed handshake, and so is one asking for an
    /// 8-bit server window, which zlib cannot compress with.
    pub fn negotiate(offers: &[ExtensionOffer], config: &DeflateConfig) -> Option<DeflateParams> {
        let shared = config.mode == CompressionMode::Shared;
        let window = if shared { MAX_WINDOW_BITS } else { config.window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS) };
        offers.iter().filter(|o| o.name == NAME).find_map(|offer| {
            let offer = parse(offer).ok()?;
            let server_max_window_bits = match offer.server_max_window_bits {
                Some(asked) if asked < MIN_WINDOW_BITS => return None,
                // §7.1.2.1: accepted by answering the same or a smaller value.
                Some(asked) => Some(asked.min(window)),
                None => (window < MAX_WINDOW_BITS).then_some(window),
            };
            let client_max_window_bits = match offer.client_max_window_bits {
                // §7.1.2.2: absent from the offer, absent from the answer.
                None => None,
                Some(None) => (window < MAX_WINDOW_BITS).then_some(window),
                Some(Some(limit)) => Some(limit.min(window)),
            };
            Some(DeflateParams {
                // §7.1.1.1: an offered server_no_context_takeover binds us;
                // §7.1.1: the server may impose either one.
                server_no_context_takeover: shared || offer.server_no_context_takeover,
                client_no_context_takeover: shared || offer.client_no_context_takeover,
                server_max_window_bits,
                client_max_window_bits,
            })
        })
    }

    /// The client's offer for `config`: shared mode asks for no context
    /// either way, dedicated mode for its window.
    pub fn offer(config: &DeflateConfig) -> String {
        let mut offer = String::from(NAME);
        match config.mode {
            CompressionMode::Shared => {
                offer.push_str("; server_no_context_takeover; client_no_context_takeover; client_max_window_bits")
            }
            CompressionMode::Dedicated if config.window_bits < MAX_WINDOW_BITS => {
                let bits = config.window_bits.max(MIN_WINDOW_BITS);
                offer.push_str(&format!("; server_max_window_bits={bits}; client_max_window_bits={bits}"));
            }
            CompressionMode::Dedicated => offer.push_str("; client_max_window_bits"),
        }
        offer
    }

    /// Checks the server's answer against what the client offered
    /// (`offered`, from [`DeflateParams::offer`] or any other offer): the
    /// same form rules, and nothing the offer did not allow (§7.1.1.1,
    /// §7.1.2.1, §7.1.2.2). `Ok(None)`: the server declined.
    pub fn from_response(
        offered: &[ExtensionOffer],
        response: &[ExtensionOffer],
    ) -> Result<Option<DeflateParams>, DeflateParamsError> {
        let mut accepted = response.iter().filter(|e| e.name == NAME);
        let Some(answer) = accepted.next() else { return Ok(None) };
        if accepted.next().is_some() {
            return Err(DeflateParamsError::Duplicate);
        }
        let answer = parse(answer)?;
        let client_max_window_bits = match answer.client_max_window_bits {
            Some(None) => return Err(DeflateParamsError::InvalidValue("client_max_window_bits".into())),
            Some(Some(bits)) => Some(bits),
            None => None,
        };
        // The offer the server accepted: the first of ours it fits.
        let fits = |offer: &Parsed| {
            let server_window_ok = match (offer.server_max_window_bits, answer.server_max_window_bits) {
                (Some(_), None) => false,
                (Some(limit), Some(bits)) => bits <= limit,
                (None, _) => true,
            };
            let client_window_ok = match (offer.client_max_window_bits, client_max_window_bits) {
                (None, Some(_)) => false,
                (Some(Some(limit)), Some(bits)) => bits <= limit,
                _ => true,
            };
            let context_ok = !offer.server_no_context_takeover || answer.server_no_context_takeover;
            server_window_ok && client_window_ok && context_ok
        };
        let offers: Vec<Parsed> = offered.iter().filter(|o| o.name == NAME).filter_map(|o| parse(o).ok()).collect();
        if !offers.iter().any(fits) {
            return Err(DeflateParamsError::NotAllowed(render(&answer_params(&answer, client_max_window_bits))));
        }
        Ok(Some(answer_params(&answer, client_max_window_bits)))
    }

    /// The `Sec-WebSocket-Extensions` value that states these parameters.
    pub fn to_header(&self) -> String {
        render(self)
    }
}

fn answer_params(answer: &Parsed, client_max_window_bits: Option<u8>) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: answer.server_no_context_takeover,
        client_no_context_takeover: answer.client_no_context_takeover,
        server_max_window_bits: answer.server_max_window_bits,
        client_max_window_bits,
    }
}

fn render(params: &DeflateParams) -> String {
    let mut header = String::from(NAME);
    if params.server_no_context_takeover {
        header.push_str("; server_no_context_takeover");
    }
    if params.client_no_context_takeover {
        header.push_str("; client_no_context_takeover");
    }
    if let Some(bits) = params.server_max_window_bits {
        header.push_str(&format!("; server_max_window_bits={bits}"));
    }
    if let Some(bits) = params.client_max_window_bits {
        header.push_str(&format!("; client_max_window_bits={bits}"));
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::parse_extensions;

    fn server(offer: &str, config: DeflateConfig) -> Option<String> {
        DeflateParams::negotiate(&parse_extensions(offer), &config).map(|p| p.to_header())
    }

    fn dedicated(bits: u8) -> DeflateConfig {
        DeflateConfig::default().mode(CompressionMode::Dedicated).window_bits(bits)
    }

    #[test]
    fn shared_mode_imposes_no_context_takeover_both_ways() {
        assert_eq!(
            server("permessage-deflate", DeflateConfig::default()).unwrap(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
    }

    #[test]
    fn dedicated_mode_keeps_context_unless_offered_otherwise() {
        assert_eq!(server("permessage-deflate; client_max_window_bits", dedicated(15)).unwrap(), "permessage-deflate");
        assert_eq!(
            server("permessage-deflate; server_no_context_takeover; client_no_context_takeover", dedicated(15)).unwrap(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
    }

    #[test]
    fn windows_are_the_smaller_of_offer_and_config() {
        assert_eq!(
            server("permessage-deflate; server_max_window_bits=12; client_max_window_bits=11", dedicated(10)).unwrap(),
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10"
        );
        assert_eq!(
            server("permessage-deflate; server_max_window_bits=10; client_max_window_bits", dedicated(15)).unwrap(),
            "permessage-deflate; server_max_window_bits=10"
        );
        // The config's smaller window is announced even when not asked.
        assert_eq!(
            server("permessage-deflate; client_max_window_bits", dedicated(11)).unwrap(),
            "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11"
        );
        // client_max_window_bits may not be answered if it was not offered.
        assert_eq!(server("permessage-deflate", dedicated(11)).unwrap(), "permessage-deflate; server_max_window_bits=11");
    }

    #[test]
    fn an_eight_bit_server_window_is_declined_for_the_next_offer() {
        let offer = "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=9";
        assert_eq!(server(offer, dedicated(15)).unwrap(), "permessage-deflate; server_max_window_bits=9");
        assert_eq!(server("permessage-deflate; server_max_window_bits=8", dedicated(15)), None);
        // An 8-bit client window is fine: we inflate it with 9 bits.
        assert!(server("permessage-deflate; client_max_window_bits=8", dedicated(15)).is_some());
    }

    #[test]
    fn invalid_offers_are_declined_and_the_next_one_wins() {
        for bad in [
            "permessage-deflate; x=1",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; client_max_window_bits=1.5",
        ] {
            assert_eq!(server(bad, dedicated(15)), None, "{bad}");
            let with_fallback = format!("{bad}, permessage-deflate; client_no_context_takeover");
            assert_eq!(
                server(&with_fallback, dedicated(15)).unwrap(),
                "permessage-deflate; client_no_context_takeover",
                "{bad}"
            );
        }
        assert_eq!(server("x-webkit-deflate-frame", dedicated(15)), None);
    }

    #[test]
    fn quoted_values_are_accepted() {
        assert_eq!(
            server("permessage-deflate; server_max_window_bits=\"10\"", dedicated(15)).unwrap(),
            "permessage-deflate; server_max_window_bits=10"
        );
    }

    fn client(offer: &str, response: &str) -> Result<Option<DeflateParams>, DeflateParamsError> {
        DeflateParams::from_response(&parse_extensions(offer), &parse_extensions(response))
    }

    #[test]
    fn client_accepts_what_its_offer_allows() {
        let p = client("permessage-deflate; client_max_window_bits", "permessage-deflate; client_max_window_bits=10")
            .unwrap()
            .unwrap();
        assert_eq!(p.client_max_window_bits, Some(10));
        // The server may always limit its own window or drop its context.
        assert!(client("permessage-deflate", "permessage-deflate; server_max_window_bits=9; server_no_context_takeover")
            .unwrap()
            .is_some());
        assert!(client("permessage-deflate", "permessage-deflate; client_no_context_takeover").unwrap().is_some());
        assert_eq!(client("permessage-deflate", "").unwrap(), None);
    }

    #[test]
    fn client_rejects_what_its_offer_did_not_allow() {
        let not_allowed = [
            ("permessage-deflate", "permessage-deflate; client_max_window_bits=10"),
            ("permessage-deflate; client_max_window_bits=10", "permessage-deflate; client_max_window_bits=12"),
            ("permessage-deflate; server_max_window_bits=10", "permessage-deflate; server_max_window_bits=12"),
            ("permessage-deflate; server_max_window_bits=10", "permessage-deflate"),
            ("permessage-deflate; server_no_context_takeover", "permessage-deflate"),
        ];
        for (offer, response) in not_allowed {
            assert!(matches!(client(offer, response), Err(DeflateParamsError::NotAllowed(_))), "{offer} / {response}");
        }
        let malformed = [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; foo",
            "permessage-deflate; server_max_window_bits=20",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        ];
        for response in malformed {
            assert!(client("permessage-deflate; client_max_window_bits", response).is_err(), "{response}");
        }
        assert_eq!(
            client("permessage-deflate", "permessage-deflate, permessage-deflate"),
            Err(DeflateParamsError::Duplicate)
        );
    }

    #[test]
    fn our_offers_are_accepted_by_our_server_and_the_answers_by_our_client() {
        for mode in [CompressionMode::Shared, CompressionMode::Dedicated] {
            for bits in 9..=15 {
                let config = DeflateConfig::default().mode(mode).window_bits(bits);
                let offer = parse_extensions(&DeflateParams::offer(&config));
                let answer = DeflateParams::negotiate(&offer, &config).expect("accepted");
                let back = DeflateParams::from_response(&offer, &parse_extensions(&answer.to_header()));
                assert_eq!(back, Ok(Some(answer)), "{mode:?} {bits}");
            }
        }
    }
}
