//! Client-sent headers that other proxies and platforms use to tell an application who the caller
//! is or where the request came from. An invoicing API that once sat behind one of them may still
//! trust them, so none reaches the upstream: the gateway removes them all before forwarding and
//! writes its own (`x-invoiceguard-*`, `X-Forwarded-For`, `-Proto`, `-Host`).

use http::HeaderName;

/// Removed when a header's name starts with one of these (names are lowercase).
pub(crate) const PREFIXES: [&str; 22] = [
    // Every forwarding header of every proxy: For, Host, Proto, Port, Prefix, Uri, Path, and
    // oauth2-proxy's User, Email, Groups, Preferred-Username, Access-Token; Envoy's Client-Cert.
    "x-forwarded-",
    // oauth2-proxy's auth_request answers.
    "x-auth-request-",
    // AWS ALB: OIDC identity and mTLS client certificate.
    "x-amzn-oidc-",
    "x-amzn-mtls-",
    // Azure App Service authentication and its tokens.
    "x-ms-client-principal",
    "x-ms-token-",
    // Google IAP.
    "x-goog-authenticated-user-",
    "x-goog-iap-",
    // Cloudflare Access.
    "cf-access-",
    // Pomerium.
    "x-pomerium-",
    // Kong's consumer and credential headers.
    "x-consumer-",
    "x-credential-",
    // Kubernetes' authenticating proxy (`X-Remote-User`, `-Group`, `-Extra-*`), and others'.
    "x-remote-",
    // Grafana-style and generic authenticated-user headers.
    "x-webauth-",
    "x-authenticated-",
    // Client certificates passed as headers (nginx, HAProxy, Apache, Azure).
    "x-ssl-client-",
    "ssl-client-",
    "x-client-cert",
    "x-ssl-cert",
    "client-cert",
    // Envoy's own headers, which it trusts from its downstream unless configured not to.
    "x-envoy-",
    // Headers already forwarded once.
    "x-original-forwarded-",
];

/// Removed when a header's name is one of these.
pub(crate) const NAMES: [&str; 23] = [
    "forwarded",
    // CGI's and Apache's authenticated user.
    "remote-user",
    "auth-user",
    // Identity headers of home-grown proxies.
    "x-user",
    "x-username",
    "x-user-id",
    "x-user-email",
    "x-email",
    "x-groups",
    "x-userinfo",
    "x-id-token",
    "x-access-token",
    // Client addresses.
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "cf-connecting-ipv6",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "x-originating-ip",
    "x-azure-clientip",
    "x-azure-socketip",
    "x-arr-clientcert",
];

/// The foreign headers of a gateway: the documented families above and those the configuration
/// adds (`upstream.remove_headers`: names, or prefixes ending in `*`).
pub(crate) struct ForeignHeaders {
    /// Names and prefixes (`true`), by their first byte: a header is compared only with the few
    /// that start like it.
    by_first_byte: Vec<Vec<(String, bool)>>,
}

impl ForeignHeaders {
    /// The documented families, and `extra` names or `prefix*`es (compared without case).
    pub(crate) fn new(extra: &[String]) -> Self {
        let mut by_first_byte = vec![Vec::new(); 256];
        let defaults = PREFIXES
            .iter()
            .map(|prefix| ((*prefix).to_owned(), true))
            .chain(NAMES.iter().map(|name| ((*name).to_owned(), false)));
        let configured = extra.iter().map(|entry| {
            let entry = entry.to_ascii_lowercase();
            match entry.strip_suffix('*') {
                Some(prefix) => (prefix.to_owned(), true),
                None => (entry, false),
            }
        });
        for (text, prefix) in defaults.chain(configured) {
            if let Some(first) = text.bytes().next() {
                by_first_byte[usize::from(first)].push((text, prefix));
            }
        }
        Self { by_first_byte }
    }

    /// Whether the header must not reach the upstream: one of the families, or a name with an
    /// underscore (CGI and WSGI read `X_Invoiceguard_Roles` as `X-Invoiceguard-Roles`; nginx drops
    /// such names too).
    pub(crate) fn is_foreign(&self, name: &HeaderName) -> bool {
        let name = name.as_str();
        let Some(first) = name.bytes().next() else {
            return false;
        };
        name.contains('_')
            || self.by_first_byte[usize::from(first)]
                .iter()
                .any(|(text, prefix)| {
                    if *prefix {
                        name.starts_with(text.as_str())
                    } else {
                        name == text
                    }
                })
    }
}

/// Checks `upstream.remove_headers`: each entry a header name, or a prefix of one ending in `*`.
pub(crate) fn validate(entries: &[String]) -> Vec<String> {
    entries
        .iter()
        .enumerate()
        .filter(|(_, entry)| {
            let name = entry.strip_suffix('*').unwrap_or(entry);
            name.is_empty() || HeaderName::from_bytes(name.as_bytes()).is_err()
        })
        .map(|(index, entry)| {
            format!(
                "upstream.remove_headers[{index}]: `{entry}` is not a header name or a `prefix*`"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn foreign(headers: &ForeignHeaders, name: &str) -> bool {
        headers.is_foreign(&HeaderName::from_bytes(name.as_bytes()).unwrap())
    }

    #[test]
    fn every_family_is_foreign() {
        let headers = ForeignHeaders::new(&[]);
        for name in [
            "X-Forwarded-User",
            "X-Forwarded-Email",
            "X-Forwarded-Groups",
            "X-Forwarded-Preferred-Username",
            "X-Forwarded-Access-Token",
            "X-Forwarded-Uri",
            "X-Auth-Request-User",
            "X-Auth-Request-Email",
            "Remote-User",
            "X-Remote-User",
            "X-Remote-Group",
            "X-Amzn-Oidc-Identity",
            "X-Amzn-Oidc-Data",
            "X-Ms-Client-Principal",
            "X-Ms-Client-Principal-Name",
            "X-Goog-Authenticated-User-Email",
            "X-Client-IP",
            "True-Client-IP",
            "CF-Connecting-IP",
            "X-Cluster-Client-IP",
            "X-Real-IP",
            "Forwarded",
            "Client-Cert",
            "X-SSL-Client-S-DN",
            "X_Invoiceguard_Roles",
            "x_forwarded_user",
            "Cf-Access-Authenticated-User-Email",
        ] {
            assert!(foreign(&headers, name), "{name} would reach the upstream");
        }
        for name in [
            "content-type",
            "accept",
            "x-request-start",
            "x-total-count",
            "idempotency-key",
            "user-agent",
            "x-correlation-id",
        ] {
            assert!(!foreign(&headers, name), "{name} would be removed");
        }
    }

    #[test]
    fn configured_names_and_prefixes_are_foreign() {
        let headers = ForeignHeaders::new(&["X-Tenant-User".to_owned(), "x-corp-*".to_owned()]);
        assert!(foreign(&headers, "x-tenant-user"));
        assert!(foreign(&headers, "X-Corp-Anything"));
        assert!(!foreign(&headers, "x-tenant"));
        assert!(validate(&["x-ok".to_owned(), "x-ok-*".to_owned()]).is_empty());
        let problems = validate(&["bad name".to_owned(), "*".to_owned()]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("upstream.remove_headers[0]"));
    }
}
