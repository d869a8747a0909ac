//! Tests of `upstream.rs`.

use super::*;
use crate::headers::{MFA, REQUEST_ID, ROLES, SUBJECT};

fn alice() -> Principal {
    Principal {
        kind: PrincipalKind::User,
        id: "alice".into(),
        client_id: Some("web".into()),
        roles: vec!["invoicing".into(), "approver".into()],
        scopes: vec!["openid".into()],
        amr: vec!["pwd".into(), "otp".into()],
        acr: None,
        auth_time: None,
        mfa: true,
        method: invoiceguard_authn::AuthMethod::Jwt,
        issued_at: None,
        email: None,
    }
}

#[test]
fn identity_is_set_by_the_gateway_only() {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("x-invoiceguard-subject", "mallory"),
        ("X-Invoiceguard-Roles", "admin"),
        ("x-invoiceguard-extra", "1"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-user", "dave"),
        ("x_invoiceguard_roles", "admin"),
        ("forwarded", "for=10.0.0.1"),
        ("x-request-id", "client-chosen"),
        ("authorization", "Bearer secret"),
        ("x-api-key", "key-1"),
        ("connection", "keep-alive, x-audit-me"),
        ("x-audit-me", "1"),
        ("te", "trailers"),
        ("transfer-encoding", "chunked"),
        ("content-type", "application/json"),
    ] {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let principal = alice();
    let context = ForwardContext {
        principal: &principal,
        request_id: "req-1",
        trace: &crate::trace::TraceContext::from_headers(&HeaderMap::new()),
        client_ip: "192.0.2.7".parse().unwrap(),
        tls: true,
    };
    upstream_headers(
        &mut headers,
        &context,
        Some(HeaderValue::from_static("gw.example")),
        false,
        &ForeignHeaders::new(&[]),
        &[&HeaderName::from_static("x-api-key")],
    )
    .unwrap();
    assert_eq!(headers[SUBJECT], "alice");
    assert_eq!(headers[ROLES], "invoicing,approver");
    assert_eq!(headers[MFA], "true");
    assert_eq!(headers[REQUEST_ID], "req-1");
    assert_eq!(headers["x-forwarded-for"], "192.0.2.7");
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(headers["x-forwarded-host"], "gw.example");
    assert_eq!(headers.get_all(SUBJECT).iter().count(), 1);
    for gone in [
        "x-forwarded-user",
        "x_invoiceguard_roles",
        "x-invoiceguard-extra",
        "forwarded",
        "authorization",
        "x-api-key",
        "connection",
        "x-audit-me",
        "te",
        "transfer-encoding",
    ] {
        assert!(!headers.contains_key(gone), "{gone} was forwarded");
    }
    assert_eq!(headers["content-type"], "application/json");
}

#[test]
fn connection_cannot_remove_the_identity() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "connection",
        "x-invoiceguard-subject, x-request-id".parse().unwrap(),
    );
    let principal = alice();
    let context = ForwardContext {
        principal: &principal,
        request_id: "req-2",
        trace: &crate::trace::TraceContext::from_headers(&HeaderMap::new()),
        client_ip: "127.0.0.1".parse().unwrap(),
        tls: false,
    };
    upstream_headers(
        &mut headers,
        &context,
        None,
        true,
        &ForeignHeaders::new(&[]),
        &[],
    )
    .unwrap();
    assert_eq!(headers[SUBJECT], "alice");
    assert_eq!(headers[REQUEST_ID], "req-2");
}
