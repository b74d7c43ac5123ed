//! Answers every service gives the same way.

use actix_web::http::header;
use actix_web::HttpRequest;
use actix_web::HttpResponse;
use std::net::IpAddr;
use std::str::FromStr;

/// 204 that no cache keeps (the answer to a change made for one caller).
pub fn no_content() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// The proxies (the gateway) whose `X-Forwarded-For` is believed: a list
/// of addresses and networks, `10.201.0.0/16,127.0.0.1`. Empty: none, and
/// the caller is always the peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        raw.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(parse_network)
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

fn parse_network(entry: &str) -> Result<(IpAddr, u8), String> {
    let invalid = || format!("`{entry}` is not an address or a network (10.0.0.0/8)");
    let (address, bits) = match entry.split_once('/') {
        Some((address, bits)) => (address, Some(bits)),
        None => (entry, None),
    };
    let address: IpAddr = address.parse().map_err(|_| invalid())?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(bits) => bits
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(invalid)?,
        None => max,
    };
    Ok((address, bits))
}

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0
            .iter()
            .any(|(network, bits)| in_network(ip, *network, *bits))
    }
}

fn in_network(ip: IpAddr, network: IpAddr, bits: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

/// The caller's address. A request straight from a client is its peer's.
/// When the peer is a trusted proxy, the caller is the nearest address in
/// `X-Forwarded-For` that is not itself a trusted proxy, read from the
/// right: entries to its left are what the client claimed, which anyone can
/// forge. A header a trusted proxy garbled counts as no header.
pub fn client_ip(req: &HttpRequest, trusted: &TrustedProxies) -> String {
    let Some(peer) = req.peer_addr().map(|addr| addr.ip().to_canonical()) else {
        return "unknown".to_string();
    };
    if !trusted.contains(peer) {
        return peer.to_string();
    }
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for entry in forwarded.iter().rev() {
        match entry.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(ip) => continue,
            Ok(ip) => return ip.to_canonical().to_string(),
            Err(_) => break,
        }
    }
    peer.to_string()
}

#[cfg(test)]
mod tests {
    use super::{client_ip, TrustedProxies};
    use actix_web::test::TestRequest;

    fn request(peer: &str, forwarded: Option<&str>) -> actix_web::HttpRequest {
        let mut request = TestRequest::default().peer_addr(peer.parse().unwrap());
        if let Some(forwarded) = forwarded {
            request = request.insert_header(("x-forwarded-for", forwarded));
        }
        request.to_http_request()
    }

    fn trusted(raw: &str) -> TrustedProxies {
        raw.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_peer() {
        let gateway = trusted("10.201.0.0/16");
        let via_gateway = request("10.201.3.4:5000", Some("6.6.6.6, 203.0.113.7"));
        assert_eq!(client_ip(&via_gateway, &gateway), "203.0.113.7");
        let direct = request("198.51.100.2:5000", Some("6.6.6.6, 203.0.113.7"));
        assert_eq!(client_ip(&direct, &gateway), "198.51.100.2");
        assert_eq!(
            client_ip(&via_gateway, &TrustedProxies::default()),
            "10.201.3.4"
        );
    }

    #[test]
    fn proxies_in_a_chain_are_skipped_and_garbage_is_ignored() {
        let proxies = trusted("10.0.0.0/8, 192.0.2.1");
        let chain = request(
            "10.0.0.5:1",
            Some("6.6.6.6, 203.0.113.7, 192.0.2.1, 10.9.9.9"),
        );
        assert_eq!(client_ip(&chain, &proxies), "203.0.113.7");
        let garbled = request("10.0.0.5:1", Some("203.0.113.7, not-an-ip"));
        assert_eq!(client_ip(&garbled, &proxies), "10.0.0.5");
        let missing = request("10.0.0.5:1", None);
        assert_eq!(client_ip(&missing, &proxies), "10.0.0.5");
    }

    #[test]
    fn networks_parse_and_match() {
        let proxies = trusted("127.0.0.1,10.201.0.0/16,fd00::/8");
        assert!(proxies.contains("127.0.0.1".parse().unwrap()));
        assert!(!proxies.contains("127.0.0.2".parse().unwrap()));
        assert!(proxies.contains("10.201.255.1".parse().unwrap()));
        assert!(!proxies.contains("10.202.0.1".parse().unwrap()));
        assert!(proxies.contains("fd12::1".parse().unwrap()));
        assert!(proxies.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(trusted("0.0.0.0/0").contains("8.8.8.8".parse().unwrap()));
        assert!(trusted("").is_empty());
        for bad in ["10.0.0.0/33", "10.0.0/8", "localhost", "::/129"] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad}");
        }
    }
}
