//! Tests of `error.rs`.

use super::*;

#[test]
fn classification() {
    let cases = [
        (GatewayError::BadRequest("x".into()), 400, Side::Client),
        (GatewayError::PayloadTooLarge(10), 413, Side::Client),
        (GatewayError::BodyTimeout(10), 408, Side::Client),
        (GatewayError::BodyTooSlow(10), 408, Side::Client),
        (
            GatewayError::Unauthenticated(AuthnError::MoreThanOneCredential("two")),
            400,
            Side::Client,
        ),
        (
            GatewayError::MisdirectedRequest("evil.example".into()),
            421,
            Side::Client,
        ),
        (GatewayError::Overloaded, 503, Side::Internal),
        (GatewayError::NoRoute, 403, Side::Client),
        (GatewayError::Forbidden, 403, Side::Client),
        (
            GatewayError::Unauthenticated(AuthnError::Expired),
            401,
            Side::Client,
        ),
        (
            GatewayError::Unauthenticated(AuthnError::KeysUnavailable("down".into())),
            503,
            Side::Upstream,
        ),
        (
            GatewayError::UpstreamUnreachable("refused".into()),
            502,
            Side::Upstream,
        ),
        (GatewayError::UpstreamTimeout, 504, Side::Upstream),
        (GatewayError::Internal("x".into()), 500, Side::Internal),
        (
            GatewayError::StepUpRequired(StepUp {
                mfa: true,
                max_age_s: None,
            }),
            401,
            Side::Client,
        ),
        (
            GatewayError::FactUnavailable("x".into()),
            503,
            Side::Upstream,
        ),
        (
            GatewayError::TooManyRequests(std::time::Duration::from_secs(1), super::Throttle::Rate),
            429,
            Side::Client,
        ),
        (GatewayError::NotFound, 404, Side::Client),
        (GatewayError::PolicyUnavailable, 503, Side::Internal),
        (
            GatewayError::AuditUnavailable("x".into()),
            503,
            Side::Internal,
        ),
        (
            GatewayError::LoginRequired(Box::new(super::LoginRedirect {
                location: "https://idp.example/auth".into(),
                cookies: Vec::new(),
                cause: "no session".into(),
                step_up: false,
            })),
            302,
            Side::Client,
        ),
        (
            GatewayError::LoginRequired(Box::new(super::LoginRedirect {
                location: "https://idp.example/auth".into(),
                cookies: Vec::new(),
                cause: "mfa required".into(),
                step_up: true,
            })),
            302,
            Side::Client,
        ),
        (GatewayError::CrossSite("x"), 403, Side::Client),
        (
            GatewayError::ApprovalRequired(Some("AR-1".into())),
            403,
            Side::Client,
        ),
        (
            GatewayError::SetRefused(invoiceguard_authn::SetError::invalid("x")),
            400,
            Side::Client,
        ),
        (
            GatewayError::SetRefused(invoiceguard_authn::SetError {
                code: "authentication_failed",
                description: "x".into(),
            }),
            401,
            Side::Client,
        ),
        (
            GatewayError::SetRefused(invoiceguard_authn::SetError {
                code: "unavailable",
                description: "x".into(),
            }),
            503,
            Side::Internal,
        ),
        (
            GatewayError::Unauthenticated(invoiceguard_authn::AuthnError::EndedByIdp),
            401,
            Side::Client,
        ),
    ];
    // The audit reasons the documented schema allows: every error's must be one of them.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../docs/audit-event.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let reasons = schema
        .pointer("/properties/decision/properties/reason/enum")
        .unwrap()
        .as_array()
        .unwrap();
    let documented = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/audit-events.md"
    ))
    .unwrap();
    for (error, status, side) in &cases {
        // Every variant: one added fails to compile here until it has a case above.
        match error {
            GatewayError::BadRequest(_)
            | GatewayError::PayloadTooLarge(_)
            | GatewayError::BodyTimeout(_)
            | GatewayError::BodyTooSlow(_)
            | GatewayError::MisdirectedRequest(_)
            | GatewayError::Overloaded
            | GatewayError::NoRoute
            | GatewayError::Unauthenticated(_)
            | GatewayError::Forbidden
            | GatewayError::StepUpRequired(_)
            | GatewayError::FactUnavailable(_)
            | GatewayError::TooManyRequests(..)
            | GatewayError::NotFound
            | GatewayError::PolicyUnavailable
            | GatewayError::AuditUnavailable(_)
            | GatewayError::UpstreamUnreachable(_)
            | GatewayError::UpstreamTimeout
            | GatewayError::Internal(_)
            | GatewayError::LoginRequired(_)
            | GatewayError::ApprovalRequired(_)
            | GatewayError::CrossSite(_)
            | GatewayError::SetRefused(_) => {}
        }
        assert_eq!(error.status().as_u16(), *status, "{error}");
        assert_eq!(error.side(), *side, "{error}");
        let reason = error.reason();
        assert!(
            reasons.iter().any(|r| r == reason),
            "`{reason}` ({error}) is not in docs/audit-event.schema.json"
        );
        assert!(
            documented.contains(&format!("`{reason}`")),
            "`{reason}` ({error}) is not explained in docs/audit-events.md"
        );
    }
}

#[test]
fn a_login_redirect_sends_the_browser_with_its_cookies_and_nothing_cached() {
    let redirect = GatewayError::LoginRequired(Box::new(super::LoginRedirect {
        location: "https://idp.example/auth?state=s".into(),
        cookies: vec!["__Host-invoiceguard-login=s; Path=/; Secure; HttpOnly; SameSite=Lax".into()],
        cause: "no session".into(),
        step_up: false,
    }))
    .to_response("r1", &[]);
    assert_eq!(redirect.status(), 302);
    assert_eq!(
        redirect.headers()[header::LOCATION],
        "https://idp.example/auth?state=s"
    );
    assert!(
        redirect.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .starts_with("__Host-invoiceguard-login=s;")
    );
    assert_eq!(redirect.headers()[header::CACHE_CONTROL], "no-store");
}

#[test]
fn a_refused_security_event_names_its_rfc_8935_error() {
    let refused = GatewayError::SetRefused(invoiceguard_authn::SetError {
        code: "invalid_audience",
        description: "token audience is not this API".into(),
    })
    .to_response("r1", &[]);
    assert_eq!(refused.status(), 400);
}

#[test]
fn challenges_follow_rfc_6750_and_9470() {
    let bare = GatewayError::Unauthenticated(AuthnError::MissingToken).to_response("r1", &[]);
    assert_eq!(
        bare.headers()[header::WWW_AUTHENTICATE],
        "Bearer realm=\"invoiceguard\""
    );
    let expired = GatewayError::Unauthenticated(AuthnError::Expired).to_response("r1", &[]);
    let value = expired.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    assert!(value.contains("error=\"invalid_token\""), "{value}");
    assert!(
        !value.contains("expired"),
        "the client is not told why: {value}"
    );
    assert_eq!(
        expired.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let forbidden = GatewayError::Forbidden.to_response("r1", &[]);
    assert!(forbidden.headers().get(header::WWW_AUTHENTICATE).is_none());
    let step_up = GatewayError::StepUpRequired(StepUp {
        mfa: true,
        max_age_s: Some(900),
    })
    .to_response("r1", &["urn:acr:mfa".to_owned(), "urn:acr:hw".to_owned()]);
    assert_eq!(step_up.status(), StatusCode::UNAUTHORIZED);
    let value = step_up.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    assert!(
        value.contains("error=\"insufficient_user_authentication\""),
        "{value}"
    );
    assert!(
        value.contains("acr_values=\"urn:acr:mfa urn:acr:hw\""),
        "{value}"
    );
    assert!(value.ends_with("max_age=\"900\""), "{value}");
}

/// A lockout's 429 says so in the audit event; a route's rate limit does not (the evidence pack
/// and the SIEM tell them apart by it). The client sees the same problem for both.
#[test]
fn a_lockout_and_a_rate_limit_are_told_apart_in_the_audit_detail() {
    let wait = std::time::Duration::from_secs(60);
    let rate = GatewayError::TooManyRequests(wait, super::Throttle::Rate);
    let lockout = GatewayError::TooManyRequests(wait, super::Throttle::Lockout);
    assert_eq!(rate.audit_detail().as_deref(), Some("retry after 60s"));
    assert_eq!(
        lockout.audit_detail().as_deref(),
        Some("locked out after failed authentications; retry after 60s")
    );
    assert_eq!(rate.reason(), lockout.reason());
    assert_eq!(rate.status(), lockout.status());
}
