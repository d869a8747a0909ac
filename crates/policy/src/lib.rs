//! Policy for invoiceguard: the security team's `policies/` folder (Cedar schema, `*.cedar`
//! policies, `routes.toml`) loaded and checked as one unit, the route table that maps a request to
//! a Cedar action and resource, and the decision — allow or deny, with the ids of the policies
//! that decided it; signed policy sets (`signature.rs`) and what changed between two sets
//! (`PolicyEngine::changes_from`).

mod cache;
mod cases;
mod config;
mod decision;
mod engine;
mod entities;
mod problem;
mod request;
mod routes;
pub mod signature;

pub use cases::{CaseOutcome, Hypothetical, Verdict, decide_hypothetical, explain, run_cases};
pub use config::PolicyConfig;
pub use decision::{Decision, Effect, StepUp};
pub use engine::{Changes, PolicyEngine, ROUTES_FILE, SCHEMA_FILE};
pub use entities::{ENTITIES_FILE, Limits};
pub use problem::{LoadError, Problem};
pub use request::{ExportFacts, RequestFacts, ResourceFacts, Target};
pub use routes::{
    COLLECTION_ID, DEFAULT_MAX_ROWS, ExportSpec, Fact, Lookup, RateLimit, Requested, Route,
    RouteMatch, RouteTable, RowCount, WatermarkSpec,
};
