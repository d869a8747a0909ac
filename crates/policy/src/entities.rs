//! `entities.toml`: static attributes the security team keeps beside the policies — approval
//! limits and export quotas, per role, per user or per integration account.

use std::collections::HashMap;
use std::path::Path;

use invoiceguard_authn::{Principal, PrincipalKind};
use serde::Deserialize;

use crate::problem::Problem;

/// The entities file's name in the policy folder (optional).
pub const ENTITIES_FILE: &str = "entities.toml";

/// Attributes of one role, user or integration account; absent means "not granted here".
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Attributes {
    /// The largest invoice amount (in the invoice's currency units) this principal may approve.
    pub(crate) approval_limit: Option<u64>,
    /// Export rows per rolling day.
    pub(crate) export_rows_per_day: Option<u64>,
    /// Exports per rolling day.
    pub(crate) exports_per_day: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntitiesFile {
    #[serde(default)]
    roles: HashMap<String, Attributes>,
    #[serde(default)]
    users: HashMap<String, Attributes>,
    #[serde(default)]
    service_accounts: HashMap<String, Attributes>,
}

/// The loaded file.
#[derive(Debug, Default)]
pub(crate) struct Entities(EntitiesFile);

/// A principal's effective limits: its own entry where it has one, else the largest of its roles',
/// else nothing (0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// The largest amount it may approve.
    pub approval_limit: u64,
    /// Export rows per rolling day.
    pub export_rows_per_day: u64,
    /// Exports per rolling day.
    pub exports_per_day: u64,
}

impl Entities {
    /// The roles the file gives attributes to.
    pub(crate) fn role_names(&self) -> impl Iterator<Item = String> + '_ {
        self.0.roles.keys().cloned()
    }

    /// Parses the file's text (`None`: the folder has none, so nothing is granted here);
    /// problems name its line.
    pub(crate) fn parse(path: &Path, text: Option<&str>, problems: &mut Vec<Problem>) -> Self {
        let Some(text) = text else {
            return Self::default();
        };
        match toml::from_str(text) {
            Ok(file) => Self(file),
            Err(error) => {
                let message = error.message().to_owned();
                problems.push(match error.span() {
                    Some(span) => Problem::at(path, text, span.start, message),
                    None => Problem::in_file(path, message),
                });
                Self::default()
            }
        }
    }

    /// Every entry of the file as written (`role`, `user` or `service_account`, its name, its
    /// attributes; an attribute not set is 0), sorted by kind and name.
    pub(crate) fn entries(&self) -> Vec<(&'static str, String, Limits)> {
        let mut entries = Vec::new();
        for (kind, map) in [
            ("role", &self.0.roles),
            ("user", &self.0.users),
            ("service_account", &self.0.service_accounts),
        ] {
            let mut names: Vec<&String> = map.keys().collect();
            names.sort();
            for name in names {
                let a = map[name];
                entries.push((
                    kind,
                    name.clone(),
                    Limits {
                        approval_limit: a.approval_limit.unwrap_or(0),
                        export_rows_per_day: a.export_rows_per_day.unwrap_or(0),
                        exports_per_day: a.exports_per_day.unwrap_or(0),
                    },
                ));
            }
        }
        entries
    }

    /// The principal's effective limits.
    pub(crate) fn limits(&self, principal: &Principal) -> Limits {
        let own = match principal.kind {
            PrincipalKind::User => self.0.users.get(&principal.id),
            PrincipalKind::ServiceAccount => self.0.service_accounts.get(&principal.id),
        };
        let roles: Vec<&Attributes> = principal
            .roles
            .iter()
            .filter_map(|r| self.0.roles.get(r))
            .collect();
        let pick = |field: fn(&Attributes) -> Option<u64>| -> u64 {
            own.and_then(field)
                .or_else(|| roles.iter().filter_map(|a| field(a)).max())
                .unwrap_or(0)
        };
        Limits {
            approval_limit: pick(|a| a.approval_limit),
            export_rows_per_day: pick(|a| a.export_rows_per_day),
            exports_per_day: pick(|a| a.exports_per_day),
        }
    }
}
