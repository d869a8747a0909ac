//! `routes.toml`: how the invoicing API's HTTP surface maps to Cedar actions and resources.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::problem::Problem;

/// The id of the resource a collection route acts on (`GET /invoices`, `POST /invoices`).
pub const COLLECTION_ID: &str = "*";

/// The routes file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    #[serde(default)]
    route: Vec<Spanned<RouteSpec>>,
    /// How to ask the upstream about a resource the gateway has not seen: by entity type.
    #[serde(default)]
    lookup: std::collections::HashMap<String, Lookup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSpec {
    method: Spanned<String>,
    path: Spanned<String>,
    action: Spanned<String>,
    resource: Spanned<ResourceSpec>,
    facts: Option<Spanned<Vec<Fact>>>,
    record_creator: Option<Spanned<String>>,
    export: Option<ExportSpec>,
    rate_limit: Option<RateLimit>,
}

/// At most `requests` per `window_s` seconds for each principal on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed in the window.
    pub requests: u64,
    /// The sliding window, in seconds.
    pub window_s: u64,
}

/// A fact about the resource that a route's decision needs; without it the route fails closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fact {
    /// Who created it (recorded at creation, or looked up).
    Creator,
    /// Its amount (looked up).
    Amount,
    /// Its currency (looked up).
    Currency,
    /// Its status (looked up).
    Status,
    /// The company issuing it (looked up).
    Company,
}

/// A request to the upstream that answers facts about one resource.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    /// The path to GET, with `{id}` for the resource id.
    pub path: String,
    /// JSON pointer to the creator's subject in the answer.
    pub creator: Option<String>,
    /// JSON pointer to the amount in the answer.
    pub amount: Option<String>,
    /// JSON pointer to the currency in the answer.
    pub currency: Option<String>,
    /// JSON pointer to the status in the answer.
    pub status: Option<String>,
    /// JSON pointer to the company (legal entity) in the answer.
    pub company: Option<String>,
}

/// How an export route counts rows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSpec {
    /// Where the request says how many rows it asks for: a JSON pointer into its body
    /// (`/limit`) or a query parameter (`query:limit`); when the request does not say, the whole
    /// remaining daily quota is reserved.
    pub requested: Option<Requested>,
    /// The most rows one request may ask for ([`DEFAULT_MAX_ROWS`] when absent): a size outside
    /// 1..=max is refused (400) before any decision.
    #[serde(default = "default_max_rows")]
    pub max_rows: u64,
    /// How the response says how many rows it holds: `header:<name>`, `json:<pointer to an
    /// array>` or `csv` (lines after the header line).
    pub rows: RowCount,
    /// Whether every export of the route is watermarked (its id, who and when, in the file) and
    /// traced (the SHA-256 of the bytes delivered, in an audit event): `watermark = true`, or
    /// `watermark = { json_member = "_export" }` for the member a JSON object answer gets.
    #[serde(default)]
    pub watermark: Option<WatermarkSpec>,
}

/// How an export is watermarked: a CSV answer gets a trailing comment line, a JSON object answer
/// a first member named `json_member`; any other answer is traced by its hash only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkSpec {
    /// The member a JSON object answer gets (default `_export`).
    pub json_member: String,
}

impl<'de> Deserialize<'de> for WatermarkSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            On(bool),
            Table { json_member: Option<String> },
        }
        let member = |name: Option<String>| {
            let name = name.unwrap_or_else(|| "_export".to_owned());
            if name.is_empty()
                || name
                    .chars()
                    .any(|c| c == '"' || c == '\\' || c.is_control())
            {
                Err(serde::de::Error::custom(
                    "json_member must be a plain name (no quotes, backslashes or control characters)",
                ))
            } else {
                Ok(Self { json_member: name })
            }
        };
        match Written::deserialize(deserializer)? {
            Written::On(true) => member(None),
            Written::On(false) => Err(serde::de::Error::custom(
                "`watermark = false`: leave the key out instead",
            )),
            Written::Table { json_member } => member(json_member),
        }
    }
}

/// The most rows an export may ask for when its route does not say.
pub const DEFAULT_MAX_ROWS: u64 = 1_000_000;

fn default_max_rows() -> u64 {
    DEFAULT_MAX_ROWS
}

/// Where an export request says how many rows it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// A JSON pointer into the request body, e.g. `/limit`.
    Body(String),
    /// A query parameter, e.g. `limit` (written `query:limit`).
    Query(String),
}

impl std::fmt::Display for Requested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Body(pointer) => write!(f, "{pointer}"),
            Self::Query(name) => write!(f, "query:{name}"),
        }
    }
}

impl<'de> Deserialize<'de> for Requested {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if let Some(name) = text.strip_prefix("query:") {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            {
                return Err(serde::de::Error::custom(format!(
                    "`{text}`: a query parameter's name is letters, digits, `_`, `-` or `.`"
                )));
            }
            return Ok(Self::Query(name.to_owned()));
        }
        if text.starts_with('/') {
            return Ok(Self::Body(text));
        }
        Err(serde::de::Error::custom(format!(
            "`{text}` is not a JSON pointer into the body (`/limit`) or `query:<name>`"
        )))
    }
}

/// Where the rows of an export response are counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowCount {
    /// A header holding the count, e.g. `X-Total-Count`.
    Header(String),
    /// The length of a JSON array at a pointer.
    JsonArray(String),
    /// CSV lines after the header line.
    Csv,
}

impl<'de> Deserialize<'de> for RowCount {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if let Some(name) = text.strip_prefix("header:") {
            return Ok(Self::Header(name.to_ascii_lowercase()));
        }
        if let Some(pointer) = text.strip_prefix("json:") {
            return Ok(Self::JsonArray(pointer.to_owned()));
        }
        if text == "csv" {
            return Ok(Self::Csv);
        }
        Err(serde::de::Error::custom(format!(
            "`{text}` is not `header:<name>`, `json:<pointer>` or `csv`"
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceSpec {
    #[serde(rename = "type")]
    entity_type: String,
    id: Option<String>,
}

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// Where a route's resource id comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ResourceId {
    Fixed(String),
    Param(usize),
}

/// One route: method and path template to Cedar action and resource.
#[derive(Debug, Clone)]
pub struct Route {
    /// The HTTP method (a GET route also answers HEAD).
    pub method: String,
    /// The path template as written, e.g. `/invoices/{id}/approve`; also the route's name in audit
    /// events and metrics.
    pub template: String,
    /// The Cedar action id, e.g. `invoice:approve`.
    pub action: String,
    /// The Cedar entity type of the resource, e.g. `Invoice`.
    pub resource_type: String,
    /// Resource facts the decision needs (fail closed without them).
    pub facts: Vec<Fact>,
    /// On a 2xx JSON answer, the JSON pointer to the created resource's id: its creator is
    /// recorded.
    pub record_creator: Option<String>,
    /// Export counting, for export routes.
    pub export: Option<ExportSpec>,
    /// Per-principal request limit (429 past it; 503 when the count cannot be had).
    pub rate_limit: Option<RateLimit>,
    segments: Vec<Segment>,
    resource_id: ResourceId,
    /// Byte offsets of the route's `action` and `resource` in `routes.toml` (for problems).
    pub(crate) action_at: usize,
    pub(crate) resource_at: usize,
}

/// A request's route and the resource it names.
#[derive(Debug, Clone)]
pub struct RouteMatch<'a> {
    /// The matched route.
    pub route: &'a Route,
    /// The resource id, from the path or fixed by the route.
    pub resource_id: String,
}

/// All routes of `routes.toml`.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    lookups: std::collections::HashMap<String, Lookup>,
}

impl RouteTable {
    /// Parses `routes.toml`. Problems with single routes are collected (with their positions) and
    /// the routes that are well formed are kept, so that every problem is reported at once.
    pub(crate) fn parse(file: &Path, text: &str, problems: &mut Vec<Problem>) -> Self {
        let parsed: RoutesFile = match toml::from_str(text) {
            Ok(parsed) => parsed,
            Err(error) => {
                let message = error.message().to_owned();
                problems.push(match error.span() {
                    Some(span) => Problem::at(file, text, span.start, message),
                    None => Problem::in_file(file, message),
                });
                return Self::default();
            }
        };
        if parsed.route.is_empty() {
            problems.push(Problem::in_file(
                file,
                "no `[[route]]` is defined: every request would be denied",
            ));
        }
        let mut routes: Vec<Route> = Vec::new();
        for spec in parsed.route {
            let at = spec.span().start;
            let spec = spec.into_inner();
            let Some(route) = Route::build(&spec, file, text, problems) else {
                continue;
            };
            if let Some(other) = routes
                .iter()
                .find(|r| r.method == route.method && r.shape() == route.shape())
            {
                problems.push(Problem::at(
                    file,
                    text,
                    at,
                    format!(
                        "route `{} {}` overlaps `{} {}`",
                        route.method, route.template, other.method, other.template
                    ),
                ));
                continue;
            }
            if !route.facts.is_empty()
                && !parsed.lookup.contains_key(&route.resource_type)
                && route.facts.contains(&Fact::Amount)
            {
                problems.push(Problem::at(file, text, at, format!(
                    "route `{} {}` needs facts about a `{}` but no `[lookup.{}]` says how to ask the upstream",
                    route.method, route.template, route.resource_type, route.resource_type
                )));
                continue;
            }
            routes.push(route);
        }
        for (kind, lookup) in &parsed.lookup {
            for pointer in [
                &lookup.creator,
                &lookup.amount,
                &lookup.currency,
                &lookup.status,
                &lookup.company,
            ]
            .into_iter()
            .flatten()
            {
                if !pointer.is_empty() && !pointer.starts_with('/') {
                    problems.push(Problem::in_file(
                        file,
                        format!("[lookup.{kind}]: `{pointer}` is not a JSON pointer"),
                    ));
                }
            }
            if !lookup.path.starts_with('/') || !lookup.path.contains("{id}") {
                problems.push(Problem::in_file(
                    file,
                    format!(
                        "[lookup.{kind}]: path `{}` must start with `/` and hold `{{id}}`",
                        lookup.path
                    ),
                ));
            }
        }
        Self {
            routes,
            lookups: parsed.lookup,
        }
    }

    /// How to look up facts about a resource type at the upstream.
    pub fn lookup(&self, resource_type: &str) -> Option<&Lookup> {
        self.lookups.get(resource_type)
    }

    /// All routes, in file order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for a method and a normalized, decoded path. Literal segments win over
    /// parameters (`/invoices/export` over `/invoices/{id}`), left to right.
    pub fn find(&self, method: &str, segments: &[String]) -> Option<RouteMatch<'_>> {
        let method = if method == "HEAD" { "GET" } else { method };
        self.routes
            .iter()
            .filter(|route| route.method == method && route.matches(segments))
            .max_by(|a, b| a.shape().cmp(&b.shape()))
            .map(|route| RouteMatch {
                route,
                resource_id: route.resource_id(segments),
            })
    }
}

impl Route {
    fn build(
        spec: &RouteSpec,
        file: &Path,
        text: &str,
        problems: &mut Vec<Problem>,
    ) -> Option<Self> {
        let before = problems.len();
        let method = spec.method.get_ref();
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            problems.push(Problem::at(
                file,
                text,
                spec.method.span().start,
                format!("`{method}` is not an HTTP method in capitals"),
            ));
        }
        let template = spec.path.get_ref();
        let segments = parse_template(template).unwrap_or_else(|message| {
            problems.push(Problem::at(file, text, spec.path.span().start, message));
            Vec::new()
        });
        let resource = spec.resource.get_ref();
        let resource_id = match resource.id.as_deref() {
            None => ResourceId::Fixed(COLLECTION_ID.to_owned()),
            Some(id) => {
                match id.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) => match segments
                        .iter()
                        .position(|s| *s == Segment::Param(name.to_owned()))
                    {
                        Some(index) => ResourceId::Param(index),
                        None => {
                            problems.push(Problem::at(
                                file,
                                text,
                                spec.resource.span().start,
                                format!("resource id `{id}` names no parameter of `{template}`"),
                            ));
                            ResourceId::Fixed(String::new())
                        }
                    },
                    None if id.contains(['{', '}']) || id.is_empty() => {
                        problems.push(Problem::at(file, text, spec.resource.span().start, format!("resource id `{id}` must be a literal or exactly one `{{parameter}}`")));
                        ResourceId::Fixed(String::new())
                    }
                    None => ResourceId::Fixed(id.to_owned()),
                }
            }
        };
        if let Some(facts) = &spec.facts
            && !facts.get_ref().is_empty()
            && matches!(resource_id, ResourceId::Fixed(_))
        {
            problems.push(Problem::at(
                file,
                text,
                facts.span().start,
                "facts need a resource id from the path".to_owned(),
            ));
        }
        if let Some(pointer) = &spec.record_creator
            && !pointer.get_ref().starts_with('/')
        {
            problems.push(Problem::at(
                file,
                text,
                pointer.span().start,
                format!("`{}` is not a JSON pointer", pointer.get_ref()),
            ));
        }
        if let Some(export) = &spec.export
            && export.max_rows == 0
        {
            problems.push(Problem::at(
                file,
                text,
                spec.action.span().start,
                "export.max_rows must be at least 1".to_owned(),
            ));
        }
        if let Some(limit) = spec.rate_limit
            && (limit.requests == 0 || limit.window_s == 0)
        {
            problems.push(Problem::at(
                file,
                text,
                spec.action.span().start,
                "rate_limit needs requests and window_s of at least 1".to_owned(),
            ));
        }
        if problems.len() > before {
            return None;
        }
        Some(Self {
            method: method.clone(),
            template: template.clone(),
            action: spec.action.get_ref().clone(),
            resource_type: resource.entity_type.clone(),
            segments,
            resource_id,
            action_at: spec.action.span().start,
            resource_at: spec.resource.span().start,
            facts: spec
                .facts
                .as_ref()
                .map(|f| f.get_ref().clone())
                .unwrap_or_default(),
            record_creator: spec.record_creator.as_ref().map(|p| p.get_ref().clone()),
            export: spec.export.clone(),
            rate_limit: spec.rate_limit,
        })
    }

    /// Literal segments as `true`, parameters as `false`: compared to rank matches.
    fn shape(&self) -> Vec<(bool, &str)> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(text) => (true, text.as_str()),
                Segment::Param(_) => (false, ""),
            })
            .collect()
    }

    fn matches(&self, segments: &[String]) -> bool {
        self.segments.len() == segments.len()
            && self
                .segments
                .iter()
                .zip(segments)
                .all(|(template, actual)| match template {
                    Segment::Literal(text) => text == actual,
                    Segment::Param(_) => !actual.is_empty(),
                })
    }

    fn resource_id(&self, segments: &[String]) -> String {
        match &self.resource_id {
            ResourceId::Fixed(id) => id.clone(),
            ResourceId::Param(index) => segments.get(*index).cloned().unwrap_or_default(),
        }
    }
}

/// Splits `/a/{b}/c` into segments; parameters are whole segments with distinct names.
fn parse_template(template: &str) -> Result<Vec<Segment>, String> {
    let rest = template
        .strip_prefix('/')
        .ok_or_else(|| format!("path `{template}` must start with `/`"))?;
    let mut segments = Vec::new();
    if rest.is_empty() {
        return Ok(segments);
    }
    for part in rest.split('/') {
        let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name)
                if !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                if segments.contains(&Segment::Param(name.to_owned())) {
                    return Err(format!("path `{template}` names parameter `{name}` twice"));
                }
                Segment::Param(name.to_owned())
            }
            Some(_) => {
                return Err(format!(
                    "path `{template}` has a badly named parameter `{part}`"
                ));
            }
            None if part.is_empty() => {
                return Err(format!("path `{template}` has an empty segment"));
            }
            None if part == "." || part == ".." || part.contains(['{', '}', '%', '?', '#']) => {
                return Err(format!(
                    "path `{template}` has a segment `{part}` that no normalized request path can have"
                ));
            }
            None => Segment::Literal(part.to_owned()),
        };
        segments.push(segment);
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> (RouteTable, Vec<Problem>) {
        let mut problems = Vec::new();
        let table = RouteTable::parse(Path::new("routes.toml"), text, &mut problems);
        (table, problems)
    }

    fn segs(path: &str) -> Vec<String> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    const ROUTES: &str = r#"
[[route]]
method = "GET"
path = "/invoices/{id}"
action = "invoice:read"
resource = { type = "Invoice", id = "{id}" }

[[route]]
method = "GET"
path = "/invoices/summary"
action = "report:read"
resource = { type = "Report", id = "summary" }

[[route]]
method = "POST"
path = "/invoices"
action = "invoice:create"
resource = { type = "Invoice" }
"#;

    #[test]
    fn matches_params_literals_and_collections() {
        let (table, problems) = table(ROUTES);
        assert!(problems.is_empty(), "{problems:?}");
        let m = table.find("GET", &segs("/invoices/INV-7")).unwrap();
        assert_eq!(
            (m.route.action.as_str(), m.resource_id.as_str()),
            ("invoice:read", "INV-7")
        );
        let m = table.find("GET", &segs("/invoices/summary")).unwrap();
        assert_eq!(
            m.route.action, "report:read",
            "a literal segment wins over a parameter"
        );
        let m = table.find("HEAD", &segs("/invoices/INV-7")).unwrap();
        assert_eq!(m.route.action, "invoice:read");
        let m = table.find("POST", &segs("/invoices")).unwrap();
        assert_eq!(m.resource_id, COLLECTION_ID);
        assert!(table.find("DELETE", &segs("/invoices/INV-7")).is_none());
        assert!(table.find("GET", &segs("/invoices/INV-7/extra")).is_none());
        assert!(table.find("GET", &segs("/")).is_none());
    }

    #[test]
    fn problems_name_their_line() {
        let (_, problems) = table(
            "[[route]]\nmethod = \"GET\"\npath = \"invoices\"\naction = \"a\"\nresource = { type = \"Invoice\" }\n",
        );
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, Some(3));
        assert!(problems[0].message.contains("must start with `/`"));

        let (_, problems) = table(
            "[[route]]\nmethod = \"GET\"\npath = \"/x\"\naction = \"a\"\nresource = { type = \"Invoice\", id = \"{nope}\" }\n",
        );
        assert_eq!(problems[0].line, Some(5));

        let (_, problems) = table("[[route]]\nmethod = \"GET\"\npth = \"/x\"\n");
        assert_eq!(problems[0].line, Some(3), "{problems:?}");
        assert!(problems[0].message.contains("pth"));
    }

    #[test]
    fn overlapping_routes_are_refused() {
        let text = format!(
            "{ROUTES}\n[[route]]\nmethod = \"GET\"\npath = \"/invoices/{{other}}\"\naction = \"invoice:read\"\nresource = {{ type = \"Invoice\" }}\n"
        );
        let (table, problems) = table(&text);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("overlaps"));
        assert_eq!(table.routes().len(), 3);
    }
}
