//! A small JSON Schema checker — the keywords `docs/audit-event.schema.json` uses (`type`,
//! `enum`, `required`, `properties`, `additionalProperties: false`, `items`, `oneOf`,
//! `minimum`, `maxLength`, `pattern` as `^[0-9a-f]{N}$`) — so the documented schema is checked
//! against the events the gateway really writes.

use serde_json::Value;

/// The audit event schema from `docs/`.
pub(crate) fn audit_event_schema() -> Value {
    let path = invoiceguard_testkit::repo_root().join("docs/audit-event.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every way `value` breaks `schema`, with its JSON pointer.
pub(crate) fn violations(schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = options
            .iter()
            .filter(|option| violations(option, value, at).is_empty())
            .count();
        if matching != 1 {
            found.push(format!(
                "{at}: matches {matching} of the oneOf options: {value}"
            ));
        }
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let integer_as_number = actual == "integer" && types.contains(&"number");
        if !(types.contains(&actual) || integer_as_number) {
            found.push(format!("{at}: {actual}, expected {types:?}"));
            return found;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        found.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let (Some(minimum), Some(number)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && number < minimum
    {
        found.push(format!("{at}: {number} < {minimum}"));
    }
    if let (Some(max), Some(text)) = (
        schema.get("maxLength").and_then(Value::as_u64),
        value.as_str(),
    ) && text.chars().count() as u64 > max
    {
        found.push(format!("{at}: longer than {max}"));
    }
    if let (Some(pattern), Some(text)) = (
        schema.get("pattern").and_then(Value::as_str),
        value.as_str(),
    ) {
        let length: usize = pattern
            .trim_start_matches("^[0-9a-f]{")
            .trim_end_matches("}$")
            .parse()
            .unwrap();
        if text.len() != length || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            found.push(format!("{at}: `{text}` does not match {pattern}"));
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(required) {
                found.push(format!("{at}/{required}: missing"));
            }
        }
        for (key, item) in object {
            match properties.and_then(|p| p.get(key)) {
                Some(property) => found.extend(violations(property, item, &format!("{at}/{key}"))),
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    found.push(format!("{at}/{key}: not in the schema"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (index, item) in array.iter().enumerate() {
            found.extend(violations(items, item, &format!("{at}/{index}")));
        }
    }
    found
}

#[test]
fn the_checker_finds_what_breaks_the_schema() {
    let schema = audit_event_schema();
    let bad = serde_json::json!({
        "event_id": "e", "seq": 0, "stage": "later", "time": "t", "request_id": "r",
        "actor": {"type": "robot"}, "source": {"ip": "1", "user_agent": null},
        "request": {"method": "GET", "path": "/", "route": null, "protocol": "HTTP/1.1"},
        "action": null, "resource": null, "break_glass_reason": null,
        "decision": {"effect": "allow", "reason": "policy", "policies": [1], "policy_version": "v",
                     "detail": null, "shadow": null},
        "outcome": {"status": 200, "upstream_status": null, "duration_ms": 1.5, "error_side": null,
                    "export_rows": null},
        "prev_hash": "xyz", "token": "secret"
    });
    let found = violations(&schema, &bad, "").join("\n");
    for expected in [
        "/seq: 0 < 1",
        "/stage: \"later\" is not one of",
        "/actor: matches 0 of the oneOf",
        "/decision/policies/0: integer",
        "/severity: missing",
        "/prev_hash: `xyz` does not match",
        "/token: not in the schema",
    ] {
        assert!(
            found.contains(expected),
            "`{expected}` not found in:\n{found}"
        );
    }
}
