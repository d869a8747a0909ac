//! The gateway's two cookies: the session's (an opaque id, nothing else) and a login's (the
//! `state` the browser must bring back, RFC 9700 section 4.7.1). Both `__Host-` prefixed, so a
//! browser keeps them only when `Secure`, for `Path=/` and without `Domain`: no other host, not
//! even a sibling subdomain, can set or overwrite them.

use http::HeaderMap;
use http::header::COOKIE;

use crate::config::SameSite;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "__Host-invoiceguard-session";
/// The login-in-progress cookie's name.
pub const LOGIN_COOKIE: &str = "__Host-invoiceguard-login";

/// The value of cookie `name` among the request's `Cookie` headers: `Err` when it is sent more
/// than once (which one the browser meant is ambiguous, and a planted duplicate is an attack).
pub fn find<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, String> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else {
            continue;
        };
        for pair in text.split(';') {
            let Some((key, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if key == name {
                if found.is_some() {
                    return Err(format!("the `{name}` cookie is sent more than once"));
                }
                found = Some(value.trim_matches('"'));
            }
        }
    }
    Ok(found)
}

/// A `Set-Cookie` value: `HttpOnly`, `Secure`, `Path=/`, the configured `SameSite`, and a
/// `Max-Age` when given (a session cookie otherwise: gone when the browser closes).
pub fn set(name: &str, value: &str, same_site: SameSite, max_age_s: Option<u64>) -> String {
    let same_site = match same_site {
        SameSite::Lax => "Lax",
        SameSite::Strict => "Strict",
    };
    let mut cookie = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite={same_site}");
    if let Some(age) = max_age_s {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    cookie
}

/// A `Set-Cookie` value that removes the cookie.
pub fn clear(name: &str) -> String {
    format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// Removes the gateway's cookies from the request before it goes upstream (the session id is a
/// credential for the gateway alone); other cookies stay as they were.
pub fn strip_own(headers: &mut HeaderMap) {
    let values: Vec<_> = headers.get_all(COOKIE).iter().cloned().collect();
    if values.is_empty() {
        return;
    }
    let own = |pair: &str| {
        let name = pair.trim().split('=').next().unwrap_or_default();
        name == SESSION_COOKIE || name == LOGIN_COOKIE
    };
    let mut kept: Vec<String> = Vec::new();
    let mut changed = false;
    for value in &values {
        let Ok(text) = value.to_str() else {
            changed = true;
            continue;
        };
        for pair in text.split(';') {
            if own(pair) {
                changed = true;
            } else if !pair.trim().is_empty() {
                kept.push(pair.trim().to_owned());
            }
        }
    }
    if !changed {
        return;
    }
    headers.remove(COOKIE);
    if !kept.is_empty()
        && let Ok(value) = http::HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for cookie in cookies {
            headers.append(
                COOKIE,
                http::HeaderValue::from_str(cookie)
                    .unwrap_or_else(|_| http::HeaderValue::from_static("")),
            );
        }
        headers
    }

    #[test]
    fn a_cookie_is_found_once_or_refused() {
        let h = headers(&["a=1; __Host-invoiceguard-session=abc; b=2"]);
        assert_eq!(find(&h, SESSION_COOKIE), Ok(Some("abc")));
        assert_eq!(find(&h, LOGIN_COOKIE), Ok(None));
        let twice = headers(&[
            "__Host-invoiceguard-session=abc",
            "__Host-invoiceguard-session=def",
        ]);
        assert!(find(&twice, SESSION_COOKIE).is_err());
    }

    #[test]
    fn cookies_are_host_only_secure_and_http_only() {
        let cookie = set(SESSION_COOKIE, "abc", SameSite::Lax, None);
        assert_eq!(
            cookie,
            "__Host-invoiceguard-session=abc; Path=/; Secure; HttpOnly; SameSite=Lax"
        );
        assert!(!cookie.contains("Domain"));
        assert!(
            set(LOGIN_COOKIE, "s", SameSite::Strict, Some(600))
                .ends_with("SameSite=Strict; Max-Age=600")
        );
        assert!(clear(SESSION_COOKIE).contains("Max-Age=0"));
    }

    #[test]
    fn the_gateways_cookies_never_go_upstream() {
        let mut h = headers(&[
            "theme=dark; __Host-invoiceguard-session=abc",
            "__Host-invoiceguard-login=x; lang=fi",
        ]);
        strip_own(&mut h);
        let sent: Vec<_> = h
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(sent, ["theme=dark; lang=fi"]);
        let mut only_ours = headers(&["__Host-invoiceguard-session=abc"]);
        strip_own(&mut only_ours);
        assert!(only_ours.get(COOKIE).is_none());
        let mut untouched = headers(&["a=1;b=2"]);
        strip_own(&mut untouched);
        assert_eq!(
            untouched.get(COOKIE).and_then(|v| v.to_str().ok()),
            Some("a=1;b=2")
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever `Cookie` headers a client sends, the gateway's cookies never reach the
        /// upstream, and every other cookie does, in order.
        #[test]
        fn only_the_gateways_cookies_are_removed(
            pairs in proptest::collection::vec(
                (prop_oneof![
                    Just(SESSION_COOKIE.to_owned()),
                    Just(LOGIN_COOKIE.to_owned()),
                    "[a-zA-Z_-]{1,12}",
                ], "[a-zA-Z0-9._-]{0,16}"),
                0..8,
            ),
            split in 0usize..8,
        ) {
            let text: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
            let mut headers = HeaderMap::new();
            let (first, second) = text.split_at(split.min(text.len()));
            for part in [first, second] {
                if !part.is_empty() {
                    headers.append(COOKIE, http::HeaderValue::from_str(&part.join("; ")).unwrap());
                }
            }
            let found = find(&headers, SESSION_COOKIE);
            let sessions = pairs.iter().filter(|(n, _)| n == SESSION_COOKIE).count();
            prop_assert_eq!(found.is_err(), sessions > 1);
            strip_own(&mut headers);
            let sent: Vec<String> = headers
                .get_all(COOKIE)
                .iter()
                .flat_map(|v| v.to_str().unwrap().split("; ").map(str::to_owned).collect::<Vec<_>>())
                .collect();
            let ours = pairs.iter().any(|(n, _)| n == SESSION_COOKIE || n == LOGIN_COOKIE);
            if ours {
                let expected: Vec<String> = pairs
                    .iter()
                    .filter(|(n, _)| n != SESSION_COOKIE && n != LOGIN_COOKIE)
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect();
                prop_assert_eq!(sent, expected);
            } else {
                prop_assert_eq!(sent, text);
            }
        }
    }
}
