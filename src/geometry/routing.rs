//! Greedy routing (placeholder, filled in next commit).
