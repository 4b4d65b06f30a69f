//! `mom verify --file FILE`: offline verification of an exported receipt chain.
//!
//! Reads JSON lines (one receipt per line), checks hashes, links, signatures and checkpoints
//! against the trusted public keys, optionally replays recorded decisions, prints a table or
//! (with `--format json`) one JSON object, and exits 1 when any problem is found.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args as ClapArgs, ValueEnum};
use mom::receipts::replay::{InlineOnly, ReplayReport};
use mom::receipts::signing::parse_public_key;
use mom::receipts::{
    ChainHead, Receipt, Report, SignatureCheck, TrustedKeys, VerifyOptions, parse_line, verify_chain, verify_json_lines,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Verify a receipt chain exported as JSON lines.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// JSON-lines export to check (one receipt per line).
    #[arg(long, required_unless_present_any = ["cluster", "tenant_bundle"], conflicts_with = "cluster")]
    pub file: Option<PathBuf>,
    /// Check a tenant's checkpoint bundle instead of the whole chain: a namespace (reads its
    /// `mom-receipt-checkpoints` ConfigMap and compares with the Receipts stored there), or a
    /// file holding a bundle or that ConfigMap as JSON (`kubectl get cm -o json`). With `--file`,
    /// the receipts of that export are compared with the bundle too. Without `--public-key`,
    /// trusts the keys published in the ConfigMap.
    #[arg(long, value_name = "NAMESPACE|FILE", conflicts_with = "cluster")]
    pub tenant_bundle: Option<String>,
    /// With `--tenant-bundle`: only this tenant's bundle (default: every bundle found).
    #[arg(long, requires = "tenant_bundle")]
    pub tenant: Option<String>,
    /// Read the receipts from the cluster (current kubeconfig) instead of a file; without
    /// `--public-key`, trust the keys published in `mom-system/mom-receipt-public-keys`.
    #[arg(long)]
    pub cluster: bool,
    /// Namespace of the operator (where its public keys are published), with `--cluster`.
    #[arg(long, default_value = "mom-system")]
    pub namespace: String,
    /// With `--cluster`: also write the receipts as JSON lines to this file (for `--file`).
    #[arg(long, requires = "cluster")]
    pub export: Option<PathBuf>,
    /// Trusted Ed25519 public key: 64 hex digits, or a file holding one key per line.
    #[arg(long = "public-key", value_name = "FILE|HEX")]
    pub public_keys: Vec<String>,
    /// Re-run recorded decisions from their recorded inputs and report any that differ.
    #[arg(long)]
    pub replay: bool,
    /// Check every receipt's signature (batch verification) instead of only the anchors.
    #[arg(long)]
    pub all_signatures: bool,
    /// A head known from elsewhere, `SEQUENCE:HASH`; truncation or rewriting past it is evident.
    #[arg(long = "pin", value_name = "SEQ:HASH")]
    pub pins: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Reads `--public-key` values: hex directly, else a file of hex keys (`#` comments allowed).
pub fn load_keys(values: &[String]) -> anyhow::Result<TrustedKeys> {
    let mut keys = TrustedKeys::new();
    for v in values {
        let looks_hex = v.len() == 64 && v.chars().all(|c| c.is_ascii_hexdigit());
        if looks_hex {
            keys.add(parse_public_key(v)?);
            continue;
        }
        let text = std::fs::read_to_string(Path::new(v))
            .with_context(|| format!("--public-key {v}: not 64 hex digits and not a readable file"))?;
        let mut n = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.add(parse_public_key(line).with_context(|| format!("{v} line {}", i + 1))?);
            n += 1;
        }
        if n == 0 {
            bail!("--public-key {v}: the file holds no key");
        }
    }
    Ok(keys)
}

/// Streams the JSON lines of `path` into receipts (the file is never held whole in memory).
pub fn read_receipts(path: &Path) -> anyhow::Result<Vec<Receipt>> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = String::new();
    let mut out = Vec::new();
    for number in 1.. {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .with_context(|| format!("{} line {number}", path.display()))?;
        if n == 0 {
            break;
        }
        if let Some(r) = parse_line(&line, number).with_context(|| path.display().to_string())? {
            out.push(r);
        }
    }
    Ok(out)
}

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

/// Receipts and published public keys from the cluster.
#[cfg(feature = "operator")]
fn from_cluster(namespace: &str) -> anyhow::Result<(Vec<Receipt>, Vec<String>)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = kube::Client::try_default().await.context("connecting to the cluster")?;
        let receipts = mom::operator::store::stored_chain(&client).await?;
        let maps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(client, namespace);
        let keys = maps
            .get_opt(mom::operator::store::PUBLIC_KEYS_CONFIGMAP)
            .await?
            .and_then(|c| c.data)
            .map(|d| d.into_values().collect())
            .unwrap_or_default();
        Ok((receipts, keys))
    })
}

#[cfg(not(feature = "operator"))]
fn from_cluster(_namespace: &str) -> anyhow::Result<(Vec<Receipt>, Vec<String>)> {
    bail!("--cluster needs a build with the `operator` feature")
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.tenant_bundle.is_some() {
        return super::verify_tenant::run(&args);
    }
    let (cluster_receipts, published) = if args.cluster {
        from_cluster(&args.namespace)?
    } else {
        (Vec::new(), Vec::new())
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
            let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
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
        std::fs::write(path, mom::receipts::to_json_lines(&receipts))
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
    let ok = report.is_ok() && replay.as_ref().is_none_or(|r| r.mismatches.is_empty());
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
                "parseSeconds": parsed.as_secs_f64(),
                "verifySeconds": elapsed.as_secs_f64(),
            });
            println!("{}", serde_json::to_string(&out)?);
        }
        Format::Table => print_table(
            &source,
            &report,
            replay.as_ref(),
            options.signatures,
            elapsed.as_secs_f64(),
            ok,
        ),
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
