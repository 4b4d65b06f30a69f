//! Hyperbolic geometry core: the Poincaré ball, Sarkar tree embeddings of topology hierarchies,
//! latency embeddings (with a Vivaldi baseline), greedy routing over embedded graphs and
//! geometric consensus. Pure, deterministic code: plain data in, plain data out (DESIGN §3).
//!
//! Entry points most callers need:
//! - [`poincare::distance`], [`poincare::frechet_mean`] — ball arithmetic (curvature −κ);
//! - [`tree::TreeEmbedding::from_paths`] — embed a region→zone→rack→node hierarchy; gives a
//!   point per leaf, the exact tree distance and a precision-safe embedded distance;
//! - [`latency::fit_hyperbolic`] / [`latency::fit_vivaldi`] — RTT matrix → coordinates;
//! - [`routing::evaluate`] — delivery rate and stretch of greedy routing on a graph;
//! - [`consensus::tally`] — distance-weighted votes.

pub mod consensus;
pub mod data;
pub mod disk;
pub mod latency;
pub mod poincare;
pub mod routing;
pub mod tree;

/// Everything that can go wrong in the geometry core. Messages name the offending input.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GeometryError {
    #[error("{0} is empty")]
    EmptyInput(&'static str),
    #[error("{what} has length {found}, expected {expected}")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("point {index} has dimension {found}, expected {expected}")]
    DimensionMismatch {
        index: usize,
        expected: usize,
        found: usize,
    },
    #[error("weight {index} is {value}; weights must be finite and ≥ 0")]
    InvalidWeight { index: usize, value: f64 },
    #[error("the weights sum to zero")]
    ZeroTotalWeight,
    #[error("parameter `{name}` = {value} is invalid: {reason}")]
    InvalidParameter {
        name: &'static str,
        value: f64,
        reason: &'static str,
    },
    #[error("hierarchy path {index} is invalid: {reason}")]
    InvalidHierarchy { index: usize, reason: String },
    #[error("graph is invalid: {0}")]
    InvalidGraph(String),
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{path}: {reason}")]
    Parse { path: String, reason: String },
}
