//! MOM: places, moves and scales Kubernetes workloads using distances in the Poincaré ball,
//! and records every action as a hash-chained, signed receipt.
//!
//! The crate has two worlds (DESIGN §1):
//! - the **core** — every module outside `operator` — pure, deterministic decision logic with no
//!   Kubernetes, no async runtime, no clock; it builds with `--no-default-features`;
//! - the **operator** (feature `operator`, on by default) — CRD types, controllers, the
//!   scheduler extender, metrics — a thin shell that observes, calls the core and applies.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod anomaly;
pub mod batch;
pub mod bounded_input;
pub mod budget;
pub mod cluster_layout;
pub mod decisions;
pub mod descheduler;
pub mod drift;
pub mod failover_mdp;
pub mod geometry;
pub mod labels;
pub mod mesh;
#[cfg(feature = "operator")]
pub mod operator;
pub mod placement;
pub mod proc_status;
pub mod receipts;
pub mod stable_hash;

pub mod forecast;
pub mod hpa;
pub mod learned;
pub mod mpc;
pub mod scaling_policy;
pub mod simulator;
pub mod twin;
pub mod webview;

pub mod auction;
