//! The roles file: IdP role and group names mapped to the Cedar roles they grant.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

/// The file as written: `[roles]` with `"idp name" = ["cedar-role", …]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesFile {
    roles: HashMap<String, toml::Spanned<Vec<String>>>,
}

/// IdP names to Cedar roles.
#[derive(Debug, Clone, Default)]
pub(crate) struct RoleMap(HashMap<String, Vec<String>>);

impl RoleMap {
    /// Loads and checks the file; a problem names the file, line and column.
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let at = |offset: usize| {
            let before = &text[..offset.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{}:{line}:{column}", path.display())
        };
        let file: RolesFile = toml::from_str(&text)
            .map_err(|e| format!("{}: {}", at(e.span().map_or(0, |s| s.start)), e.message()))?;
        let mut map = HashMap::new();
        for (name, roles) in file.roles {
            let offset = roles.span().start;
            let roles = roles.into_inner();
            if let Some(bad) = roles
                .iter()
                .find(|r| !crate::principal::is_safe_name(r, true))
            {
                return Err(format!("{}: `{bad}` is not a usable role name", at(offset)));
            }
            map.insert(name, roles);
        }
        Ok(Self(map))
    }

    /// The Cedar roles for the IdP's names, sorted and without repeats.
    pub(crate) fn map<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut roles: Vec<String> = names
            .into_iter()
            .filter_map(|name| self.0.get(name))
            .flatten()
            .cloned()
            .collect();
        roles.sort();
        roles.dedup();
        roles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_groups_and_reports_positions() {
        let dir = std::env::temp_dir().join(format!("invoiceguard-roles-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("roles.toml");
        std::fs::write(
            &file,
            "[roles]\n\"/finance/ap\" = [\"invoicing\"]\nboss = [\"approver\", \"invoicing\"]\n",
        )
        .unwrap();
        let map = RoleMap::load(&file).unwrap();
        assert_eq!(
            map.map(["/finance/ap", "boss", "unknown"]),
            ["approver", "invoicing"]
        );
        std::fs::write(
            &file,
            "[roles]\nok = [\"invoicing\"]\nbad = [\"two words\"]\n",
        )
        .unwrap();
        let error = RoleMap::load(&file).unwrap_err();
        assert!(
            error.contains("roles.toml:3:7") && error.contains("two words"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
