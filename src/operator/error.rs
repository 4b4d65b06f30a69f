//! Errors of the operator process, one enum for the process-level failures.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the Kubernetes apiserver: {0}")]
    Connect(#[source] kube::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("extender TLS: {0}")]
    Tls(#[source] super::tls::TlsError),
    #[error("leader election on Lease {namespace}/{name}: {source}")]
    Lease {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("leader election on Lease {namespace}/{name}: no answer within {after:?}")]
    LeaseTimeout {
        namespace: String,
        name: String,
        after: std::time::Duration,
    },
    #[error(
        "lease timings must satisfy 0 < renew period ({renew_period:?}) < renew deadline ({renew_deadline:?}) < lease duration ({lease_duration:?})"
    )]
    LeaseTimings {
        renew_period: std::time::Duration,
        renew_deadline: std::time::Duration,
        lease_duration: std::time::Duration,
    },
}

impl Error {
    /// A short, stable label for metrics (`mom_errors_total{kind=...}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Connect(_) => "connect",
            Error::Bind { .. } => "bind",
            Error::Lease { .. } | Error::LeaseTimeout { .. } => "lease",
            Error::LeaseTimings { .. } => "lease_timings",
            Error::Tls(_) => "tls",
        }
    }
}
