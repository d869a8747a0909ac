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
    /// Set when every policy that denied asks for stronger or fresher authentication: logging in
    /// again as asked would change the answer (RFC 9470).
    pub step_up: Option<StepUp>,
    /// Set when every policy that denied is an `@approval("export")` forbid: another person's
    /// approval of this very export would change the answer (four eyes).
    pub approval_required: bool,
}

/// What a fresh login must bring, from the deciding forbids' `@step_up` annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepUp {
    /// A multi-factor login (`@step_up("mfa")`).
    pub mfa: bool,
    /// A login at most this many seconds old (`@step_up_max_age("N")`).
    pub max_age_s: Option<u64>,
}

impl StepUp {
    /// The demand of several policies at once: MFA if any asks, the shortest age.
    pub(crate) fn combine(self, other: Self) -> Self {
        Self {
            mfa: self.mfa || other.mfa,
            max_age_s: match (self.max_age_s, other.max_age_s) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

impl Decision {
    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }
}
