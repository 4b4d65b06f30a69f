//! The arguments of `mom verify` and the inputs they name: trusted public keys (`--public-key`)
//! and receipts exported as JSON lines. Shared by the whole-chain check (`verify`), the tenant
//! bundle check (`verify_tenant`) and `mom report`, so none of them imports another.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args as ClapArgs, ValueEnum};
use mom::receipts::signing::parse_public_key;
use mom::receipts::{Receipt, TrustedKeys, parse_line};

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
    /// The cluster `--cluster` reads (kube's inference unless `kubectl mom verify` says otherwise).
    #[arg(skip)]
    pub kube: super::kube_target::KubeTarget,
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
        let text = mom::bounded_input::read_to_string(Path::new(v), mom::bounded_input::MAX_SMALL_FILE_BYTES)
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
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = String::new();
    let mut out = Vec::new();
    for number in 1.. {
        let n =
            mom::bounded_input::read_line_capped(&mut reader, &mut line, mom::bounded_input::MAX_RECEIPT_LINE_BYTES)
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
