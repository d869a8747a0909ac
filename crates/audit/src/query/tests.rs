//! Tests of `query.rs`: trails with known content, each filter and question answered exactly.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;

/// A folder removed when the test ends.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("invoiceguard-query-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An event as the gateway writes it, with the fields a test sets.
fn event(
    time: &str,
    actor: Option<(&str, &str, bool)>,
    action: &str,
    resource: (&str, &str),
    effect: &str,
    status: u16,
) -> Value {
    json!({
        "event_id": "e", "seq": 1, "stage": "complete", "time": time, "instance": "gw-1",
        "request_id": format!("r-{time}"), "trace_id": null,
        "actor": actor.map(|(id, kind, mfa)| json!({"type": kind, "id": id, "roles": [], "scopes": [],
            "client_id": null, "auth_method": if kind == "user" { "bearer_jwt" } else { "api_key" },
            "amr": [], "acr": null, "mfa": mfa})),
        "source": {"ip": "10.0.0.7", "user_agent": null},
        "request": {"method": if action.ends_with(":read") || action.ends_with(":list") { "GET" } else { "POST" },
            "path": "/x", "route": null, "protocol": "HTTP/1.1"},
        "action": action, "resource": {"type": resource.0, "id": resource.1},
        "break_glass_reason": null,
        "decision": {"effect": effect, "reason": "policy", "policies": [], "policy_version": "v",
            "detail": null, "shadow": null},
        "outcome": {"status": status, "upstream_status": null, "duration_ms": 1.0,
            "response_bytes": null, "error_side": null, "export_rows": null},
        "severity": if effect == "deny" { "warning" } else { "info" },
        "category": if action.starts_with("export:") { "export" } else if action.starts_with("settings:") { "administration" } else { "authorization" },
        "prev_hash": "0",
    })
}

fn write(dir: &Path, name: &str, events: &[Value]) -> PathBuf {
    let path = dir.join(name);
    let text: String = events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// The request ids that match, in the order found.
fn ids(paths: &[PathBuf], filter: &Filter) -> Vec<String> {
    let mut found = Vec::new();
    scan(paths, filter, |_, view| {
        found.push(view.request_id.to_string())
    })
    .unwrap();
    found
}

fn alice() -> Option<(&'static str, &'static str, bool)> {
    Some(("alice", "user", true))
}

#[test]
fn two_replicas_are_merged_by_time_and_filters_select_exactly() {
    let dir = Dir::new("merge");
    let one = write(
        &dir.0,
        "one.jsonl",
        &[
            event(
                "2026-12-01T10:00:00.1Z",
                alice(),
                "invoice:create",
                ("Invoice", "INV-1"),
                "allow",
                201,
            ),
            event(
                "2026-12-01T10:00:03Z",
                Some(("bob", "user", true)),
                "invoice:approve",
                ("Invoice", "INV-1"),
                "allow",
                200,
            ),
            event(
                "2026-12-02T09:00:00Z",
                alice(),
                "invoice:approve",
                ("Invoice", "INV-1"),
                "deny",
                403,
            ),
        ],
    );
    let two = write(
        &dir.0,
        "two.jsonl",
        &[
            event(
                "2026-12-01T10:00:02Z",
                alice(),
                "invoice:read",
                ("Invoice", "INV-1"),
                "allow",
                200,
            ),
            event(
                "2026-12-01T11:00:00Z",
                Some(("erp-sync", "service_account", false)),
                "invoice:read",
                ("Invoice", "INV-2"),
                "allow",
                200,
            ),
        ],
    );
    let paths = [one, two];
    assert_eq!(
        ids(&paths, &Filter::default()),
        [
            "r-2026-12-01T10:00:00.1Z",
            "r-2026-12-01T10:00:02Z",
            "r-2026-12-01T10:00:03Z",
            "r-2026-12-01T11:00:00Z",
            "r-2026-12-02T09:00:00Z"
        ]
    );
    let invoice = Filter {
        resource_type: Some("Invoice".into()),
        resource_id: Some("INV-1".into()),
        ..Filter::default()
    };
    assert_eq!(ids(&paths, &invoice).len(), 4);
    let denied = Filter {
        actor: Some("alice".into()),
        decision: Some("deny".into()),
        ..Filter::default()
    };
    assert_eq!(ids(&paths, &denied), ["r-2026-12-02T09:00:00Z"]);
    let approvals = Filter {
        action: Some("invoice:app*".into()),
        status: Some("2xx".into()),
        ..Filter::default()
    };
    assert_eq!(ids(&paths, &approvals), ["r-2026-12-01T10:00:03Z"]);
    let day = Filter {
        from: Some("2026-12-01".parse().unwrap()),
        to: Some("2026-12-01T10:30:00+00:00".parse().unwrap()),
        ..Filter::default()
    };
    assert_eq!(ids(&paths, &day).len(), 3);
    let integration = Filter {
        principal_type: Some("service_account".into()),
        ..Filter::default()
    };
    assert_eq!(ids(&paths, &integration), ["r-2026-12-01T11:00:00Z"]);
    let severe = Filter {
        min_severity: Some("warning".into()),
        ..Filter::default()
    };
    assert_eq!(ids(&paths, &severe), ["r-2026-12-02T09:00:00Z"]);
}

#[test]
fn bulk_exports_and_stages_and_lines_that_are_not_events() {
    let dir = Dir::new("bulk");
    let mut small = event(
        "2026-12-01T10:00:00Z",
        alice(),
        "export:create",
        ("Export", "*"),
        "allow",
        200,
    );
    small["outcome"]["export_rows"] = json!(40);
    let mut bulk = event(
        "2026-12-01T10:01:00Z",
        alice(),
        "export:create",
        ("Export", "*"),
        "allow",
        200,
    );
    bulk["outcome"]["export_rows"] = json!(5000);
    let mut authorized = bulk.clone();
    authorized["stage"] = json!("authorized");
    authorized["request_id"] = json!("r-authorized");
    let path = write(&dir.0, "trail.jsonl", &[small, authorized, bulk]);
    std::fs::write(
        &path,
        format!(
            "{}not an event\n{{\"torn\":",
            std::fs::read_to_string(&path).unwrap()
        ),
    )
    .unwrap();
    let exports = Filter {
        action: Some("export:*".into()),
        ..Filter::default()
    };
    assert_eq!(ids(std::slice::from_ref(&path), &exports).len(), 2);
    let bulk = Filter {
        bulk: true,
        ..exports.clone()
    };
    assert_eq!(
        ids(std::slice::from_ref(&path), &bulk),
        ["r-2026-12-01T10:01:00Z"]
    );
    let every = Filter {
        all_stages: true,
        ..exports
    };
    assert_eq!(ids(std::slice::from_ref(&path), &every).len(), 3);
    let (read, skipped) = scan(&[path], &Filter::default(), |_, _| {}).unwrap();
    assert_eq!((read, skipped), (5, 2), "two lines are not events");
}

#[test]
fn who_logged_in_groups_callers_and_refused_credentials() {
    let dir = Dir::new("logins");
    let mut refused = event(
        "2026-12-01T10:00:05Z",
        None,
        "invoice:list",
        ("Invoice", "*"),
        "deny",
        401,
    );
    refused["category"] = json!("authentication");
    refused["decision"]["reason"] = json!("unauthenticated");
    refused["decision"]["detail"] = json!("bad_signature");
    let path = write(
        &dir.0,
        "trail.jsonl",
        &[
            event(
                "2026-12-01T10:00:00Z",
                alice(),
                "invoice:read",
                ("Invoice", "INV-1"),
                "allow",
                200,
            ),
            event(
                "2026-12-01T10:00:04Z",
                alice(),
                "invoice:approve",
                ("Invoice", "INV-1"),
                "deny",
                403,
            ),
            event(
                "2026-12-01T10:00:06Z",
                Some(("alice", "user", false)),
                "invoice:read",
                ("Invoice", "INV-1"),
                "allow",
                200,
            ),
            refused.clone(),
            refused,
        ],
    );
    let mut logins = Logins::default();
    scan(&[path], &Filter::default(), |_, view| logins.add(view)).unwrap();
    let callers: Vec<_> = logins
        .callers()
        .map(|l| (l.actor.as_str(), l.mfa, l.requests, l.denied))
        .collect();
    assert_eq!(callers, [("alice", false, 1, 0), ("alice", true, 2, 1)]);
    let first = logins.callers().find(|l| l.mfa).unwrap();
    assert_eq!(
        (first.first.as_str(), first.last.as_str()),
        ("2026-12-01T10:00:00Z", "2026-12-01T10:00:04Z")
    );
    let failed: Vec<_> = logins.failed().collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (failed[0].count, failed[0].reasons.clone()),
        (2, vec!["bad_signature".to_owned()])
    );
}

#[test]
fn a_spool_folder_is_read_as_its_segments_in_order() {
    let dir = Dir::new("spool");
    write(
        &dir.0,
        "00000000000000000003.jsonl",
        &[event(
            "2026-12-01T10:00:03Z",
            alice(),
            "invoice:read",
            ("Invoice", "INV-3"),
            "allow",
            200,
        )],
    );
    write(
        &dir.0,
        "00000000000000000001.jsonl",
        &[
            event(
                "2026-12-01T10:00:01Z",
                alice(),
                "invoice:read",
                ("Invoice", "INV-1"),
                "allow",
                200,
            ),
            event(
                "2026-12-01T10:00:02Z",
                alice(),
                "invoice:read",
                ("Invoice", "INV-2"),
                "allow",
                200,
            ),
        ],
    );
    std::fs::write(dir.0.join("head"), "3 abc").unwrap();
    let found = ids(std::slice::from_ref(&dir.0), &Filter::default());
    assert_eq!(
        found,
        [
            "r-2026-12-01T10:00:01Z",
            "r-2026-12-01T10:00:02Z",
            "r-2026-12-01T10:00:03Z"
        ]
    );
}

#[test]
fn bounds_are_dates_or_rfc_3339_in_any_offset() {
    assert_eq!(
        "2026-12-01".parse::<Bound>().unwrap(),
        Bound("2026-12-01T00:00:00".into())
    );
    assert_eq!(
        "2026-12-01T12:30:00+02:00".parse::<Bound>().unwrap(),
        Bound("2026-12-01T10:30:00".into())
    );
    assert!("yesterday".parse::<Bound>().is_err());
}

#[test]
fn a_missing_trail_is_named_and_an_empty_period_is_said() {
    let missing = std::env::temp_dir().join("invoiceguard-no-such-trail");
    let error = scan(
        std::slice::from_ref(&missing),
        &Filter::default(),
        |_, _| {},
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("invoiceguard-no-such-trail"),
        "{error}"
    );
    let (day, next): (Bound, Bound) =
        ("2026-12-01".parse().unwrap(), "2026-12-02".parse().unwrap());
    assert!(empty_period(Some(&day), Some(&next)).is_none());
    assert!(empty_period(Some(&next), Some(&day)).is_some());
    assert!(empty_period(Some(&day), Some(&day)).is_some());
    assert!(empty_period(Some(&day), None).is_none());
    // Bounds order as times, whatever their spelling.
    let noon: Bound = "2026-12-01T13:00:00+01:00".parse().unwrap();
    assert!(day < noon && noon < next);
}
