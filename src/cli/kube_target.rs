//! Which cluster a command talks to: kubectl's `--kubeconfig` and `--context` conventions, shared
//! by `kubectl mom` and `mom verify --cluster` (which `kubectl mom verify` runs).

use std::path::PathBuf;

/// A kubeconfig file and context; both empty means kube's usual inference (`$KUBECONFIG`,
/// `~/.kube/config`, then the in-cluster service account).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeTarget {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

#[cfg(feature = "operator")]
impl KubeTarget {
    /// The client configuration; an unreadable kubeconfig or an unknown context is named.
    pub async fn config(&self) -> anyhow::Result<kube::Config> {
        use anyhow::Context as _;
        let options = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        Ok(match (&self.kubeconfig, &self.context) {
            (Some(path), _) => {
                let file = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("--kubeconfig {}: not a readable kubeconfig", path.display()))?;
                kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .with_context(|| format!("--kubeconfig {}", path.display()))?
            }
            (None, Some(context)) => kube::Config::from_kubeconfig(&options)
                .await
                .with_context(|| format!("--context {context}"))?,
            (None, None) => kube::Config::infer()
                .await
                .context("no cluster configured (no kubeconfig and not in a pod)")?,
        })
    }

    /// A client for the target cluster.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        use anyhow::Context as _;
        kube::Client::try_from(self.config().await?).context("connecting to the cluster")
    }
}
