//! OCSF encoding of audit events, for sinks with `format = "ocsf"`: API Activity (class 6003) for
//! calls through the gateway, Authentication (class 3002) for refused logins. What OCSF has no
//! field for (the decision, the chain, the OAuth client) is kept under `unmapped`. Attributes
//! without a value are left out (OCSF has no `null`); the end-to-end tests validate every kind
//! of event against the OCSF schema of [`OCSF_VERSION`].

use serde_json::{Value, json};

/// The OCSF schema version these events follow.
pub const OCSF_VERSION: &str = "1.1.0";

/// OCSF severity: 1 informational, 3 medium, 4 high, 5 critical.
fn severity_id(severity: &str) -> u64 {
    match severity {
        "critical" => 5,
        "high" | "error" => 4,
        "warning" => 3,
        _ => 1,
    }
}

/// API Activity: 1 create, 2 read, 3 update, 4 delete, 99 other.
fn activity_id(method: &str) -> u64 {
    match method {
        "POST" => 1,
        "GET" | "HEAD" => 2,
        "PUT" | "PATCH" => 3,
        "DELETE" => 4,
        _ => 99,
    }
}

/// The HTTP methods OCSF 1.1.0's `http_request.http_method` names (PATCH is not among them).
const OCSF_METHODS: [&str; 8] = [
    "OPTIONS", "GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "CONNECT",
];

/// OCSF user type: 1 user, 2 admin, 3 system (a service account), 0 unknown.
fn user(actor: Option<&serde_json::Map<String, Value>>) -> Value {
    let Some(actor) = actor else {
        // OCSF wants a name, uid or account: the caller could not be identified.
        return json!({"name": "unknown", "type_id": 0, "type": "Unknown"});
    };
    let (type_id, kind) = match actor.get("type").and_then(Value::as_str) {
        Some("user") => (1, "User"),
        Some("admin") => (2, "Admin"),
        Some("service_account") => (3, "System"),
        _ => (0, "Unknown"),
    };
    json!({
        "uid": actor.get("id"),
        "type_id": type_id,
        "type": kind,
        "groups": actor.get("roles").and_then(Value::as_array).filter(|r| !r.is_empty()).map(|roles| {
            roles.iter().map(|role| json!({"name": role})).collect::<Vec<_>>()
        }),
    })
}

/// Leaves out attributes without a value (OCSF has no `null`).
fn prune(value: &mut Value) {
    match value {
        Value::Object(members) => {
            members.retain(|_, member| !member.is_null());
            members.values_mut().for_each(prune);
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

/// Milliseconds since the epoch of an RFC 3339 time, 0 when unreadable.
fn epoch_ms(time: &str) -> i128 {
    time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
        .map_or(0, |t| t.unix_timestamp_nanos() / 1_000_000)
}

/// The event (one audit line, parsed) as an OCSF event.
pub fn to_ocsf(event: &Value) -> Value {
    let text = |pointer: &str| {
        event
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let status = event
        .pointer("/outcome/status")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let allowed = text("/decision/effect") == "allow";
    // An `authorized` event is written before the request is forwarded: its outcome is not known.
    let (status_id, status_name) = match () {
        _ if text("/stage") == "authorized" => (0, "Unknown"),
        _ if allowed && (200..400).contains(&status) => (1, "Success"),
        _ => (2, "Failure"),
    };
    let actor_object = event.get("actor").and_then(Value::as_object);
    let method = text("/request/method");
    let ip = text("/source/ip");
    let mut ocsf = json!({
        "time": epoch_ms(&text("/time")),
        "severity_id": severity_id(&text("/severity")),
        "status_id": status_id,
        "status": status_name,
        "status_code": (status > 0).then(|| status.to_string()),
        "status_detail": event.pointer("/decision/detail"),
        "actor": match event.pointer("/source/session").and_then(Value::as_str) {
            Some(session) => json!({"user": user(actor_object), "session": {"uid": session}}),
            None => json!({"user": user(actor_object)}),
        },
        "src_endpoint": if ip.is_empty() { json!({"hostname": "invoiceguard"}) } else { json!({"ip": ip}) },
        "http_request": {
            "http_method": OCSF_METHODS.contains(&method.as_str()).then_some(method.as_str()),
            "url": {"path": text("/request/path")},
            "user_agent": event.pointer("/source/user_agent"),
            "uid": text("/request_id"),
        },
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "invoiceguard", "vendor_name": "invoiceguard"},
            "uid": text("/event_id"),
            "sequence": event.get("seq"),
            "correlation_uid": text("/request_id"),
        },
        "unmapped": {
            "decision": event.get("decision"),
            "stage": event.get("stage"),
            "method": (!method.is_empty()).then_some(method.as_str()),
            "client_id": event.pointer("/actor/client_id"),
            "auth_method": event.pointer("/actor/auth_method"),
            "route": event.pointer("/request/route"),
            "break_glass_reason": event.get("break_glass_reason"),
            "prev_hash": event.get("prev_hash"),
        },
    });
    let refused_login = text("/decision/reason") == "unauthenticated";
    let class = if refused_login {
        json!({
            "class_uid": 3002, "class_name": "Authentication", "category_uid": 3,
            "category_name": "Identity & Access Management", "activity_id": 1, "type_uid": 300_201,
            "auth_protocol": "OAuth 2.0", "auth_protocol_id": 99, "is_mfa": event.pointer("/actor/mfa"),
            "user": user(actor_object),
            // The service logged into (the class wants it, or a destination endpoint).
            "service": {"name": "invoiceguard"},
        })
    } else {
        let activity = activity_id(&text("/request/method"));
        json!({
            "class_uid": 6003, "class_name": "API Activity", "category_uid": 6,
            "category_name": "Application Activity", "activity_id": activity, "type_uid": 600_300 + activity,
            "api": {
                // Without a matched route: what was asked.
                "operation": event.get("action").filter(|a| !a.is_null()).cloned().unwrap_or_else(|| {
                    json!(format!("{method} {}", text("/request/path")).trim().to_owned())
                }),
                "request": {"uid": text("/request_id")},
                "response": {"code": status},
            },
            "resources": event.get("resource").filter(|r| !r.is_null()).map(|r| vec![json!({"type": r.get("type"), "uid": r.get("id")})]),
        })
    };
    if let (Some(target), Value::Object(extra)) = (ocsf.as_object_mut(), class) {
        target.extend(extra);
    }
    prune(&mut ocsf);
    ocsf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_api_activity_and_refused_logins_authentication() {
        let call = json!({
            "event_id": "e1", "seq": 7, "stage": "complete", "time": "2026-11-21T10:00:00Z", "request_id": "r1",
            "actor": {"type": "user", "id": "alice", "roles": ["invoicing"], "client_id": "web", "mfa": true},
            "source": {"ip": "192.0.2.1", "user_agent": "curl"}, "request": {"method": "POST", "path": "/invoices", "route": "/invoices"},
            "action": "invoice:create", "resource": {"type": "Invoice", "id": "*"},
            "decision": {"effect": "allow", "reason": "policy", "policies": ["role.invoicing"]},
            "outcome": {"status": 201}, "severity": "info", "prev_hash": "00"
        });
        let ocsf = to_ocsf(&call);
        assert_eq!(
            (
                ocsf["class_uid"].as_u64(),
                ocsf["activity_id"].as_u64(),
                ocsf["type_uid"].as_u64()
            ),
            (Some(6003), Some(1), Some(600_301))
        );
        assert_eq!(ocsf["status"], "Success");
        assert_eq!(ocsf["time"], 1_795_255_200_000_i64);
        assert_eq!(ocsf["actor"]["user"]["uid"], "alice");
        assert_eq!(ocsf["actor"]["user"]["groups"][0]["name"], "invoicing");
        assert_eq!(ocsf["api"]["operation"], "invoice:create");
        assert_eq!(ocsf["metadata"]["sequence"], 7);
        assert_eq!(
            ocsf["unmapped"]["decision"]["policies"][0],
            "role.invoicing"
        );

        let refused = json!({
            "event_id": "e2", "seq": 8, "time": "2026-11-21T10:00:01Z", "request_id": "r2", "actor": null,
            "source": {"ip": "192.0.2.9"}, "request": {"method": "GET", "path": "/invoices"},
            "decision": {"effect": "deny", "reason": "unauthenticated", "detail": "expired"},
            "outcome": {"status": 401}, "severity": "warning"
        });
        let ocsf = to_ocsf(&refused);
        assert_eq!(
            (ocsf["class_uid"].as_u64(), ocsf["type_uid"].as_u64()),
            (Some(3002), Some(300_201))
        );
        assert_eq!(
            (ocsf["status"].as_str(), ocsf["status_detail"].as_str()),
            (Some("Failure"), Some("expired"))
        );
        assert_eq!(ocsf["severity_id"], 3);
    }
}
