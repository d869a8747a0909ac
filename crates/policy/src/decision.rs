//! The outcome of authorizing one request.

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// At least one permit applied and no forbid did.
    Allow,
    /// A forbid applied, or no permit did (default deny).
    Deny,
}

/// A decision and what decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow or deny.
    pub effect: Effect,
    /// The `@id`s of the policies that decided: the permits that allowed, or the forbids that
    /// denied. Empty for a default deny.
    pub policies: Vec<String>,
    /// Policies that failed to evaluate (they are skipped, which can only deny more).
    pub errors: Vec<String>,
}

impl Decision {
    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }
}
