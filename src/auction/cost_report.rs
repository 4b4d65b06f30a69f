//! Per-tenant cost reports from auction receipts: what each tenant pays (Clarke payments) and
//! its Shapley share of the node pool's cost, now and accrued over time.
//!
//! Input: receipts in chain order (an export of `mom verify --export`, or the cluster's); only
//! `allocate` receipts whose decision kind is [`quota::REPLAY_KIND`] (an auction: `pool`,
//! `output` = [`AuctionOutcome`]) or [`quota::RELEASE_KIND`] (quotas cleared) count. Output: a
//! [`CostReport`] — per tenant the current rates (from the newest auction of every pool, zero
//! after a release) and the accrued amounts, and per pool its auctions and current cost.
//!
//! Rates are per hour (bids are values per replica-hour, node costs are per hour). An outcome is
//! in effect from its receipt's `time` until the next auction or release receipt of the same
//! pool, the last one until `until` (default: the newest receipt's time), so
//! accrued(t) = Σ_auctions rate(t, auction) · hours in effect.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::AuctionOutcome;
use super::quota::{RELEASE_KIND, REPLAY_KIND};
use crate::receipts::{Action, Receipt};

/// Why a report could not be built; each names the receipt and the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CostReportError {
    #[error("receipt {sequence}: decision.{field}: {message}")]
    Decision {
        sequence: u64,
        field: &'static str,
        message: String,
    },
    #[error("receipt {sequence}: time {value:?} is not an RFC 3339 timestamp")]
    Time { sequence: u64, value: String },
    #[error("until {0:?} is not an RFC 3339 timestamp")]
    Until(String),
}

/// One tenant's costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantCosts {
    pub tenant: String,
    /// Replicas granted now, over all pools.
    pub replicas: u32,
    /// Σ Clarke payments per hour now.
    pub payment_per_hour: f64,
    /// Σ Shapley shares of the pools' cost per hour now.
    pub shapley_cost_per_hour: f64,
    /// Payments accrued over the report's period.
    pub accrued_payment: f64,
    /// Shapley cost shares accrued over the report's period.
    pub accrued_shapley_cost: f64,
}

/// One node pool's auctions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolCosts {
    pub pool: String,
    /// Auction receipts seen for the pool.
    pub auctions: usize,
    /// Sequence of the newest auction or release receipt.
    pub last_sequence: u64,
    /// Whether the newest receipt is an auction (quotas in force) rather than a release.
    pub contended: bool,
    /// Cost per hour of the nodes needed for the current allocation (0 after a release).
    pub pool_cost_per_hour: f64,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    /// Receipts read (all actions).
    pub receipts: usize,
    /// Auction receipts among them.
    pub auctions: usize,
    /// Time of the first auction receipt.
    pub from: Option<String>,
    /// End of the accrual period.
    pub until: Option<String>,
    /// Tenants by name.
    pub tenants: Vec<TenantCosts>,
    /// Pools by name.
    pub pools: Vec<PoolCosts>,
}

/// Seconds since 1970-01-01T00:00:00Z of an RFC 3339 timestamp (`2026-11-26T09:52:09.5Z`,
/// `…+01:00`); `None` when it is not one.
pub fn rfc3339_seconds(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac = 0.0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        frac = format!("0.{}", &s[start..i]).parse().ok()?;
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            let o = h * 3600 + m * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    // Days from the civil date (H. Hinnant's algorithm), proleptic Gregorian.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hour * 3600 + minute * 60 + second - offset) as f64 + frac)
}

enum Entry {
    Auction { pool: String, outcome: AuctionOutcome },
    Release { pool: String },
}

fn pool_of(r: &Receipt) -> Result<String, CostReportError> {
    r.decision
        .get("pool")
        .and_then(|p| p.as_str())
        .map(str::to_string)
        .ok_or_else(|| CostReportError::Decision {
            sequence: r.sequence,
            field: "pool",
            message: "missing or not a string".into(),
        })
}

/// Builds the report from receipts (any order; sorted by sequence here).
pub fn cost_report(receipts: &[Receipt], until: Option<&str>) -> Result<CostReport, CostReportError> {
    let mut sorted: Vec<&Receipt> = receipts.iter().collect();
    sorted.sort_by_key(|r| r.sequence);
    let mut entries: Vec<(u64, f64, String, Entry)> = Vec::new();
    for r in &sorted {
        if r.action != Action::Allocate {
            continue;
        }
        let kind = r.decision.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
        let entry = if kind == REPLAY_KIND {
            let outcome: AuctionOutcome = serde_json::from_value(r.decision.get("output").cloned().unwrap_or_default())
                .map_err(|e| CostReportError::Decision {
                    sequence: r.sequence,
                    field: "output",
                    message: e.to_string(),
                })?;
            Entry::Auction {
                pool: pool_of(r)?,
                outcome,
            }
        } else if kind == RELEASE_KIND {
            Entry::Release { pool: pool_of(r)? }
        } else {
            continue;
        };
        let t = rfc3339_seconds(&r.time).ok_or_else(|| CostReportError::Time {
            sequence: r.sequence,
            value: r.time.clone(),
        })?;
        entries.push((r.sequence, t, r.time.clone(), entry));
    }
    let (end, end_text) = match until {
        Some(u) => (
            rfc3339_seconds(u).ok_or_else(|| CostReportError::Until(u.to_string()))?,
            Some(u.to_string()),
        ),
        None => match sorted.last() {
            Some(r) => (
                rfc3339_seconds(&r.time).ok_or_else(|| CostReportError::Time {
                    sequence: r.sequence,
                    value: r.time.clone(),
                })?,
                Some(r.time.clone()),
            ),
            None => (0.0, None),
        },
    };
    let mut tenants: BTreeMap<String, TenantCosts> = BTreeMap::new();
    let mut pools: BTreeMap<String, PoolCosts> = BTreeMap::new();
    let tenant = |tenants: &mut BTreeMap<String, TenantCosts>, name: &str| {
        tenants.entry(name.to_string()).or_insert_with(|| TenantCosts {
            tenant: name.to_string(),
            replicas: 0,
            payment_per_hour: 0.0,
            shapley_cost_per_hour: 0.0,
            accrued_payment: 0.0,
            accrued_shapley_cost: 0.0,
        });
    };
    let auctions = entries.iter().filter(|e| matches!(e.3, Entry::Auction { .. })).count();
    for (k, (sequence, start, _, entry)) in entries.iter().enumerate() {
        let pool_name = match entry {
            Entry::Auction { pool, .. } | Entry::Release { pool } => pool,
        };
        let next = entries[k + 1..].iter().find(|e| match &e.3 {
            Entry::Auction { pool, .. } | Entry::Release { pool } => pool == pool_name,
        });
        let is_last = next.is_none();
        let stop = next.map(|e| e.1).unwrap_or(end);
        let hours = ((stop - start) / 3600.0).max(0.0);
        let p = pools.entry(pool_name.clone()).or_insert_with(|| PoolCosts {
            pool: pool_name.clone(),
            auctions: 0,
            last_sequence: *sequence,
            contended: false,
            pool_cost_per_hour: 0.0,
        });
        p.last_sequence = *sequence;
        match entry {
            Entry::Release { .. } => {
                p.contended = false;
                p.pool_cost_per_hour = 0.0;
            }
            Entry::Auction { outcome, .. } => {
                p.auctions += 1;
                p.contended = true;
                p.pool_cost_per_hour = outcome.pool_cost;
                for a in &outcome.allocations {
                    tenant(&mut tenants, &a.tenant);
                    if let Some(t) = tenants.get_mut(&a.tenant) {
                        t.accrued_payment += a.payment * hours;
                        if is_last {
                            t.payment_per_hour += a.payment;
                            t.replicas += a.replicas;
                        }
                    }
                }
                for c in &outcome.tenant_costs {
                    tenant(&mut tenants, &c.tenant);
                    if let Some(t) = tenants.get_mut(&c.tenant) {
                        t.accrued_shapley_cost += c.shapley_cost * hours;
                        if is_last {
                            t.shapley_cost_per_hour += c.shapley_cost;
                        }
                    }
                }
            }
        }
    }
    Ok(CostReport {
        receipts: receipts.len(),
        auctions,
        from: entries.first().map(|e| e.2.clone()),
        until: end_text,
        tenants: tenants.into_values().collect(),
        pools: pools.into_values().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auction::quota::{AgentDemand, QuotaSettings, auction_input};
    use crate::auction::test_support::node;
    use crate::auction::{ResourceRequest, run};
    use crate::receipts::{Level, SubjectRef};
    use serde_json::json;

    fn receipt(sequence: u64, time: &str, action: Action, decision: serde_json::Value) -> Receipt {
        Receipt {
            sequence,
            action,
            subject: SubjectRef {
                api_version: "mom.hypersync.io/v1alpha1".into(),
                kind: "NodePool".into(),
                namespace: String::new(),
                name: "pool".into(),
                uid: None,
            },
            decision,
            inputs_digest: String::new(),
            prev_hash: String::new(),
            hash: String::new(),
            signature: String::new(),
            key_id: String::new(),
            time: time.into(),
            level: Level::FullAudit,
        }
    }

    fn auction(pool: &str, wanted_b: u32) -> serde_json::Value {
        let d = |agent: &str, tenant: &str, wanted: u32, values: &[f64]| AgentDemand {
            agent: agent.into(),
            tenant: tenant.into(),
            wanted,
            request: ResourceRequest {
                cpu_millis: 1000,
                memory_bytes: 1 << 20,
            },
            marginal_values: values.to_vec(),
        };
        let input = auction_input(
            &[d("a", "red", 2, &[5.0, 4.0]), d("b", "blue", wanted_b, &[6.0, 1.0])],
            &[node("n1", 2000, 1 << 30)],
            QuotaSettings::default(),
        );
        let outcome = run(&input).unwrap();
        json!({"kind": REPLAY_KIND, "pool": pool, "inputs": input, "output": outcome})
    }

    #[test]
    fn rfc3339_timestamps_parse_to_unix_seconds() {
        assert_eq!(rfc3339_seconds("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(rfc3339_seconds("2026-11-26T09:52:09Z"), Some(1_795_686_729.0));
        assert_eq!(rfc3339_seconds("2026-11-26T10:52:09.5+01:00"), Some(1_795_686_729.5));
        assert_eq!(rfc3339_seconds("2000-02-29T00:00:00Z"), Some(951_782_400.0));
        for bad in [
            "",
            "2026-11-26",
            "2026-13-01T00:00:00Z",
            "2026-11-26T09:52:09",
            "2026-11-26T09:52:09.Z",
        ] {
            assert_eq!(rfc3339_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn payments_and_shapley_shares_accrue_per_tenant_while_each_outcome_is_in_effect() {
        // Auction 1 at 10:00 (b wants 2: a and b get one slot each, a pays 1, b pays 4),
        // auction 2 at 11:00 (b wants 1: no contention left for a's second replica? a gets 1, b 1),
        // a spawn receipt at 12:30 ends the period; a release of another pool is ignored for these tenants.
        let first = auction("gpu", 2);
        let second = auction("gpu", 1);
        let receipts = vec![
            receipt(3, "2026-01-01T10:00:00Z", Action::Allocate, first.clone()),
            receipt(
                4,
                "2026-01-01T10:30:00Z",
                Action::Spawn,
                json!({"kind": "placement.scale"}),
            ),
            receipt(5, "2026-01-01T11:00:00Z", Action::Allocate, second.clone()),
            receipt(6, "2026-01-01T12:30:00Z", Action::Spawn, json!({})),
        ];
        let report = cost_report(&receipts, None).unwrap();
        assert_eq!(report.receipts, 4);
        assert_eq!(report.auctions, 2);
        assert_eq!(report.until.as_deref(), Some("2026-01-01T12:30:00Z"));
        let pay = |v: &serde_json::Value, agent: usize| v["output"]["allocations"][agent]["payment"].as_f64().unwrap();
        let share = |v: &serde_json::Value, tenant: &str| {
            v["output"]["tenant_costs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["tenant"] == tenant)
                .map(|t| t["shapley_cost"].as_f64().unwrap())
                .unwrap_or(0.0)
        };
        let red = report.tenants.iter().find(|t| t.tenant == "red").unwrap();
        assert_eq!(red.payment_per_hour, pay(&second, 0));
        assert_eq!(red.accrued_payment, pay(&first, 0) * 1.0 + pay(&second, 0) * 1.5);
        assert_eq!(
            red.accrued_shapley_cost,
            share(&first, "red") + share(&second, "red") * 1.5
        );
        let blue = report.tenants.iter().find(|t| t.tenant == "blue").unwrap();
        assert_eq!(blue.accrued_payment, pay(&first, 1) + pay(&second, 1) * 1.5);
        assert_eq!(pay(&first, 1), 4.0);
        assert_eq!(report.pools.len(), 1);
        assert!(report.pools[0].contended && report.pools[0].auctions == 2);
        // Shares of the current allocation add up to the pool's current cost.
        let total: f64 = report.tenants.iter().map(|t| t.shapley_cost_per_hour).sum();
        assert!((total - report.pools[0].pool_cost_per_hour).abs() < 1e-9);
    }

    #[test]
    fn a_release_stops_accrual_and_zeroes_the_current_rates() {
        let receipts = vec![
            receipt(0, "2026-01-01T10:00:00Z", Action::Allocate, auction("p", 2)),
            receipt(
                1,
                "2026-01-01T10:06:00Z",
                Action::Allocate,
                json!({"kind": RELEASE_KIND, "pool": "p", "output": {"released": ["a", "b"]}}),
            ),
        ];
        let report = cost_report(&receipts, Some("2026-01-01T20:00:00Z")).unwrap();
        let blue = report.tenants.iter().find(|t| t.tenant == "blue").unwrap();
        assert_eq!(blue.payment_per_hour, 0.0);
        assert!((blue.accrued_payment - 4.0 * 0.1).abs() < 1e-12);
        assert!(!report.pools[0].contended);
    }

    #[test]
    fn a_malformed_auction_decision_or_time_is_reported_with_the_receipt_and_field() {
        let mut bad = auction("p", 2);
        bad["output"]["allocations"] = json!("nope");
        let err = cost_report(&[receipt(7, "2026-01-01T10:00:00Z", Action::Allocate, bad)], None).unwrap_err();
        assert!(err.to_string().starts_with("receipt 7: decision.output:"), "{err}");
        let mut no_pool = auction("p", 2);
        no_pool.as_object_mut().unwrap().remove("pool");
        let err = cost_report(&[receipt(8, "2026-01-01T10:00:00Z", Action::Allocate, no_pool)], None).unwrap_err();
        assert_eq!(err.to_string(), "receipt 8: decision.pool: missing or not a string");
        let err = cost_report(&[receipt(9, "yesterday", Action::Allocate, auction("p", 2))], None).unwrap_err();
        assert!(err.to_string().contains("receipt 9: time \"yesterday\""), "{err}");
        let err = cost_report(&[], Some("soon")).unwrap_err();
        assert_eq!(err.to_string(), "until \"soon\" is not an RFC 3339 timestamp");
    }
}
