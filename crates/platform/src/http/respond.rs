//! Answers every service gives the same way.

use actix_web::http::header;
use actix_web::HttpRequest;
use actix_web::HttpResponse;

/// 204 that no cache keeps (the answer to a change made for one caller).
pub fn no_content() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// The caller's address: the peer, or behind a trusted proxy the address
/// the proxy appended last to `X-Forwarded-For` (earlier entries are the
/// client's own claims, which anyone can forge).
pub fn client_ip(req: &HttpRequest, trust_forwarded_for: bool) -> String {
    if trust_forwarded_for {
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        if let Some(ip) = forwarded {
            return ip.to_string();
        }
    }
    req.peer_addr()
        .map(|addr| addr.ip().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::client_ip;
    use actix_web::test::TestRequest;

    #[test]
    fn trusts_only_the_last_forwarded_address_and_only_when_told() {
        let request = TestRequest::default()
            .peer_addr(
                "10.0.0.9:5000"
                    .parse()
                    .unwrap_or(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
            )
            .insert_header(("x-forwarded-for", "6.6.6.6, 203.0.113.7"))
            .to_http_request();
        assert_eq!(client_ip(&request, true), "203.0.113.7");
        assert_eq!(client_ip(&request, false), "10.0.0.9");
    }
}
