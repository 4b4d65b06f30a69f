//! Node pools as the operator's objects name them: the pool a GeometricAgent competes in, and
//! a pool's pressure as the strategies' triggers spell it. Shared by the auction loop (which
//! measures pressure and writes it into the view) and the agent controller (which reads it from
//! the view), so neither imports the other.

use super::crd::GeometricAgent;
use super::crd::strategy::ResourcePressure;
use crate::auction::quota::PressureLevel;
use crate::labels::POOL_LABEL;

/// The pool of nodes without [`POOL_LABEL`] and of agents that select none.
pub const DEFAULT_POOL: &str = "default";

/// The node pool an agent competes in: its template's `nodeSelector` value for [`POOL_LABEL`].
pub fn pool_of(agent: &GeometricAgent) -> String {
    agent
        .spec
        .template
        .summary()
        .node_selector
        .get(POOL_LABEL)
        .cloned()
        .unwrap_or_else(|| DEFAULT_POOL.to_string())
}

/// A pressure level as the `OrchestrationStrategy` triggers spell it.
pub fn trigger_pressure(level: PressureLevel) -> ResourcePressure {
    match level {
        PressureLevel::Low => ResourcePressure::Low,
        PressureLevel::Medium => ResourcePressure::Medium,
        PressureLevel::High => ResourcePressure::High,
        PressureLevel::Critical => ResourcePressure::Critical,
    }
}
