//! `mom rollback`: put a GeometricAgent or an OrchestrationStrategy back to the spec a signed
//! `agent.change` / `strategy.change` receipt recorded (`mom::operator::rollback` does the
//! cluster work).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args as ClapArgs;

use mom::decisions::rollback::SpecKind;

use super::kube_target::KubeTarget;

/// Put a GeometricAgent or an OrchestrationStrategy back to the spec recorded by one of its
/// `agent.change` / `strategy.change` receipts.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The object: `NAME` or `agent/NAME` (a GeometricAgent), `strategy/NAME` (an
    /// OrchestrationStrategy); the long kind names (`geometricagent/`, `orchestrationstrategy/`)
    /// work too.
    #[arg(value_name = "[KIND/]NAME")]
    pub object: String,
    /// Its namespace (where its receipts are stored).
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Sequence number of the `agent.change` / `strategy.change` receipt whose spec to restore
    /// (`kubectl get receipts -l mom.hypersync.io/action=configure` lists them).
    #[arg(long = "to", value_name = "SEQ")]
    pub to: u64,
    /// Trusted Ed25519 public key: 64 hex digits, or a file holding one key per line. Without
    /// it, the keys published in `<mom-namespace>/mom-receipt-public-keys` are trusted.
    #[arg(long = "public-key", value_name = "FILE|HEX")]
    pub public_keys: Vec<String>,
    /// Namespace MOM runs in (its published receipt keys).
    #[arg(long, default_value = "mom-system")]
    pub mom_namespace: String,
    /// Apply a receipt of an earlier object of the same name (deleted and re-created since).
    #[arg(long)]
    pub allow_recreated: bool,
    /// Check the receipt and report, without writing the object.
    #[arg(long)]
    pub dry_run: bool,
    /// Path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,
}

/// The kind and name `[KIND/]NAME` names.
fn parse_object(object: &str) -> anyhow::Result<(SpecKind, &str)> {
    let (kind, name) = match object.split_once('/') {
        None => (SpecKind::Agent, object),
        Some((kind, name)) => match kind.to_ascii_lowercase().as_str() {
            "agent" | "geometricagent" | "geometricagents" => (SpecKind::Agent, name),
            "strategy" | "orchestrationstrategy" | "orchestrationstrategies" => (SpecKind::Strategy, name),
            _ => bail!("{object}: unknown kind {kind:?} (agent/NAME or strategy/NAME)"),
        },
    };
    if name.is_empty() || name.contains('/') {
        bail!("{object}: expected [KIND/]NAME (agent/NAME or strategy/NAME)");
    }
    Ok((kind, name))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (kind, name) = match parse_object(&args.object) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("mom rollback: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let target = KubeTarget {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = target.client().await?;
        let keys = if args.public_keys.is_empty() {
            let keys = mom::operator::store::published_trusted_keys(&client, &args.mom_namespace).await?;
            if keys.is_empty() {
                bail!(
                    "no trusted key: none published in {}/{} and no --public-key given",
                    args.mom_namespace,
                    mom::operator::store::PUBLIC_KEYS_CONFIGMAP
                );
            }
            keys
        } else {
            super::verify_args::load_keys(&args.public_keys)?
        };
        let outcome = mom::operator::rollback::rollback(
            &client,
            kind,
            &args.namespace,
            name,
            args.to,
            &keys,
            args.allow_recreated,
            args.dry_run,
        )
        .await;
        match outcome {
            Ok(r) => {
                println!("{}", serde_json::to_string(&r)?);
                let what = match (r.changed, r.dry_run) {
                    (false, _) => "already has that spec: nothing written".to_string(),
                    (true, true) => "would get that spec back (dry run: nothing written)".to_string(),
                    (true, false) => format!(
                        "spec restored: generation {} -> {}",
                        r.generation_before, r.generation_after
                    ),
                };
                eprintln!(
                    "{} {}/{name}: receipt {} (generation {}) {what}",
                    r.kind, args.namespace, r.receipt, r.recorded_generation
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("mom rollback: {e}");
                Ok(ExitCode::from(2))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_an_agent_unless_its_kind_says_strategy_and_a_bad_kind_is_named() {
        assert_eq!(parse_object("web").unwrap(), (SpecKind::Agent, "web"));
        assert_eq!(parse_object("agent/web").unwrap(), (SpecKind::Agent, "web"));
        assert_eq!(parse_object("strategy/tuned").unwrap(), (SpecKind::Strategy, "tuned"));
        assert_eq!(
            parse_object("OrchestrationStrategy/tuned").unwrap(),
            (SpecKind::Strategy, "tuned")
        );
        let e = parse_object("pod/web").unwrap_err().to_string();
        assert!(e.contains("unknown kind \"pod\""), "{e}");
        assert!(parse_object("strategy/").is_err());
        assert!(parse_object("strategy/a/b").is_err());
    }
}
