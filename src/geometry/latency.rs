//! Latency embedding (placeholder, filled in next commit).
