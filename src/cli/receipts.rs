//! `mom receipts …`: key generation, a demo chain to try `mom verify` on, and retention pruning.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args as ClapArgs, Subcommand};
use mom::receipts::demo::demo_chain;
use mom::receipts::retention::{RetentionPolicy, split};
use mom::receipts::{Signer, parse_json_lines, to_json_lines};
use rand::RngCore;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

#[derive(Debug, ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make an Ed25519 signing key (32 random bytes from the OS); print its public key and id.
    Keygen {
        /// Write the secret key (64 hex digits) here; it is never printed.
        #[arg(long)]
        secret_out: PathBuf,
        /// Also write the public key (64 hex digits) here.
        #[arg(long)]
        public_out: Option<PathBuf>,
    },
    /// Write a valid signed demo chain as JSON lines (deterministic for a given seed).
    DemoChain {
        #[arg(long)]
        count: u64,
        #[arg(long)]
        out: PathBuf,
        /// A checkpoint every this many receipts (0 = none).
        #[arg(long, default_value_t = 1000)]
        checkpoint_every: u64,
        /// Seed of the demo signing key (ignored with --secret-key).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Sign with this key instead: 64 hex digits or a file holding them.
        #[arg(long, value_name = "FILE|HEX")]
        secret_key: Option<String>,
        /// Also write the public key (64 hex digits) here.
        #[arg(long)]
        public_out: Option<PathBuf>,
    },
    /// Split an export by a retention policy: the pruned part and the kept part (which starts
    /// at a checkpoint and still verifies on its own).
    Prune {
        #[arg(long)]
        file: PathBuf,
        /// Keep at least this many newest receipts.
        #[arg(long)]
        keep_last: u64,
        #[arg(long)]
        kept_out: PathBuf,
        #[arg(long)]
        pruned_out: PathBuf,
    },
}

fn load_secret(v: &str) -> anyhow::Result<Signer> {
    let text = if v.len() == 64 && v.chars().all(|c| c.is_ascii_hexdigit()) {
        v.to_string()
    } else {
        mom::bounded_input::read_to_string(std::path::Path::new(v), mom::bounded_input::MAX_SMALL_FILE_BYTES)
            .with_context(|| format!("--secret-key {v}: not hex and not a readable file"))?
    };
    Ok(Signer::from_hex(&text)?)
}

fn write(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Writes a secret readable by its owner only (mode 0600 on Unix), refusing to overwrite.
fn write_secret(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Keygen { secret_out, public_out } => {
            let mut seed = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut seed))
                .context("reading 32 random bytes from /dev/urandom")?;
            let s = Signer::from_seed(seed);
            write_secret(&secret_out, &format!("{}\n", s.secret_hex()))?;
            if let Some(p) = public_out {
                write(&p, &format!("{}\n", s.public_hex()))?;
            }
            println!("keyId     {}\npublicKey {}", s.key_id(), s.public_hex());
        }
        Command::DemoChain {
            count,
            out,
            checkpoint_every,
            seed,
            secret_key,
            public_out,
        } => {
            let signer = match secret_key {
                Some(v) => load_secret(&v)?,
                None => {
                    let mut bytes = [0u8; 32];
                    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
                    Signer::from_seed(bytes)
                }
            };
            let chain = demo_chain(&signer, count, checkpoint_every)?;
            write(&out, &to_json_lines(&chain))?;
            if let Some(p) = public_out {
                write(&p, &format!("{}\n", signer.public_hex()))?;
            }
            println!("wrote {count} receipts to {}", out.display());
            println!("keyId     {}\npublicKey {}", signer.key_id(), signer.public_hex());
        }
        Command::Prune {
            file,
            keep_last,
            kept_out,
            pruned_out,
        } => {
            let text = mom::bounded_input::read_to_string(&file, mom::bounded_input::MAX_RECEIPTS_FILE_BYTES)
                .with_context(|| format!("reading {}", file.display()))?;
            let mut receipts = parse_json_lines(&text).with_context(|| format!("{}", file.display()))?;
            if !receipts.is_sorted_by_key(|r| r.sequence) {
                bail!(
                    "{}: receipts are not in sequence order; run mom verify first",
                    file.display()
                );
            }
            receipts.dedup();
            let s = split(&receipts, &RetentionPolicy { keep_last });
            write(&kept_out, &to_json_lines(&s.kept))?;
            write(&pruned_out, &to_json_lines(&s.pruned))?;
            println!("pruned {} receipts, kept {}", s.pruned.len(), s.kept.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}
