//! Cross-site request forgery, for requests a browser authenticates with the session cookie:
//! a request that may change something must come from the gateway's own origin — by Fetch
//! Metadata (`Sec-Fetch-Site: same-origin`), else by `Origin`, else (a client that sends
//! neither) by the session's CSRF token in `X-CSRF-Token`. A credentialed cross-origin read
//! (`Sec-Fetch-Mode: cors` from another origin) is refused too, unless that origin is
//! configured. Top-level navigations from other sites (a link in a mail) stay allowed: they
//! cannot change anything, and `SameSite=Lax` decides whether they carry the cookie.

use http::{HeaderMap, Method};

/// The header a client without Fetch Metadata or `Origin` sends the session's token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Checks a cookie-authenticated request: `Ok` when it may go on.
pub fn check(
    method: &Method,
    headers: &HeaderMap,
    own_origin: &str,
    allowed_origins: &[String],
    session_token: &str,
) -> Result<(), &'static str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let origin = header("origin");
    let allowed =
        |origin: &str| origin == own_origin || allowed_origins.iter().any(|o| o == origin);
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let site = header("sec-fetch-site");
    if safe {
        // A script on another origin reading with the person's cookie.
        let cross_origin_read = header("sec-fetch-mode") == Some("cors")
            && matches!(site, Some("cross-site" | "same-site"))
            && !origin.is_some_and(allowed);
        return if cross_origin_read {
            Err("a credentialed cross-origin request from an origin not allowed")
        } else {
            Ok(())
        };
    }
    if let Some(origin) = origin
        && !allowed(origin)
    {
        return Err("a state-changing request from another origin");
    }
    match site {
        Some("same-origin") => Ok(()),
        Some("cross-site" | "same-site") if origin.is_some_and(allowed) => Ok(()),
        Some(_) => Err("a state-changing request from another site (Sec-Fetch-Site)"),
        None if origin.is_some() => Ok(()),
        None => match header(CSRF_HEADER) {
            Some(token)
                if !session_token.is_empty()
                    && same(token.as_bytes(), session_token.as_bytes()) =>
            {
                Ok(())
            }
            Some(_) => Err("a CSRF token that is not the session's"),
            None => Err("a state-changing request without Origin, Fetch Metadata or CSRF token"),
        },
    }
}

/// Compares in time that does not depend on where the values differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "https://invoices.example.com";

    fn request(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, http::HeaderValue::from_static(value));
        }
        headers
    }

    fn verdict(method: Method, pairs: &[(&'static str, &'static str)]) -> Result<(), &'static str> {
        check(&method, &request(pairs), OWN, &[], "tok")
    }

    #[test]
    fn same_origin_changes_pass_and_cross_site_ones_do_not() {
        assert!(
            verdict(
                Method::POST,
                &[("sec-fetch-site", "same-origin"), ("origin", OWN)]
            )
            .is_ok()
        );
        assert!(
            verdict(
                Method::POST,
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://evil.example")
                ]
            )
            .is_err()
        );
        assert!(verdict(Method::POST, &[("sec-fetch-site", "same-site")]).is_err());
        assert!(verdict(Method::POST, &[("sec-fetch-site", "none")]).is_err());
        // A browser without Fetch Metadata: Origin decides.
        assert!(verdict(Method::DELETE, &[("origin", OWN)]).is_ok());
        assert!(verdict(Method::DELETE, &[("origin", "null")]).is_err());
        // A client with neither: the token.
        assert!(verdict(Method::PUT, &[("x-csrf-token", "tok")]).is_ok());
        assert!(verdict(Method::PUT, &[("x-csrf-token", "tak")]).is_err());
        assert!(verdict(Method::PUT, &[]).is_err());
        // Without a session token (a logout), no token matches, not even an empty one.
        let empty = request(&[("x-csrf-token", "")]);
        assert!(check(&Method::POST, &empty, OWN, &[], "").is_err());
    }

    #[test]
    fn navigations_pass_and_cross_origin_reads_need_an_allowed_origin() {
        assert!(
            verdict(
                Method::GET,
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("sec-fetch-mode", "navigate")
                ]
            )
            .is_ok()
        );
        assert!(
            verdict(
                Method::GET,
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("sec-fetch-mode", "cors"),
                    ("origin", "https://evil.example")
                ]
            )
            .is_err()
        );
        let allowed = ["https://portal.example.com".to_owned()];
        let headers = request(&[
            ("sec-fetch-site", "same-site"),
            ("sec-fetch-mode", "cors"),
            ("origin", "https://portal.example.com"),
        ]);
        assert!(check(&Method::GET, &headers, OWN, &allowed, "tok").is_ok());
        assert!(check(&Method::POST, &headers, OWN, &allowed, "tok").is_ok());
    }
}
