//! The API's routes.

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::store::{Invoice, Partner, Store};

/// The header through which the gateway names the verified caller.
const SUBJECT_HEADER: &str = "x-invoiceguard-subject";

pub(crate) fn json(status: u16, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: u16, message: &str) -> Response<Full<Bytes>> {
    json(status, &json!({"error": message}))
}

pub(crate) fn route(
    store: &mut Store,
    parts: &http::request::Parts,
    body: &Bytes,
) -> Response<Full<Bytes>> {
    let actor = parts
        .headers
        .get(SUBJECT_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned();
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(_) => return error(400, "body is not JSON"),
        }
    };
    let path = parts.uri.path();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = &parts.method;
    match (method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => json(200, &json!({"status": "ok"})),
        (&Method::GET, ["__journal"]) => json(200, &json!(store.journal_entries())),
        (&Method::GET | &Method::HEAD, ["invoices"]) => {
            json(200, &json!(store.invoices.values().collect::<Vec<_>>()))
        }
        (&Method::POST, ["invoices"]) => create_invoice(store, &actor, &body),
        (&Method::GET, ["invoices", "export"]) => export_invoices(store, &actor, parts.uri.query()),
        (&Method::GET | &Method::HEAD, ["invoices", id]) => match store.invoices.get(*id) {
            Some(invoice) => json(200, &json!(invoice)),
            None => error(404, "no such invoice"),
        },
        (&Method::PATCH, ["invoices", id]) => update_invoice(store, &actor, id, &body),
        (&Method::POST, ["invoices", id, step]) => invoice_step(store, &actor, id, step),
        (&Method::GET, ["partners"]) => {
            json(200, &json!(store.partners.values().collect::<Vec<_>>()))
        }
        (&Method::POST, ["partners"]) => create_partner(store, &actor, &body),
        (&Method::GET, ["partners", id]) => match store.partners.get(*id) {
            Some(partner) => json(200, &json!(partner)),
            None => error(404, "no such partner"),
        },
        (&Method::PATCH, ["partners", id]) => update_partner(store, &actor, id, &body, false),
        (&Method::PUT, ["partners", id, "bank-account"]) => {
            update_partner(store, &actor, id, &body, true)
        }
        (&Method::POST, ["exports"]) => create_export(store, &actor, &body),
        (&Method::GET, ["exports", id]) => match store.exports.get(*id) {
            Some(export) => json(200, export),
            None => error(404, "no such export"),
        },
        (&Method::GET, ["reports", "summary"]) => summary(store),
        (&Method::GET, ["settings"]) => json(200, &store.settings),
        (&Method::PUT, ["settings"]) => {
            if !body.is_object() {
                return error(400, "settings must be an object");
            }
            store.settings = body;
            store.event(&actor, "settings.updated", "settings");
            json(200, &store.settings)
        }
        (&Method::GET, ["users"]) => json(200, &json!(store.users)),
        (&Method::PUT, ["users", id, "roles"]) => {
            let Some(roles) = body.get("roles").and_then(Value::as_array) else {
                return error(400, "`roles` must be a list");
            };
            let roles: Vec<String> = roles
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect();
            store.users.insert((*id).to_owned(), roles.clone());
            store.event(&actor, "user.roles_assigned", id);
            json(200, &json!({"user": id, "roles": roles}))
        }
        (&Method::GET, ["audit-log"]) => json(200, &json!(store.events)),
        _ => error(404, "no such endpoint"),
    }
}

fn create_invoice(store: &mut Store, actor: &str, body: &Value) -> Response<Full<Bytes>> {
    let Some(partner_id) = body.get("partner_id").and_then(Value::as_str) else {
        return error(400, "`partner_id` is required");
    };
    if !store.partners.contains_key(partner_id) {
        return error(422, "no such partner");
    }
    let Some(amount) = body
        .get("amount")
        .and_then(Value::as_f64)
        .filter(|a| *a > 0.0)
    else {
        return error(400, "`amount` must be a positive number");
    };
    let id = store.new_id("INV");
    let invoice = Invoice {
        id: id.clone(),
        partner_id: partner_id.to_owned(),
        amount,
        currency: body
            .get("currency")
            .and_then(Value::as_str)
            .unwrap_or("EUR")
            .to_owned(),
        company: body
            .get("company")
            .and_then(Value::as_str)
            .unwrap_or("EXAMPLE-HU")
            .to_owned(),
        status: "draft",
        created_by: actor.to_owned(),
        approved_by: None,
        lines: body.get("lines").cloned().unwrap_or_else(|| json!([])),
    };
    store.invoices.insert(id.clone(), invoice.clone());
    store.event(actor, "invoice.created", &id);
    json(201, &json!(invoice))
}

fn update_invoice(store: &mut Store, actor: &str, id: &str, body: &Value) -> Response<Full<Bytes>> {
    let Some(invoice) = store.invoices.get_mut(id) else {
        return error(404, "no such invoice");
    };
    if invoice.status != "draft" {
        return error(409, "only a draft invoice can be changed");
    }
    if let Some(amount) = body.get("amount").and_then(Value::as_f64) {
        invoice.amount = amount;
    }
    if let Some(lines) = body.get("lines") {
        invoice.lines = lines.clone();
    }
    let invoice = invoice.clone();
    store.event(actor, "invoice.updated", id);
    json(200, &json!(invoice))
}

fn invoice_step(store: &mut Store, actor: &str, id: &str, step: &str) -> Response<Full<Bytes>> {
    let Some(invoice) = store.invoices.get_mut(id) else {
        return error(404, "no such invoice");
    };
    let (from, to): (&[&str], &'static str) = match step {
        "submit" => (&["draft"], "submitted"),
        "approve" => (&["submitted"], "approved"),
        "reject" => (&["submitted"], "rejected"),
        "cancel" => (&["draft", "submitted"], "cancelled"),
        _ => return error(404, "no such endpoint"),
    };
    if !from.contains(&invoice.status) {
        return error(
            409,
            &format!("cannot {step} an invoice that is {}", invoice.status),
        );
    }
    invoice.status = to;
    if step == "approve" {
        invoice.approved_by = Some(actor.to_owned());
    }
    let invoice = invoice.clone();
    store.event(actor, &format!("invoice.{to}"), id);
    json(200, &json!(invoice))
}

fn create_partner(store: &mut Store, actor: &str, body: &Value) -> Response<Full<Bytes>> {
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return error(400, "`name` is required");
    };
    let id = store.new_id("P");
    let partner = Partner {
        id: id.clone(),
        name: name.to_owned(),
        tax_id: body
            .get("tax_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        bank_account: body.get("bank_account").cloned().unwrap_or(Value::Null),
    };
    store.partners.insert(id.clone(), partner.clone());
    store.event(actor, "partner.created", &id);
    json(201, &json!(partner))
}

fn update_partner(
    store: &mut Store,
    actor: &str,
    id: &str,
    body: &Value,
    bank: bool,
) -> Response<Full<Bytes>> {
    let Some(partner) = store.partners.get_mut(id) else {
        return error(404, "no such partner");
    };
    if bank {
        if body.get("iban").and_then(Value::as_str).is_none() {
            return error(400, "`iban` is required");
        }
        partner.bank_account = body.clone();
    } else if let Some(name) = body.get("name").and_then(Value::as_str) {
        partner.name = name.to_owned();
    }
    let partner = partner.clone();
    store.event(
        actor,
        if bank {
            "partner.bank_account_changed"
        } else {
            "partner.updated"
        },
        id,
    );
    json(200, &json!(partner))
}

fn create_export(store: &mut Store, actor: &str, body: &Value) -> Response<Full<Bytes>> {
    let status = body.get("status").and_then(Value::as_str);
    let limit = body
        .get("limit")
        .and_then(Value::as_u64)
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let rows: Vec<Value> = store
        .invoices
        .values()
        .filter(|invoice| status.is_none_or(|s| invoice.status == s))
        .take(limit)
        .map(|invoice| json!(invoice))
        .collect();
    let id = store.new_id("EXP");
    let export = json!({"id": id, "created_by": actor, "row_count": rows.len(), "rows": rows});
    store.exports.insert(id.clone(), export.clone());
    store.event(actor, "export.created", &id);
    let mut response = json(201, &export);
    if let Ok(count) = header::HeaderValue::from_str(&rows.len().to_string()) {
        response.headers_mut().insert("x-total-count", count);
    }
    response
}

/// `GET /invoices/export?limit=N&format=csv|json`: the first N invoices (all without a limit) as
/// CSV (a header line, then a line per invoice) or JSON (`{"rows": […]}`), the count in
/// `X-Total-Count`. Read leniently, as many frameworks do: the last `limit` wins, and one that
/// is not a number means no limit — which is why the gateway reads it strictly first.
fn export_invoices(store: &mut Store, actor: &str, query: Option<&str>) -> Response<Full<Bytes>> {
    let (mut limit, mut csv) = (usize::MAX, false);
    for pair in query.unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("limit", value)) => limit = value.parse().unwrap_or(usize::MAX),
            Some(("format", value)) => csv = value == "csv",
            _ => {}
        }
    }
    let rows: Vec<&Invoice> = store.invoices.values().take(limit).collect();
    let count = rows.len();
    let mut response = if csv {
        let mut text = "id,partner_id,amount,currency,status,created_by\n".to_owned();
        for invoice in &rows {
            text.push_str(&format!(
                "{},{},{:.2},{},{},{}\n",
                invoice.id,
                invoice.partner_id,
                invoice.amount,
                invoice.currency,
                invoice.status,
                invoice.created_by
            ));
        }
        let mut response = Response::new(Full::new(Bytes::from(text)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/csv"),
        );
        response
    } else {
        json(200, &json!({"rows": rows}))
    };
    if let Ok(value) = header::HeaderValue::from_str(&count.to_string()) {
        response.headers_mut().insert("x-total-count", value);
    }
    store.event(actor, "invoices.exported", &count.to_string());
    response
}

fn summary(store: &Store) -> Response<Full<Bytes>> {
    let mut by_status = serde_json::Map::new();
    for invoice in store.invoices.values() {
        let count = by_status
            .get(invoice.status)
            .and_then(Value::as_u64)
            .unwrap_or(0);
        by_status.insert(invoice.status.to_owned(), json!(count + 1));
    }
    let total: f64 = store.invoices.values().map(|i| i.amount).sum();
    json(
        200,
        &json!({"invoices": store.invoices.len(), "by_status": by_status, "total_amount": total}),
    )
}
