//! The API's data, in memory.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use serde_json::{Value, json};

/// How many requests the journal keeps.
const JOURNAL_LEN: usize = 500;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Invoice {
    pub(crate) id: String,
    pub(crate) partner_id: String,
    pub(crate) amount: f64,
    pub(crate) currency: String,
    /// The legal entity issuing the invoice.
    pub(crate) company: String,
    pub(crate) status: &'static str,
    pub(crate) created_by: String,
    pub(crate) approved_by: Option<String>,
    pub(crate) lines: Value,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Partner {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) tax_id: String,
    pub(crate) bank_account: Value,
}

/// One request as received, for tests.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct JournalEntry {
    method: String,
    target: String,
    version: String,
    /// The SHA-256 of the client certificate presented over TLS, if any.
    client_certificate: Option<String>,
    headers: Vec<(String, String)>,
}

pub(crate) struct Store {
    pub(crate) invoices: BTreeMap<String, Invoice>,
    pub(crate) partners: BTreeMap<String, Partner>,
    pub(crate) exports: BTreeMap<String, Value>,
    pub(crate) settings: Value,
    pub(crate) users: BTreeMap<String, Vec<String>>,
    pub(crate) events: Vec<Value>,
    pub(crate) next_id: u64,
    journal: VecDeque<JournalEntry>,
}

impl Store {
    /// A store with a few partners, users and one draft invoice.
    pub(crate) fn seeded() -> Self {
        let mut store = Self {
            invoices: BTreeMap::new(),
            partners: BTreeMap::new(),
            exports: BTreeMap::new(),
            settings: json!({"company": "Example Kft.", "default_currency": "EUR", "e_invoicing": {"network": "peppol"}}),
            users: BTreeMap::new(),
            events: Vec::new(),
            next_id: 1,
            journal: VecDeque::new(),
        };
        for (id, name, tax) in [
            ("P-1", "Acme Supplies", "HU12345678"),
            ("P-2", "Globex Trading", "HU87654321"),
        ] {
            store.partners.insert(
                id.to_owned(),
                Partner {
                    id: id.to_owned(),
                    name: name.to_owned(),
                    tax_id: tax.to_owned(),
                    bank_account: json!({"iban": "HU42117730161111101800000000", "bic": "OTPVHUHB"}),
                },
            );
        }
        for (user, role) in [
            ("alice", "invoicing"),
            ("bob", "approver"),
            ("carol", "accountant"),
            ("dave", "admin"),
            ("erin", "auditor"),
        ] {
            store.users.insert(user.to_owned(), vec![role.to_owned()]);
        }
        let id = store.new_id("INV");
        store.invoices.insert(
            id.clone(),
            Invoice {
                id,
                partner_id: "P-1".to_owned(),
                amount: 1200.0,
                currency: "EUR".to_owned(),
                company: "EXAMPLE-HU".to_owned(),
                status: "draft",
                created_by: "alice".to_owned(),
                approved_by: None,
                lines: json!([{"description": "Consulting", "quantity": 1, "unit_price": 1200.0}]),
            },
        );
        store
    }

    pub(crate) fn new_id(&mut self, prefix: &str) -> String {
        let id = format!("{prefix}-{}", self.next_id);
        self.next_id += 1;
        id
    }

    /// Records what happened in the API's own log (`GET /audit-log`).
    pub(crate) fn event(&mut self, actor: &str, what: &str, object: &str) {
        self.events
            .push(json!({"actor": actor, "event": what, "object": object}));
    }

    pub(crate) fn journal(
        &mut self,
        parts: &http::request::Parts,
        client_certificate: Option<String>,
    ) {
        if self.journal.len() == JOURNAL_LEN {
            self.journal.pop_front();
        }
        self.journal.push_back(JournalEntry {
            method: parts.method.to_string(),
            target: parts.uri.to_string(),
            version: format!("{:?}", parts.version),
            client_certificate,
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.to_string(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        });
    }

    pub(crate) fn journal_entries(&self) -> Vec<JournalEntry> {
        self.journal.iter().cloned().collect()
    }
}
