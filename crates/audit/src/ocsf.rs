//! OCSF encoding of audit events, for sinks with `format = "ocsf"`: API Activity (class 6003) for
//! calls through the gateway, Authentication (class 3002) for refused logins. What OCSF has no
//! field for (the decision, the chain) is kept under `unmapped`.

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
    let success = allowed && (200..400).contains(&status);
    let actor = match event.get("actor") {
        Some(Value::Object(actor)) => json!({
            "user": {
                "uid": actor.get("id"),
                "type": if actor.get("type").and_then(Value::as_str) == Some("user") { "User" } else { "System" },
                "groups": actor.get("roles").and_then(Value::as_array).map(|roles| {
                    roles.iter().map(|role| json!({"name": role})).collect::<Vec<_>>()
                }),
            },
            "app_uid": actor.get("client_id"),
        }),
        _ => Value::Null,
    };
    let mut ocsf = json!({
        "time": epoch_ms(&text("/time")),
        "severity_id": severity_id(&text("/severity")),
        "status_id": if success { 1 } else { 2 },
        "status": if success { "Success" } else { "Failure" },
        "status_code": status.to_string(),
        "status_detail": event.pointer("/decision/detail"),
        "actor": actor,
        "src_endpoint": {"ip": text("/source/ip")},
        "http_request": {
            "http_method": text("/request/method"),
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
            "auth_protocol": "OAuth 2.0", "is_mfa": event.pointer("/actor/mfa"),
        })
    } else {
        let activity = activity_id(&text("/request/method"));
        json!({
            "class_uid": 6003, "class_name": "API Activity", "category_uid": 6,
            "category_name": "Application Activity", "activity_id": activity, "type_uid": 600_300 + activity,
            "api": {
                "operation": event.get("action"),
                "request": {"uid": text("/request_id")},
                "response": {"code": status},
            },
            "resources": event.get("resource").filter(|r| !r.is_null()).map(|r| vec![json!({"type": r.get("type"), "uid": r.get("id")})]),
        })
    };
    if let (Some(target), Value::Object(extra)) = (ocsf.as_object_mut(), class) {
        target.extend(extra);
    }
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
