//! The operator process: leader election, the HTTP endpoints (metrics, health) and the
//! controllers. Thin by design — it observes the cluster, calls the core and applies results.

pub mod agent_triggers;
pub mod agents;
pub mod anomaly;
pub mod anomaly_state;
pub mod auction;
pub mod budget;
pub mod checkpoints;
pub mod context;
pub mod crd;
pub mod descheduler;
pub mod error;
pub mod events;
pub mod extender;
pub mod failover;
pub mod failover_plan;
pub mod health;
pub mod http;
pub mod inspect;
pub mod latency;
pub mod leader;
pub mod lenient;
pub mod metrics;
pub mod metrics_api;
pub mod pools;
pub mod prometheus;
pub mod quarantine;
pub mod receipts;
pub mod retry;
pub mod rollback;
pub mod scaler;
pub mod server;
pub mod status;
pub mod store;
pub mod tenancy;
pub mod ticks;
pub mod tls;
pub mod twin_source;
pub mod view;
pub mod watch;
pub mod webview;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use error::Error;

/// How long a shutdown waits for the controllers to stop before it seals the final checkpoint
/// and releases the Lease anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything `mom operator` needs to start, resolved from flags and the environment.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Namespace holding the leader-election Lease.
    pub namespace: String,
    /// Name of the leader-election Lease.
    pub lease_name: String,
    /// This replica's identity in the Lease (unique per process).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews (and candidates retry).
    pub renew_period: Duration,
    /// How long the holder keeps leading without a successful renew (below `lease_duration`).
    pub renew_deadline: Duration,
    /// Address of the metrics and health server.
    pub metrics_addr: SocketAddr,
    /// Address of the scheduler-extender server.
    pub extender_addr: SocketAddr,
    /// Serve the extender over HTTPS with this certificate and key (plain HTTP when absent).
    pub extender_tls: Option<tls::TlsFiles>,
    /// CA of the client certificates the extender's verbs require (mutual TLS); without it
    /// every caller is trusted.
    pub extender_client_ca: Option<std::path::PathBuf>,
    /// The pods' `spec.schedulerName`s the extender binds.
    pub scheduler_names: Vec<String>,
    /// How long a Receipt create may take before its outcome counts as unknown.
    pub receipt_write_timeout: Duration,
    /// When receipt checkpoints are written.
    pub checkpoints: checkpoints::CheckpointSettings,
    /// The scaler loop (Prometheus, history window).
    pub scaler: scaler::ScalerSettings,
    /// `--scaler-tick-seconds`, if given (else the scaler follows `spec.tickSeconds`).
    pub scaler_tick: ticks::Tick,
    /// `--auction-tick-seconds`, if given (else the auction follows `spec.tickSeconds`).
    pub auction_tick: ticks::Tick,
    /// The descheduler loop, when enabled.
    pub descheduler: Option<descheduler::DeschedulerConfig>,
}

/// Runs the operator until SIGTERM/SIGINT; then stops the controllers, lets a leader seal a
/// final checkpoint over the receipts it wrote since the last one, releases the Lease and returns.
pub async fn run(config: OperatorConfig) -> Result<(), Error> {
    let mut stop_signals = StopSignals::listen();
    tracing::info!("connecting to the apiserver");
    let connect = async {
        let client = kube::Client::try_default().await.map_err(Error::Connect)?;
        let version = client.apiserver_version().await.map_err(Error::Connect)?;
        Ok::<_, Error>((client, version))
    };
    // Nothing is held or written yet: a stop while connecting (an apiserver that does not
    // answer) ends the process at once, cleanly.
    let (client, version) = tokio::select! {
        connected = connect => connected?,
        _ = stop_signals.wait() => {
            tracing::info!("stopped before the apiserver answered");
            return Ok(());
        }
    };
    tracing::info!(server = %version.git_version, identity = %config.identity, "connected to the apiserver");

    let metrics = Arc::new(metrics::Metrics::default());
    let bind = |addr: SocketAddr| async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let bound = listener.local_addr().map_err(|source| Error::Bind { addr, source })?;
        Ok::<_, Error>((listener, bound))
    };
    let (listener, bound) = bind(config.metrics_addr).await?;
    tracing::info!(addr = %bound, "serving /metrics, /healthz, /readyz and the web view at /ui/");
    let (extender_listener, extender_bound) = bind(config.extender_addr).await?;
    // Fail at start-up, naming the file, rather than on the scheduler's first call.
    let extender_tls = match &config.extender_tls {
        Some(files) => Some(tls::acceptor(files.clone(), config.extender_client_ca.as_deref()).map_err(Error::Tls)?),
        None => None,
    };
    let access = extender::Access {
        require_client_certificate: config.extender_client_ca.is_some(),
        scheduler_names: config.scheduler_names.clone(),
    };
    if !access.require_client_certificate {
        tracing::warn!(
            "the extender trusts every caller (no --extender-client-ca): any pod that reaches its port can have \
             MOM filter, prioritize and bind; give it the scheduler's client CA"
        );
    }
    let health = Arc::new(health::Health::default());

    let elector = leader::LeaderElector::new(
        client.clone(),
        leader::LeaseSettings {
            namespace: config.namespace.clone(),
            name: config.lease_name.clone(),
            identity: config.identity.clone(),
            lease_duration: config.lease_duration,
            renew_period: config.renew_period,
            renew_deadline: config.renew_deadline,
        },
    );
    let leading = elector.subscribe();
    let fence = elector.fence();
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    // The election stops last (after the final checkpoint), on a signal of its own.
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);

    // The placement view, fed by watches on every replica.
    let view: view::SharedView = Default::default();
    let web = webview::Source::new(view.clone(), leading.clone(), shutdown_rx.clone());
    let server = tokio::spawn(server::serve(
        listener,
        metrics.clone(),
        leading.clone(),
        health.clone(),
        web.clone(),
        shutdown_rx.clone(),
    ));
    let web_publisher = tokio::spawn(web.clone().publish());
    let election = tokio::spawn(elector.run(metrics.clone(), release_rx));

    let (nodes_ready_tx, mut nodes_ready) = tokio::sync::watch::channel(false);
    let (config_ready_tx, mut config_ready) = tokio::sync::watch::channel(false);
    // `spec.tickSeconds` of the MomConfig `default`, for the loops it governs.
    let (tick_seconds_tx, tick_seconds) = tokio::sync::watch::channel(None);
    let watches = [
        watched(
            &health,
            "watch/momconfig",
            watch::momconfig(
                client.clone(),
                view.clone(),
                config_ready_tx,
                tick_seconds_tx,
                metrics.clone(),
            ),
        ),
        watched(
            &health,
            "watch/nodes",
            watch::nodes(client.clone(), view.clone(), nodes_ready_tx, metrics.clone()),
        ),
        watched(
            &health,
            "watch/pods",
            watch::pods(client.clone(), view.clone(), metrics.clone()),
        ),
        watched(
            &health,
            "watch/namespaces",
            watch::namespaces(client.clone(), view.clone()),
        ),
        watched(
            &health,
            "watch/node-heartbeats",
            watch::node_heartbeats(client.clone(), view.clone()),
        ),
        watched(&health, "watch/latency", latency::run(client.clone(), view.clone())),
    ];
    // Settings first, then nodes: the first embedding then already uses the configured keys.
    // A stop while waiting (a node watch that never syncs) ends the start-up here: nothing acts
    // yet, so only the Lease (if taken) is released.
    let ready = async {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), config_ready.wait_for(|r| *r)).await;
        let _ = nodes_ready.wait_for(|r| *r).await;
    };
    let stopped_early = tokio::select! {
        _ = ready => false,
        _ = stop_signals.wait() => true,
    };
    if stopped_early {
        tracing::info!("stopped before the node cache was ready; releasing the Lease");
        let _ = shutdown_tx.send(true);
        let _ = release_tx.send(true);
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
            let _ = server.await;
            let _ = web_publisher.await;
            let _ = election.await;
        })
        .await;
        for w in watches {
            w.abort();
        }
        return Ok(());
    }

    tracing::info!(addr = %extender_bound, tls = extender_tls.is_some(), "serving the scheduler extender");
    let writer = Arc::new(
        receipts::ReceiptWriter::new(client.clone(), config.namespace.clone())
            .with_metrics(metrics.clone())
            .with_write_timeout(config.receipt_write_timeout),
    );
    let mut ctx = context::Context::new(
        client.clone(),
        view.clone(),
        metrics.clone(),
        leading.clone(),
        writer.clone(),
        &config.identity,
    )
    .with_fence(fence)
    .with_tick_seconds(tick_seconds);
    ctx.health = health.clone();
    let ctx = Arc::new(ctx);
    web.set_context(ctx.clone());
    // Only the leader binds; its pod carries the leader label the extender Service selects.
    let leader_label = tokio::spawn(leader::label_own_pod(
        client.clone(),
        leader::own_pod(std::env::var("POD_NAMESPACE").ok(), std::env::var("POD_NAME").ok()),
        leading.clone(),
        shutdown_rx.clone(),
    ));
    let extender_task = tokio::spawn(extender::serve(
        extender_listener,
        extender_tls,
        ctx.clone(),
        access,
        http::Limits::default(),
        shutdown_rx.clone(),
    ));

    use context::run_leader_loop;
    let agent_controller = {
        let controller = agents::run(ctx.clone(), shutdown_rx.clone());
        let (health, shutdown) = (health.clone(), shutdown_rx.clone());
        health.watching("controller/agents");
        tokio::spawn(async move {
            let out = controller.await;
            if !*shutdown.borrow() {
                health.ended("controller/agents", "the GeometricAgent controller stopped");
            }
            out
        })
    };
    let checkpointer = tokio::spawn(run_leader_loop(
        ctx.clone(),
        checkpoints::Checkpointer::new(config.checkpoints),
        shutdown_rx.clone(),
    ));
    let scaler_task = tokio::spawn(run_leader_loop(
        ctx.clone(),
        scaler::Scaler::new(config.scaler_tick, config.scaler.clone()),
        shutdown_rx.clone(),
    ));
    let auction_loop = tokio::spawn(run_leader_loop(
        ctx.clone(),
        auction::Auctioneer::new(config.auction_tick),
        shutdown_rx.clone(),
    ));
    let descheduler_task = match config.descheduler.clone() {
        Some(dc) => {
            let kube_config = kube::Config::infer()
                .await
                .map_err(|e| Error::Connect(kube::Error::InferConfig(e)))?;
            let job = descheduler::Descheduler {
                evict_client: descheduler::client_without_retries(kube_config).map_err(Error::Connect)?,
                config: dc,
                state: Default::default(),
            };
            Some(tokio::spawn(run_leader_loop(ctx.clone(), job, shutdown_rx.clone())))
        }
        None => None,
    };
    let status_writer = tokio::spawn(run_leader_loop(
        ctx.clone(),
        status::StatusWriter::default(),
        shutdown_rx.clone(),
    ));
    let failover_planner = tokio::spawn(run_leader_loop(
        ctx.clone(),
        failover_plan::Planner::default(),
        shutdown_rx.clone(),
    ));

    let anomaly_loop = tokio::spawn(run_leader_loop(
        ctx.clone(),
        anomaly::AnomalyLoop::new(config.scaler.prometheus_url.as_deref()),
        shutdown_rx.clone(),
    ));

    stop_signals.wait().await;
    tracing::info!("shutting down");
    // 1. Stop everything that acts or writes receipts; the Lease is still held (and renewed),
    //    so no other replica writes meanwhile.
    let _ = shutdown_tx.send(true);
    let mut checkpoint_state = checkpoints::PublishState::default();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let _ = server.await;
        let _ = web_publisher.await;
        let _ = extender_task.await;
        let _ = leader_label.await;
        let _ = agent_controller.await;
        let _ = scaler_task.await;
        let _ = auction_loop.await;
        if let Some(task) = descheduler_task {
            let _ = task.await;
        }
        let _ = status_writer.await;
        let _ = failover_planner.await;
        let _ = anomaly_loop.await;
        if let Ok(job) = checkpointer.await {
            checkpoint_state = job.publish_state();
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            seconds = DRAIN_TIMEOUT.as_secs(),
            "controllers did not stop in time; continuing the shutdown"
        );
    }
    // 2. A leader seals what it wrote since the last checkpoint (bounded; never blocks the exit).
    checkpoints::final_checkpoint(
        &client,
        &writer,
        *leading.borrow(),
        checkpoint_state,
        checkpoints::FINAL_CHECKPOINT_TIMEOUT,
    )
    .await;
    // 3. Only then release the Lease.
    let _ = release_tx.send(true);
    match election.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "leader election ended with an error"),
        Err(err) => tracing::warn!(error = %err, "leader election task failed"),
    }
    for w in watches {
        w.abort();
    }
    Ok(())
}

/// Spawns a watch that must run for the life of the process; its end (for whatever reason)
/// makes `/healthz` fail, naming it.
fn watched<F>(health: &Arc<health::Health>, name: &'static str, watch: F) -> tokio::task::JoinHandle<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    health.watching(name);
    let health = health.clone();
    tokio::spawn(async move {
        // A panic inside is caught by its own task so it is reported rather than lost.
        let result = tokio::spawn(watch).await;
        let why = match result {
            Ok(()) => "the watch returned".to_string(),
            Err(err) if err.is_panic() => "the watch panicked".to_string(),
            Err(err) => format!("the watch task failed: {err}"),
        };
        tracing::error!(watch = name, reason = %why, "a watch ended; /healthz now fails");
        health.ended(name, &why);
    })
}

/// SIGTERM and SIGINT, listened for from the first line of [`run`]: a signal that arrives while
/// the operator is still starting stops it gracefully instead of killing the process with the
/// default action — at once while it connects or waits for its caches (nothing acts yet), and
/// through the usual drain once its loops are spawned.
struct StopSignals {
    term: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn listen() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(err) => {
                tracing::warn!(error = %err, signal = name, "cannot listen for this signal; it stops the operator at once");
                None
            }
        };
        Self {
            term: listen(SignalKind::terminate(), "SIGTERM"),
            interrupt: listen(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// Returns at the next SIGTERM or SIGINT (also one received before this call).
    async fn wait(&mut self) {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.term) => {}
            _ = recv(&mut self.interrupt) => {}
        }
    }
}
