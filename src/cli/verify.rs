//! `mom verify --file FILE`: offline verification of an exported receipt chain.
//!
//! Reads JSON lines (one receipt per line), checks hashes, links, signatures and checkpoints
//! against the trusted public keys, optionally replays recorded decisions, prints a table or
//! (with `--format json`) one JSON object, and exits 1 when any problem is found.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use mom::receipts::replay::{InlineOnly, ReplayReport};
use mom::receipts::{ChainHead, Receipt, Report, SignatureCheck, VerifyOptions, verify_chain, verify_json_lines};

pub use super::verify_args::{Args, Format};
use super::verify_args::{load_keys, read_receipts};

fn parse_pin(s: &str) -> anyhow::Result<ChainHead> {
    let (seq, hash) = s
        .split_once(':')
        .with_context(|| format!("--pin {s:?}: want SEQUENCE:HASH"))?;
    let sequence = seq
        .parse()
        .with_context(|| format!("--pin {s:?}: sequence {seq:?} is not a number"))?;
    mom::receipts::decode_hash("--pin hash", hash)?;
    Ok(ChainHead {
        sequence,
        hash: hash.to_string(),
    })
}

/// A stored Receipt object left out of the chain: `namespace/name`, its claimed sequence when it
/// reads as a receipt, and why.
type Foreign = (String, Option<u64>, String);

/// Receipt objects and published public keys from the cluster.
#[cfg(feature = "operator")]
#[allow(clippy::type_complexity)]
fn from_cluster(
    namespace: &str,
    target: &super::kube_target::KubeTarget,
) -> anyhow::Result<(Vec<(String, String, Receipt)>, Vec<Foreign>, Vec<String>)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = target.client().await?;
        let (receipts, unreadable) = mom::operator::store::stored_objects_lenient(&client).await?;
        let unreadable = unreadable
            .into_iter()
            .map(|(ns, name, why)| (format!("{ns}/{name}"), None, format!("not a readable receipt: {why}")))
            .collect();
        let maps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(client, namespace);
        let keys = maps
            .get_opt(mom::operator::store::PUBLIC_KEYS_CONFIGMAP)
            .await?
            .and_then(|c| c.data)
            .map(|d| d.into_values().collect())
            .unwrap_or_default();
        Ok((receipts, unreadable, keys))
    })
}

#[cfg(not(feature = "operator"))]
#[allow(clippy::type_complexity)]
fn from_cluster(
    _namespace: &str,
    _target: &super::kube_target::KubeTarget,
) -> anyhow::Result<(Vec<(String, String, Receipt)>, Vec<Foreign>, Vec<String>)> {
    bail!("--cluster needs a build with the `operator` feature")
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.tenant_bundle.is_some() {
        return super::verify_tenant::run(&args);
    }
    let (cluster_objects, mut foreign, published) = if args.cluster {
        from_cluster(&args.namespace, &args.kube)?
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    let key_sources = if args.public_keys.is_empty() {
        published
    } else {
        args.public_keys.clone()
    };
    if key_sources.is_empty() {
        bail!("give at least one trusted key with --public-key FILE|HEX (none published in the cluster either)");
    }
    let keys = load_keys(&key_sources)?;
    // From the cluster, the chain is what the writer continues from: receipts a trusted key
    // signed. Every other stored Receipt object is named as foreign (and fails the check).
    let (cluster_receipts, exported) = if args.cluster {
        let all: Vec<Receipt> = cluster_objects.iter().map(|(_, _, r)| r.clone()).collect();
        let tagged = cluster_objects
            .into_iter()
            .map(|(ns, name, r)| (format!("{ns}/{name}"), r))
            .collect();
        let (trusted, left_out) = mom::receipts::provenance::split_trusted(tagged, &keys);
        foreign.extend(
            left_out
                .into_iter()
                .map(|(at, r, why)| (at, Some(r.sequence), why.to_string())),
        );
        foreign.sort();
        (trusted.into_iter().map(|(_, r)| r).collect(), Some(all))
    } else {
        (Vec::new(), None)
    };
    let pinned = args
        .pins
        .iter()
        .map(|p| parse_pin(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    let source = match &args.file {
        Some(f) => f.clone(),
        None => PathBuf::from(format!("cluster:{}", args.namespace)),
    };
    let options = VerifyOptions {
        signatures: if args.all_signatures {
            SignatureCheck::All
        } else {
            SignatureCheck::Anchors
        },
        pinned,
    };
    // A file checked without --replay is verified straight from its text (no Receipt values
    // built for lines in MOM's own canonical form): about twice as fast on large exports.
    let fast = match &args.file {
        Some(f) if !args.replay => {
            let text = mom::bounded_input::read_to_string(f, mom::bounded_input::MAX_RECEIPTS_FILE_BYTES)
                .with_context(|| format!("reading {}", f.display()))?;
            let parsed = started.elapsed();
            let report = verify_json_lines(&text, &keys, &options).with_context(|| f.display().to_string())?;
            std::mem::forget(text);
            Some((report, parsed))
        }
        _ => None,
    };
    let receipts = match (&args.file, &fast) {
        (_, Some(_)) => Vec::new(),
        (Some(f), None) => read_receipts(f)?,
        (None, _) => cluster_receipts,
    };
    if let Some(path) = &args.export {
        std::fs::write(
            path,
            mom::receipts::to_json_lines(exported.as_deref().unwrap_or(&receipts)),
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    let (report, parsed) = match fast {
        Some(done) => done,
        None => {
            let parsed = started.elapsed();
            (verify_chain(&receipts, &keys, &options), parsed)
        }
    };
    let elapsed = started.elapsed();
    let replay = args
        .replay
        .then(|| mom::decisions::registry().replay_all(&receipts, &InlineOnly));
    let ok = report.is_ok() && replay.as_ref().is_none_or(|r| r.mismatches.is_empty()) && foreign.is_empty();
    // The process ends right after printing; freeing millions of small allocations one by one
    // would cost as much as parsing them, and the OS reclaims them at once on exit.
    std::mem::forget(receipts);

    match args.format {
        Format::Json => {
            let out = serde_json::json!({
                "file": source.display().to_string(),
                "ok": ok,
                "signatures": options.signatures,
                "report": report,
                "replay": replay,
                "foreign": foreign
                    .iter()
                    .map(|(at, sequence, why)| serde_json::json!({"object": at, "sequence": sequence, "reason": why}))
                    .collect::<Vec<_>>(),
                "parseSeconds": parsed.as_secs_f64(),
                "verifySeconds": elapsed.as_secs_f64(),
            });
            println!("{}", serde_json::to_string(&out)?);
        }
        Format::Table => {
            print_table(
                &source,
                &report,
                replay.as_ref(),
                options.signatures,
                elapsed.as_secs_f64(),
                ok,
            );
            if !foreign.is_empty() {
                println!();
                println!("foreign receipts (not signed by a trusted key; not part of the chain):");
                for (at, sequence, why) in &foreign {
                    let seq = sequence.map_or("-".to_string(), |s| s.to_string());
                    println!("  {at:<40} sequence {seq:<20} {why}");
                }
            }
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn print_table(
    file: &Path,
    report: &Report,
    replay: Option<&ReplayReport>,
    signatures: SignatureCheck,
    seconds: f64,
    ok: bool,
) {
    println!("file         {}", file.display());
    let range = match (report.first_sequence, report.last_sequence) {
        (Some(a), Some(b)) => format!("sequences {a}..={b}"),
        _ => "empty".to_string(),
    };
    let pruned = if report.starts_at_checkpoint {
        ", starts at a checkpoint (older receipts pruned)"
    } else {
        ""
    };
    println!("receipts     {} ({range}{pruned})", report.receipts);
    println!(
        "checkpoints  {} recomputed, {} accepted on signature",
        report.checkpoints_recomputed, report.checkpoints_on_signature
    );
    let mode = match signatures {
        SignatureCheck::Anchors => "anchors",
        SignatureCheck::All => "all",
    };
    println!("signatures   {} checked ({mode})", report.signatures_checked);
    let rate = if seconds > 0.0 {
        report.receipts as f64 / seconds
    } else {
        0.0
    };
    println!("time         {:.3} s parse+verify ({rate:.0} receipts/s)", seconds);
    if !report.problems.is_empty() {
        println!();
        println!("{:<10} {:<20} DETAIL", "SEQUENCE", "PROBLEM");
        for p in &report.problems {
            println!("{:<10} {:<20} {}", p.sequence, p.kind.as_str(), p.detail);
        }
    }
    if let Some(r) = replay {
        println!();
        println!(
            "replay       {} replayed, {} matched, {} without inputs, {} without a kind",
            r.replayed, r.matched, r.without_inputs, r.without_kind
        );
        for (kind, n) in &r.unregistered {
            println!("             {n} decisions of unregistered kind {kind} not replayed");
        }
        if !r.mismatches.is_empty() {
            println!("{:<10} {:<20} DETAIL", "SEQUENCE", "REPLAY MISMATCH");
            for m in &r.mismatches {
                println!(
                    "{:<10} {:<20} {} ({})",
                    m.sequence,
                    format!("{:?}", m.what).to_lowercase(),
                    m.detail,
                    m.kind
                );
            }
        }
    }
    println!();
    let n = report.problems.len() + replay.map_or(0, |r| r.mismatches.len());
    println!(
        "result       {}",
        if ok {
            "OK".to_string()
        } else {
            format!("FAILED ({n} problems)")
        }
    );
}
