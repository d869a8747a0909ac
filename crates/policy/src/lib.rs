//! Policy for invoiceguard: the security team's `policies/` folder (Cedar schema, `*.cedar`
//! policies, `routes.toml`) loaded and checked as one unit, the route table that maps a request to
//! a Cedar action and resource, and the decision — allow or deny, with the ids of the policies
//! that decided it.

mod config;
mod decision;
mod engine;
mod problem;
mod request;
mod routes;

pub use config::PolicyConfig;
pub use decision::{Decision, Effect, StepUp};
pub use engine::{PolicyEngine, ROUTES_FILE, SCHEMA_FILE};
pub use problem::{LoadError, Problem};
pub use request::RequestFacts;
pub use routes::{COLLECTION_ID, Route, RouteMatch, RouteTable};
