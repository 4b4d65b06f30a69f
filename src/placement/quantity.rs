//! Kubernetes resource quantities ("100m", "1.5", "64Mi", "2G", "1e3") as integers:
//! CPU in millicores, memory in bytes. Rejects what the apiserver would reject, naming it.

/// A quantity that could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid quantity {value:?}: {reason}")]
pub struct QuantityError {
    pub value: String,
    pub reason: &'static str,
}

/// Parses a quantity into its value in base units (`250m` → 0.25, `128Mi` → 134217728,
/// `1k` → 1000, `1e3` → 1000), exactly as written (no rounding).
pub fn parse(value: &str) -> Result<f64, QuantityError> {
    let err = |reason| QuantityError {
        value: value.to_string(),
        reason,
    };
    let s = value.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let suffixes: [(&str, f64); 14] = [
        ("Ki", 1024.0),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    let (number, multiplier) = suffixes
        .iter()
        .find_map(|(suffix, m)| s.strip_suffix(suffix).map(|n| (n, *m)))
        .or_else(|| s.strip_suffix('E').filter(|n| !n.is_empty()).map(|n| (n, 1e18)))
        .unwrap_or((s, 1.0));
    if !number
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '+' | '-' | 'e' | 'E'))
    {
        return Err(err("not a number with an optional unit suffix"));
    }
    let n: f64 = number
        .parse()
        .map_err(|_| err("not a number with an optional unit suffix"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(err("must be finite and not negative"));
    }
    Ok(n * multiplier)
}

/// Parses a quantity into its value scaled by `scale` (1000 for CPU millicores, 1 for bytes),
/// rounded up as Kubernetes does.
pub fn parse_scaled(value: &str, scale: f64) -> Result<u64, QuantityError> {
    let v = (parse(value)? * scale).ceil();
    if v > u64::MAX as f64 {
        return Err(QuantityError {
            value: value.to_string(),
            reason: "too large",
        });
    }
    Ok(v as u64)
}

/// CPU in millicores.
pub fn cpu_millis(value: &str) -> Result<u64, QuantityError> {
    parse_scaled(value, 1000.0)
}

/// Memory in bytes.
pub fn memory_bytes(value: &str) -> Result<u64, QuantityError> {
    parse_scaled(value, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_like_kubernetes() {
        for (q, cpu) in [
            ("100m", 100),
            ("1", 1000),
            ("1.5", 1500),
            ("2k", 2_000_000),
            ("0", 0),
            ("1e1", 10_000),
        ] {
            assert_eq!(cpu_millis(q).unwrap(), cpu, "{q}");
        }
        for (q, bytes) in [
            ("64Mi", 64 << 20),
            ("1Gi", 1 << 30),
            ("2G", 2_000_000_000),
            ("128", 128),
            ("1Ki", 1024),
        ] {
            assert_eq!(memory_bytes(q).unwrap(), bytes, "{q}");
        }
    }

    #[test]
    fn malformed_quantities_are_rejected_naming_the_value() {
        for q in ["", "abc", "-1", "1Qi", "NaN", "inf"] {
            let e = cpu_millis(q).unwrap_err();
            assert!(e.to_string().contains(&format!("{q:?}")), "{e}");
        }
    }
}
