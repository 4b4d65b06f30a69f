//! `kubectl mom` (the `mom` binary run as `kubectl-mom`, or `mom kubectl …`): `status`, `why
//! pod/NAME`, `verify` and `top` against a running MOM, as human tables or `-o json`.
//!
//! The cluster work is in `mom::operator::inspect`; this file parses arguments, formats and
//! ranks (pure, unit-tested) and maps bad input (a malformed argument, a pod that does not
//! exist) to exit code 2.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use mom::operator::inspect::{AgentUsage, InspectError, Status, Why};

use super::kube_target::KubeTarget;

/// kubectl mom — what MOM decided in this cluster, and why.
#[derive(Debug, Parser)]
#[command(name = "kubectl mom", bin_name = "kubectl mom", version)]
pub struct Plugin {
    #[command(flatten)]
    pub args: Args,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// Namespace of the pod (`why`; default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    /// Namespace MOM runs in (its Lease and published receipt keys).
    #[arg(long, global = true, default_value = "mom-system")]
    mom_namespace: String,
    /// Name of MOM's leader-election Lease.
    #[arg(long, global = true, default_value = "mom-operator-leader")]
    lease_name: String,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Cluster summary: leader, modes, pressure per pool, receipt chain head, budget.
    Status,
    /// Why a pod is where it is: its bind receipt and a live re-score of every node.
    Why {
        /// The pod: `pod/NAME` (or `NAME`).
        object: String,
    },
    /// Verify the receipt chain stored in the cluster (as `mom verify --cluster`).
    Verify {
        /// Re-run recorded decisions from their recorded inputs.
        #[arg(long)]
        replay: bool,
        /// Check every receipt's signature instead of only the anchors.
        #[arg(long)]
        all_signatures: bool,
    },
    /// Agents by cost per hour (or by distance/latency from their target).
    Top {
        #[arg(long, value_enum, default_value_t = SortBy::Cost)]
        sort_by: SortBy,
    },
    /// What-if on the cluster twin, as `mom whatif` (offline: `--snapshot FILE`); its output
    /// is chosen with `--format`, not `-o`.
    Whatif(Box<super::whatif::Args>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortBy {
    Cost,
    Latency,
}

/// A malformed `why` argument, named.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ObjectError {
    #[error("{0:?}: want pod/NAME")]
    Empty(String),
    #[error("{given:?}: kubectl mom why explains pods only, not {kind:?}")]
    NotAPod { given: String, kind: String },
    #[error("{given:?}: {name:?} is not a valid pod name (lower-case letters, digits, '-' and '.')")]
    BadName { given: String, name: String },
}

/// The pod name of `pod/NAME`, `pods/NAME`, `po/NAME` or a bare `NAME`.
pub fn parse_pod(given: &str) -> Result<String, ObjectError> {
    let (kind, name) = match given.split_once('/') {
        Some((kind, name)) => (Some(kind), name),
        None => (None, given),
    };
    if let Some(kind) = kind
        && !matches!(kind.to_ascii_lowercase().as_str(), "pod" | "pods" | "po")
    {
        return Err(ObjectError::NotAPod {
            given: given.into(),
            kind: kind.into(),
        });
    }
    if name.is_empty() {
        return Err(ObjectError::Empty(given.into()));
    }
    let valid = name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        return Err(ObjectError::BadName {
            given: given.into(),
            name: name.into(),
        });
    }
    Ok(name.to_string())
}

/// `kubectl mom` when the binary is run as `kubectl-mom`.
pub fn plugin_main() -> ExitCode {
    let plugin = Plugin::parse();
    super::finish(run(plugin.args))
}

fn bad_input(message: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("error: {message}");
    Ok(ExitCode::from(2))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let target = KubeTarget {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
    };
    if let Command::Verify { replay, all_signatures } = args.command {
        let format = match args.output {
            Output::Table => super::verify_args::Format::Table,
            Output::Json => super::verify_args::Format::Json,
        };
        return super::verify::run(super::verify_args::Args {
            file: None,
            tenant_bundle: None,
            tenant: None,
            cluster: true,
            namespace: args.mom_namespace,
            export: None,
            public_keys: Vec::new(),
            replay,
            all_signatures,
            pins: Vec::new(),
            format,
            kube: target,
        });
    }
    if let Command::Whatif(whatif) = args.command {
        if args.output == Output::Json {
            return bad_input("kubectl mom whatif: -o does not apply; use --format json");
        }
        return super::whatif::run(*whatif);
    }
    let pod = match &args.command {
        Command::Why { object } => match parse_pod(object) {
            Ok(name) => Some(name),
            Err(e) => return bad_input(e),
        },
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let config = target.config().await?;
        let namespace = args.namespace.clone().unwrap_or(config.default_namespace.clone());
        let client = kube::Client::try_from(config)?;
        let json = args.output == Output::Json;
        match args.command {
            Command::Status => {
                let s = mom::operator::inspect::status(&client, &args.mom_namespace, &args.lease_name).await?;
                print(json, &s, format_status)?;
            }
            Command::Why { .. } => {
                let name = pod.unwrap_or_default();
                match mom::operator::inspect::why(&client, &args.mom_namespace, &namespace, &name).await {
                    Ok(w) => print(json, &w, format_why)?,
                    Err(e @ InspectError::PodNotFound { .. }) => return bad_input(e),
                    Err(e) => return Err(e.into()),
                }
            }
            Command::Top { sort_by } => {
                let rows = rank(mom::operator::inspect::top(&client).await?, sort_by);
                print(json, &rows, |r| format_top(r))?;
            }
            Command::Verify { .. } | Command::Whatif(_) => unreachable!("handled above"),
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn print<T: serde::Serialize + ?Sized>(json: bool, value: &T, table: impl Fn(&T) -> String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", table(value));
    }
    Ok(())
}

/// Agents by cost per hour (highest first) or by mean distance from their target (farthest
/// first; agents with nothing placed last); ties by namespace and name.
pub fn rank(mut rows: Vec<AgentUsage>, by: SortBy) -> Vec<AgentUsage> {
    let key = |r: &AgentUsage| match by {
        SortBy::Cost => r.hourly_cost,
        SortBy::Latency => r.latency_ms.or(r.mean_distance).unwrap_or(f64::NEG_INFINITY),
    };
    rows.sort_by(|a, b| {
        key(b)
            .total_cmp(&key(a))
            .then_with(|| (&a.namespace, &a.agent).cmp(&(&b.namespace, &b.agent)))
    });
    rows
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

pub fn format_top(rows: &[AgentUsage]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<24} {:>8} {:>8} {:>10} {:>9} {:>11}",
        "NAMESPACE", "AGENT", "PLACED", "DESIRED", "COST/H", "DISTANCE", "LATENCY(ms)"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<20} {:<24} {:>8} {:>8} {:>10.4} {:>9} {:>11}",
            r.namespace,
            r.agent,
            r.placed,
            r.replicas,
            r.hourly_cost,
            opt(r.mean_distance, 3),
            opt(r.latency_ms, 1)
        );
    }
    if rows.is_empty() {
        let _ = writeln!(out, "(no GeometricAgents)");
    }
    out
}

pub fn format_status(s: &Status) -> String {
    let mut out = String::new();
    let leader = match (&s.leader, &s.leader_renewed) {
        (Some(l), Some(t)) => format!("{l} (renewed {t})"),
        (Some(l), None) => l.clone(),
        _ => "none (no replica holds the Lease)".into(),
    };
    let _ = writeln!(out, "leader        {leader}");
    let config = if s.config {
        ""
    } else {
        " (no MomConfig default: built-in defaults)"
    };
    let _ = writeln!(
        out,
        "modes         mode {}, routing {}, verification {}{config}",
        s.mode,
        enum_name(&s.routing),
        s.verification
    );
    let _ = writeln!(out, "cluster       {} nodes, {} agents", s.nodes, s.agents);
    let head = match &s.chain_head {
        Some(h) => format!("sequence {} hash {}", h.sequence, h.hash),
        None => "none (no receipt written yet)".into(),
    };
    let _ = writeln!(out, "chain head    {head}");
    if let Some(c) = &s.last_checkpoint {
        let _ = writeln!(out, "checkpoint    sequence {} at {}", c.sequence, c.time);
    }
    let budget = match s.budget {
        Some(max) => format!(
            "{:.4} of {max:.4} per hour ({:.0}%)",
            s.hourly_cost,
            if max > 0.0 { 100.0 * s.hourly_cost / max } else { 100.0 }
        ),
        None => format!("{:.4} per hour, no budget set", s.hourly_cost),
    };
    let _ = writeln!(out, "budget        {budget}");
    let anomalies = match &s.root_cause {
        Some(c) => format!(
            "{} of {} flagged in {} {} ({} members, confidence {:.0}%, nothing failed {:.0}%)",
            c.flagged,
            c.flagged_total,
            c.level,
            c.name,
            c.members,
            100.0 * c.confidence,
            100.0 * c.none_confidence
        ),
        None => "none flagged".into(),
    };
    let _ = writeln!(out, "root cause    {anomalies}");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<16} {:<9} {:>11} {:>7} {:>6}",
        "POOL", "PRESSURE", "UTILISATION", "AGENTS", "NODES"
    );
    for p in &s.pools {
        let u = p
            .utilisation
            .map_or_else(|| "inf".to_string(), |u| format!("{:.0}%", 100.0 * u));
        let _ = writeln!(
            out,
            "{:<16} {:<9} {:>11} {:>7} {:>6}",
            p.pool, p.level, u, p.agents, p.nodes
        );
    }
    if s.pools.is_empty() {
        let _ = writeln!(out, "(no pools: no GeometricAgents)");
    }
    out
}

fn enum_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

const TERMS: [(&str, &str); 5] = [
    ("performance", "PERF"),
    ("reliability", "RELIAB"),
    ("cost", "COST"),
    ("sustainability", "SUSTAIN"),
    ("load", "LOAD"),
];

pub fn format_why(w: &Why) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "pod           {}/{}", w.namespace, w.pod);
    let _ = writeln!(out, "agent         {}", w.agent.as_deref().unwrap_or("(none)"));
    let _ = writeln!(out, "runs on       {}", w.node.as_deref().unwrap_or("(not bound)"));
    let bind = match &w.bind {
        Some(b) => format!(
            "receipt sequence {} at {}: bound to {}{}",
            b.sequence,
            b.time,
            b.node,
            b.distance_from_target
                .map(|d| format!(", distance {d:.3} from the agent's target"))
                .unwrap_or_default()
        ),
        None => "no bind receipt (not bound through MOM's extender, or not recorded)".into(),
    };
    let _ = writeln!(out, "bind          {bind}");
    let target = if w.target.is_empty() {
        "(none)".to_string()
    } else {
        let head: Vec<String> = w.target.iter().take(3).map(|x| format!("{x:.3}")).collect();
        format!(
            "[{}{}] ({} coordinates)",
            head.join(", "),
            if w.target.len() > 3 { ", …" } else { "" },
            w.target.len()
        )
    };
    let _ = writeln!(out, "target        {target}");
    let o = &w.objectives;
    let _ = writeln!(
        out,
        "scoring       routing {}; weights performance {} reliability {} cost {} sustainability {} (×0.85), load 0.15",
        enum_name(&w.routing),
        o.performance,
        o.reliability,
        o.cost,
        o.sustainability
    );
    let _ = writeln!(
        out,
        "re-score      best now: {}",
        w.best.as_deref().unwrap_or("(no node passes)")
    );
    let _ = writeln!(out);
    let _ = write!(out, "{:<28} {:<13} {:>5} {:>6}", "NODE", "VERDICT", "SCORE", "SUM");
    for (_, head) in TERMS {
        let _ = write!(out, " {head:>7}");
    }
    let _ = writeln!(out, "  REASON");
    for c in &w.candidates {
        let (score, sum) = match &c.score {
            Some(s) => (s.score.to_string(), format!("{:.2}", s.points)),
            None => ("-".into(), "-".into()),
        };
        let mark = if w.node.as_deref() == Some(c.node.as_str()) {
            "*"
        } else {
            ""
        };
        let _ = write!(
            out,
            "{:<28} {:<13} {:>5} {:>6}",
            format!("{}{mark}", c.node),
            c.verdict,
            score,
            sum
        );
        for (name, _) in TERMS {
            let points = c
                .score
                .as_ref()
                .and_then(|s| s.terms.iter().find(|t| t.name == name))
                .map_or_else(|| "-".to_string(), |t| format!("{:.2}", t.points));
            let _ = write!(out, " {points:>7}");
        }
        let tier = c.score.as_ref().and_then(|s| s.data_tier.as_ref()).map(|t| {
            if t.data_node {
                "data node: 6 + round(4·SUM/10)".to_string()
            } else {
                format!("not a data node: round(4·(0.5·{:.2} + 0.5·SUM/10))", t.closeness)
            }
        });
        let reason = [c.reason.clone(), tier]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
        let _ = writeln!(out, "  {reason}");
    }
    let _ = writeln!(
        out,
        "\nterms are points (10 × weight × value); SUM is their sum and SCORE = round(SUM) clamped to 0…10 \
         (unless a data-locality tier is named); * marks the node the pod runs on"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mom::operator::inspect::{BindRecord, Candidate};
    use mom::placement::{NodeScore, Objectives, Routing, ScoreTerm};

    #[test]
    fn the_plugin_arguments_are_a_consistent_clap_command() {
        use clap::CommandFactory;
        Plugin::command().debug_assert();
        let p = Plugin::try_parse_from(["kubectl-mom", "why", "pod/x", "-n", "shop", "-o", "json"]).unwrap();
        assert_eq!(p.args.namespace.as_deref(), Some("shop"));
        assert_eq!(p.args.output, Output::Json);
        // `whatif` takes `mom whatif`'s arguments; a verb that does not exist is refused.
        let p = Plugin::try_parse_from(["kubectl-mom", "whatif", "--snapshot", "s.json", "--set", "kappa=1"]).unwrap();
        assert!(matches!(p.args.command, Command::Whatif(_)));
        assert!(Plugin::try_parse_from(["kubectl-mom", "whatif", "--no-such-flag"]).is_err());
        assert!(Plugin::try_parse_from(["kubectl-mom", "explain"]).is_err());
    }

    #[test]
    fn pod_arguments_in_kubectl_forms_parse_and_others_are_refused_naming_them() {
        for ok in ["pod/web-1", "pods/web-1", "po/web-1", "Pod/web-1", "web-1"] {
            assert_eq!(parse_pod(ok), Ok("web-1".to_string()), "{ok}");
        }
        assert!(matches!(parse_pod("deployment/web"), Err(ObjectError::NotAPod { kind, .. }) if kind == "deployment"));
        assert!(matches!(parse_pod("pod/"), Err(ObjectError::Empty(_))));
        assert!(matches!(parse_pod(""), Err(ObjectError::Empty(_))));
        let e = parse_pod("pod/Web_1").unwrap_err();
        assert!(e.to_string().contains("\"Web_1\" is not a valid pod name"), "{e}");
        assert!(parse_pod("pod/-x").is_err());
    }

    fn usage(ns: &str, agent: &str, cost: f64, distance: Option<f64>, latency: Option<f64>) -> AgentUsage {
        AgentUsage {
            namespace: ns.into(),
            agent: agent.into(),
            placed: 1,
            replicas: 1,
            hourly_cost: cost,
            mean_distance: distance,
            latency_ms: latency,
        }
    }

    #[test]
    fn top_ranks_by_cost_highest_first_and_by_latency_with_unplaced_agents_last() {
        let rows = vec![
            usage("a", "cheap", 0.1, Some(2.0), None),
            usage("a", "dear", 3.0, Some(0.5), None),
            usage("b", "none", 1.0, None, None),
            usage("a", "tie", 1.0, Some(1.0), None),
        ];
        let by_cost: Vec<String> = rank(rows.clone(), SortBy::Cost).into_iter().map(|r| r.agent).collect();
        assert_eq!(by_cost, ["dear", "tie", "none", "cheap"]);
        let by_latency: Vec<String> = rank(rows, SortBy::Latency).into_iter().map(|r| r.agent).collect();
        assert_eq!(by_latency, ["cheap", "tie", "dear", "none"]);
        // Measured latency, when there is one, is what latency ranks by.
        let rows = vec![
            usage("a", "x", 0.0, Some(5.0), Some(1.0)),
            usage("a", "y", 0.0, Some(1.0), Some(9.0)),
        ];
        assert_eq!(rank(rows, SortBy::Latency)[0].agent, "y");
        let table = format_top(&[usage("a", "dear", 3.0, None, None)]);
        assert!(table.lines().nth(1).unwrap().contains("3.0000"), "{table}");
        assert!(format_top(&[]).contains("no GeometricAgents"));
    }

    #[test]
    fn status_names_the_leader_the_chain_head_the_budget_share_and_each_pool() {
        use mom::operator::crd::momconfig::ChainHead;
        use mom::operator::inspect::PoolPressure;
        let mut s = Status {
            leader: Some("mom-0".into()),
            leader_renewed: Some("2026-01-01T00:00:00Z".into()),
            config: true,
            mode: "centralized".into(),
            routing: Routing::MultipathHyperbolic,
            verification: "full_audit".into(),
            nodes: 12,
            agents: 2,
            pools: vec![PoolPressure {
                pool: "gpu".into(),
                level: "high",
                utilisation: Some(0.9),
                agents: 2,
                nodes: 3,
            }],
            chain_head: Some(ChainHead {
                sequence: 41,
                hash: "ab".repeat(32),
            }),
            last_checkpoint: None,
            budget: Some(2.0),
            hourly_cost: 0.5,
            root_cause: Some(mom::operator::crd::momconfig::RootCauseStatus {
                level: "zone".into(),
                name: "eu-west-1a".into(),
                confidence: 0.91,
                none_confidence: 0.01,
                members: 4,
                flagged: 3,
                flagged_total: 3,
            }),
        };
        let out = format_status(&s);
        assert!(
            out.contains(
                "root cause    3 of 3 flagged in zone eu-west-1a (4 members, confidence 91%, nothing failed 1%)"
            ),
            "{out}"
        );
        assert!(
            out.contains("leader        mom-0 (renewed 2026-01-01T00:00:00Z)"),
            "{out}"
        );
        assert!(
            out.contains("routing multipath_hyperbolic, verification full_audit"),
            "{out}"
        );
        assert!(out.contains("chain head    sequence 41 hash abab"), "{out}");
        assert!(out.contains("0.5000 of 2.0000 per hour (25%)"), "{out}");
        let pool = out.lines().find(|l| l.starts_with("gpu")).expect(&out);
        assert!(pool.contains("high") && pool.contains("90%"), "{pool}");
        // Nobody leads, no receipt yet, no budget, no agents: each said, not left blank.
        s.leader = None;
        s.chain_head = None;
        s.budget = None;
        s.pools.clear();
        s.root_cause = None;
        let out = format_status(&s);
        for says in [
            "none flagged",
            "none (no replica holds the Lease)",
            "no receipt written yet",
            "no budget set",
            "no pools",
        ] {
            assert!(out.contains(says), "{says}: {out}");
        }
    }

    fn score(node: &str, points: [f64; 5], score: i64) -> NodeScore {
        let terms: Vec<ScoreTerm> = TERMS
            .iter()
            .zip(points)
            .map(|((name, _), p)| ScoreTerm {
                name,
                value: 1.0,
                weight: p / 10.0,
                points: p,
            })
            .collect();
        NodeScore {
            node: node.into(),
            points: points.iter().sum(),
            terms,
            data_tier: None,
            score,
        }
    }

    #[test]
    fn why_prints_the_bind_every_node_verdict_with_its_reason_and_each_term() {
        let w = Why {
            namespace: "team-a".into(),
            pod: "web-1".into(),
            node: Some("n1".into()),
            agent: Some("web".into()),
            bind: Some(BindRecord {
                sequence: 7,
                time: "2026-01-01T00:00:00Z".into(),
                node: "n1".into(),
                agent: Some("web".into()),
                distance_from_target: Some(0.25),
            }),
            target: vec![0.1, 0.2, 0.3, 0.4],
            routing: Routing::GreedyForwarding,
            objectives: Objectives::default(),
            candidates: vec![
                Candidate {
                    node: "n1".into(),
                    verdict: "pass",
                    reason: None,
                    score: Some(score("n1", [4.0, 1.0, 1.0, 0.5, 1.5], 8)),
                },
                Candidate {
                    node: "n2".into(),
                    verdict: "fail",
                    reason: Some("insufficient cpu: 5000m requested of 4000m allocatable".into()),
                    score: Some(score("n2", [1.0, 1.0, 1.0, 0.5, 0.0], 4)),
                },
            ],
            best: Some("n1".into()),
        };
        let out = format_why(&w);
        assert!(out.contains("pod           team-a/web-1"), "{out}");
        assert!(out.contains("receipt sequence 7"), "{out}");
        assert!(out.contains("distance 0.250"), "{out}");
        assert!(out.contains("[0.100, 0.200, 0.300, …] (4 coordinates)"), "{out}");
        let n1 = out.lines().find(|l| l.starts_with("n1*")).expect(&out);
        assert!(
            n1.contains("pass") && n1.contains(" 8 ") && n1.contains("8.00") && n1.contains("4.00"),
            "{n1}"
        );
        let n2 = out.lines().find(|l| l.starts_with("n2 ")).expect(&out);
        assert!(n2.contains("fail") && n2.contains("insufficient cpu"), "{n2}");
        // Without a receipt, it says so.
        let out = format_why(&Why { bind: None, ..w });
        assert!(out.contains("no bind receipt"), "{out}");
    }
}
