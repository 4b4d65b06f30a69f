//! Reading files with a size cap: a wrong or hostile path (a device such as `/dev/zero`, a
//! multi-GB file) is an error naming the limit, never an allocation sized by the file.

use std::io::{BufRead, Read};
use std::path::Path;

/// Keys, secrets and small settings files (a hex key is 64 bytes).
pub const MAX_SMALL_FILE_BYTES: u64 = 1 << 20;
/// JSON documents the CLI reads whole: descheduler snapshots and settings, tenant bundles,
/// topologies and latency matrices (the shared data's largest file is under 4 MiB).
pub const MAX_DOCUMENT_BYTES: u64 = 256 << 20;
/// Receipt exports read whole (`mom verify FILE`, `mom receipts prune`): a million receipts
/// with inline inputs are about 1.5 GiB.
pub const MAX_RECEIPTS_FILE_BYTES: u64 = 4 << 30;
/// One line of a JSON-lines receipt export (a receipt with its inputs inline is a few KiB).
pub const MAX_RECEIPT_LINE_BYTES: u64 = 16 << 20;

/// `path`'s text, or an error when it is larger than `limit` bytes (or not UTF-8).
pub fn read_to_string(path: &Path, limit: u64) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    read_capped(file, limit)
}

/// At most `limit` bytes of `reader` as text; more is an error naming the limit.
pub fn read_capped(reader: impl Read, limit: u64) -> std::io::Result<String> {
    let mut text = String::new();
    reader.take(limit.saturating_add(1)).read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(text)
}

/// Reads one line (with its `\n`) into `line` (cleared first); 0 at the end. A line longer
/// than `limit` bytes is an error instead of an allocation of its size.
pub fn read_line_capped(reader: &mut impl BufRead, line: &mut String, limit: u64) -> std::io::Result<usize> {
    line.clear();
    let n = reader.take(limit.saturating_add(1)).read_line(line)?;
    if n as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a line is longer than the limit of {limit} bytes"),
        ));
    }
    Ok(n)
}

fn too_large(limit: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("larger than the limit of {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_up_to_the_limit_is_read_and_one_byte_more_is_refused_naming_the_limit() {
        assert_eq!(read_capped(&b"abcd"[..], 4).unwrap(), "abcd");
        let err = read_capped(&b"abcde"[..], 4).unwrap_err();
        assert!(err.to_string().contains("limit of 4 bytes"), "{err}");
    }

    #[test]
    fn an_endless_source_stops_at_the_limit() {
        let err = read_capped(std::io::repeat(b'a'), 1 << 10).unwrap_err();
        assert!(err.to_string().contains("limit of 1024 bytes"), "{err}");
    }

    #[test]
    fn lines_are_read_one_by_one_and_an_overlong_one_is_refused() {
        let mut reader = std::io::BufReader::new(&b"ab\ncdefgh\n"[..]);
        let mut line = String::new();
        assert_eq!(read_line_capped(&mut reader, &mut line, 4).unwrap(), 3);
        assert_eq!(line, "ab\n");
        let err = read_line_capped(&mut reader, &mut line, 4).unwrap_err();
        assert!(err.to_string().contains("limit of 4 bytes"), "{err}");
    }

    /// Fuzzing (proptest) of every parser behind a CLI file input: any text gives a value or an
    /// error, never a panic or an allocation larger than the input implies.
    mod hostile_files {
        use proptest::prelude::*;

        fn rows() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof!["-?[0-9]{1,4}(\\.[0-9]{0,3})?", "NaN|inf|-inf|1e308|x", "\\PC{0,3}"],
                    0..6,
                ),
                0..8,
            )
            .prop_map(|rows| rows.iter().map(|r| r.join(" ")).collect::<Vec<_>>().join("\n"))
        }

        /// Mostly a sane coordinate or weight, sometimes an extreme or non-finite one.
        fn number() -> impl Strategy<Value = f64> {
            prop_oneof![
                30 => 0.0f64..0.6,
                1 => -2.0f64..2.0,
                1 => prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-f64::INFINITY), Just(f64::MAX), Just(1e-300)],
            ]
        }

        /// Mostly a point inside the unit ball in two dimensions, sometimes any dimension and values.
        fn coordinates() -> impl Strategy<Value = Vec<f64>> {
            prop_oneof![
                20 => proptest::collection::vec(-0.6f64..0.6, 2),
                1 => proptest::collection::vec(number(), 0..4),
            ]
        }

        fn resources() -> impl Strategy<Value = crate::placement::Resources> {
            let amount = || prop_oneof![4 => 0u64..100_000, 1 => Just(0u64), 1 => Just(u64::MAX)];
            (amount(), amount()).prop_map(|(cpu_millis, memory_bytes)| crate::placement::Resources {
                cpu_millis,
                memory_bytes,
            })
        }

        /// Mostly in `sane`, sometimes any value.
        fn mostly_u32(sane: std::ops::Range<u32>) -> impl Strategy<Value = u32> {
            prop_oneof![19 => sane, 1 => any::<u32>()]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn latency_matrices_never_panic_and_are_square_when_accepted(text in rows()) {
                if let Ok(m) = crate::geometry::data::parse_rtt_matrix(&text, "fuzz") {
                    prop_assert_eq!(m.rtt.len(), m.n * m.n);
                }
            }

            #[test]
            fn topologies_never_panic(
                ids in proptest::collection::vec(prop_oneof![any::<i64>().prop_map(|i| i.to_string()), "\\PC{0,4}"], 0..6),
                edges in proptest::collection::vec((0usize..8, 0usize..8, prop_oneof![Just(None), any::<f64>().prop_map(Some)]), 0..10),
                raw in "\\PC{0,40}",
            ) {
                let nodes: Vec<_> = ids.iter().map(|i| serde_json::json!({"id": i})).collect();
                let name = |k: usize| ids.get(k).cloned().unwrap_or_else(|| format!("missing-{k}"));
                let links: Vec<_> = edges
                    .iter()
                    .map(|(a, b, d)| serde_json::json!({"source": name(*a), "target": name(*b), "dist": d}))
                    .collect();
                let doc = serde_json::json!({"graph": {}, "nodes": nodes, "links": links}).to_string();
                let _ = crate::geometry::data::parse_node_link(&doc, "fuzz");
                let _ = crate::geometry::data::parse_node_link(&raw, "fuzz");
            }

            #[test]
            fn receipt_lines_keys_bundles_and_quantities_never_panic(
                raw in "\\PC{0,80}",
                sequence in any::<i64>(),
                hex in "[0-9a-f]{0,70}",
            ) {
                let _ = crate::receipts::parse_json_lines(&raw);
                let _ = crate::receipts::parse_line(&raw, 1);
                let line = serde_json::json!({
                    "sequence": sequence, "action": "bind", "prevHash": hex, "hash": hex,
                    "signature": hex, "keyId": hex, "decision": {}, "inputsDigest": hex,
                    "subject": {"apiVersion": "v1", "kind": "Pod", "namespace": "a", "name": "b"},
                    "time": "2026-01-01T00:00:00Z", "level": "full_audit",
                })
                .to_string();
                let _ = crate::receipts::parse_line(&line, 1);
                let _ = crate::receipts::signing::parse_public_key(&hex);
                let _ = crate::receipts::signing::parse_public_key(&raw);
                let _ = crate::receipts::tenant::parse_bundle(&raw);
                let _ = crate::placement::quantity::parse(&raw);
            }

            #[test]
            fn descheduler_inputs_never_panic(raw in "\\PC{0,80}") {
                let _ = serde_json::from_str::<crate::descheduler::Snapshot>(&raw);
                let _ = serde_json::from_str::<crate::descheduler::Settings>(&raw);
            }

            /// Snapshots that deserialize but lie: positions of mixed dimensions, non-finite or
            /// outside the ball, any κ and `now`, pods and peers naming missing nodes and agents,
            /// resources and counters at their extremes, any planner limits. `mom deschedule plan`
            /// and the replay of a recorded plan both get these.
            #[test]
            fn hostile_descheduler_snapshots_are_planned_or_refused_without_panicking(
                kappa in prop_oneof![20 => Just(1.0), 1 => prop_oneof![Just(0.0), Just(-1.0), Just(f64::NAN), Just(f64::INFINITY), Just(1e-300), Just(1e300)]],
                now in prop_oneof![4 => 0u64..5000, 1 => Just(0u64), 1 => Just(u64::MAX)],
                nodes in proptest::collection::vec((0usize..20, coordinates(), resources(), resources(), mostly_u32(1..120), mostly_u32(0..20), any::<bool>()), 0..6),
                agents in proptest::collection::vec((0usize..20, proptest::option::of(coordinates()), proptest::option::of(coordinates()), proptest::collection::vec((0usize..10, number()), 0..3), proptest::option::of(number())), 0..4),
                pods in proptest::collection::vec((0usize..10, proptest::option::of(0usize..10), resources(), resources(), proptest::option::of(any::<u64>()), any::<bool>(), any::<bool>()), 0..8),
                limits in (mostly_u32(1..10), number(), number(), prop_oneof![0u64..1000, any::<u64>()], mostly_u32(0..10), mostly_u32(1..8)),
            ) {
                use crate::descheduler::{Agent, Node, Peer, Pod, Settings, Snapshot};
                let name = |k: usize| format!("n{k}");
                // Mostly references to what the snapshot holds; 9 and up names nothing in it.
                let node_ref = |k: usize| if k < 9 { name(k % nodes.len().max(1)) } else { "missing".into() };
                let agent_ref = |k: usize| if k < 9 { format!("a{}", k % agents.len().max(1)) } else { "missing".into() };
                let snapshot = Snapshot {
                    kappa,
                    now,
                    nodes: nodes
                        .iter()
                        .enumerate()
                        .map(|(i, (dup, position, allocatable, requested, max_pods, count, unhealthy))| Node {
                            name: if *dup == 0 { name(0) } else { name(i) },
                            labels: Default::default(),
                            position: position.clone(),
                            allocatable: *allocatable,
                            requested: *requested,
                            used: *requested,
                            max_pods: *max_pods,
                            pods: *count,
                            unhealthy: *unhealthy,
                            anomalous: false,
                        })
                        .collect(),
                    agents: agents
                        .iter()
                        .enumerate()
                        .map(|(i, (dup, target, previous, peers, max_distance))| Agent {
                            name: format!("a{}", if *dup == 0 { 0 } else { i }),
                            target: target.clone(),
                            previous_target: previous.clone(),
                            peers: peers.iter().map(|(k, w)| Peer { agent: agent_ref(*k), weight: *w }).collect(),
                            avoid_nodes: Default::default(),
                            max_distance: *max_distance,
                            label_rules: Default::default(),
                        })
                        .collect(),
                    pods: pods
                        .iter()
                        .enumerate()
                        .map(|(i, (node, agent, requests, usage, evicted, strict, protected))| Pod {
                            name: format!("p{i}"),
                            namespace: "ns".into(),
                            node: node_ref(*node),
                            agent: agent.map(agent_ref),
                            tenant: Some(format!("t{}", i % 2)),
                            strict_isolation: *strict,
                            standby: false,
                            requests: *requests,
                            usage: *usage,
                            node_selector: Default::default(),
                            last_evicted_at: *evicted,
                            protected: *protected,
                        })
                        .collect(),
                };
                let (horizon, step, gain, cool_off, total, destinations) = limits;
                let mut settings = Settings::default();
                settings.planner.horizon = horizon;
                settings.planner.target_step = step;
                settings.planner.min_gain = gain;
                settings.planner.migration_cost = gain;
                settings.planner.cool_off_seconds = cool_off;
                settings.planner.max_evictions_total = total;
                settings.planner.destinations_considered = destinations;
                let _ = crate::descheduler::plan_standalone(&snapshot, &settings);
                let _ = crate::descheduler::replay_plan(&crate::descheduler::plan_inputs(&snapshot, &settings));
            }
        }

        #[test]
        fn a_matrix_of_many_one_column_rows_is_refused_before_allocating_its_square() {
            // 2 MB of text declaring a 10^6 × 10^6 matrix: refused, not a 10^12-entry allocation.
            let text = "1\n".repeat(1_000_000);
            let err = crate::geometry::data::parse_rtt_matrix(&text, "rows").unwrap_err();
            assert!(
                err.to_string().contains("row 1 has 1 columns, expected 1000000"),
                "{err}"
            );
        }
    }
}
