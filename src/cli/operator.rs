//! `mom operator`: starts the operator process (flags → `OperatorConfig`, logging, runtime).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Namespace of the leader-election Lease (defaults to $POD_NAMESPACE, else mom-system).
    #[arg(long, env = "POD_NAMESPACE", default_value = "mom-system")]
    namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "mom-operator-leader")]
    lease_name: String,
    /// Identity in the Lease; defaults to $POD_NAME, else hostname and process id.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a Lease stays valid without renewal (a standby takes over this long after the
    /// leader's last renewal; renewals come every --renew-period-seconds).
    #[arg(long, default_value_t = 10)]
    lease_duration_seconds: u64,
    /// Seconds between renewals and acquisition attempts.
    #[arg(long, default_value_t = 2)]
    renew_period_seconds: u64,
    /// Seconds (fractions allowed) the leader keeps acting without a successful renewal; past
    /// it, it stops at once. Must lie strictly between --renew-period-seconds and
    /// --lease-duration-seconds; defaults to two thirds of the way from the first to the second.
    #[arg(long = "lease-renew-deadline-seconds")]
    lease_renew_deadline_seconds: Option<f64>,
    /// Listen address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Listen address of the scheduler extender (filter, prioritize, bind).
    #[arg(long, default_value = "0.0.0.0:8443")]
    extender_addr: SocketAddr,
    /// Serve the extender over HTTPS with this PEM certificate chain (e.g. `tls.crt` of a
    /// mounted cert-manager Secret); reloaded when the file changes. Needs --extender-tls-key.
    #[arg(long, requires = "extender_tls_key")]
    extender_tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for --extender-tls-cert (e.g. `tls.key`).
    #[arg(long, requires = "extender_tls_cert")]
    extender_tls_key: Option<std::path::PathBuf>,
    /// PEM CA bundle that signs the scheduler's client certificate (mutual TLS). With it,
    /// filter, prioritize and bind answer 401 to any caller without a certificate it signed
    /// (/healthz stays open). Without it every caller is trusted, and the operator warns.
    #[arg(long, requires = "extender_tls_cert")]
    extender_client_ca: Option<std::path::PathBuf>,
    /// Bind only pods whose spec.schedulerName is this (repeat for several scheduler profiles).
    #[arg(long = "scheduler-name", default_value = "mom-scheduler")]
    scheduler_names: Vec<String>,
    /// Write a receipt checkpoint (signed Merkle tree head, mirrored to the tenants'
    /// `mom-receipt-checkpoints` ConfigMaps) after this many receipts (0: no count trigger).
    #[arg(long, default_value_t = 256)]
    checkpoint_every_receipts: u64,
    /// ... and at least this often (seconds) while receipts are written (0: no timer).
    #[arg(long, default_value_t = 60)]
    checkpoint_interval_seconds: u64,
    /// Receipt retention: after each checkpoint, delete the receipts before the newest
    /// checkpoint that still leaves at least this many in the cluster (0: keep every receipt).
    /// The kept chain starts at a checkpoint and still verifies; export first to keep the rest.
    #[arg(long, default_value_t = 0)]
    receipt_retention_keep_last: u64,
    /// Seconds between two scaler evaluations (also the spacing of the demand samples). Given,
    /// it overrides MomConfig `default` spec.tickSeconds for the scaler; absent, the scaler
    /// follows spec.tickSeconds (15 without a MomConfig `default`).
    #[arg(long)]
    scaler_tick_seconds: Option<f64>,
    /// Base URL of the Prometheus HTTP API the scaler queries (e.g. http://prometheus:9090).
    #[arg(long, env = "MOM_PROMETHEUS_URL")]
    prometheus_url: Option<String>,
    /// Seconds of demand history the predictive scaler fetches and forecasts from.
    #[arg(long, default_value_t = 3600.0)]
    scaler_history_seconds: f64,
    /// Seconds a new replica needs before it serves (the predictive scaler looks that far ahead).
    #[arg(long, default_value_t = 30.0)]
    scaler_startup_seconds: f64,
    /// Forecasting model of the predictive scaler (seasonal_naive, holt_winters, ridge, combo,
    /// auto, ensemble, neural, ensemble_neural); a fresh model is fitted at every decision.
    #[arg(long, default_value = "holt_winters")]
    scaler_model: String,
    /// Seconds between two ticks of the auction loop (quotas under resource pressure). Given
    /// (or its variable set), it overrides MomConfig `default` spec.tickSeconds for the auction;
    /// absent, the auction follows spec.tickSeconds (15 without a MomConfig `default`).
    #[arg(long, env = "MOM_AUCTION_TICK_SECONDS")]
    auction_tick_seconds: Option<u64>,
    /// Run the descheduler loop (leader only): evicts pods whose move pays for itself.
    #[arg(long)]
    deschedule: bool,
    /// Run the descheduler but only print each plan (one JSON line per tick); evict nothing.
    #[arg(long)]
    deschedule_dry_run: bool,
    /// Seconds between descheduler ticks. Given, it overrides MomConfig `default`
    /// spec.tickSeconds for the descheduler; absent, the descheduler follows spec.tickSeconds
    /// (15 without a MomConfig `default`).
    #[arg(long)]
    deschedule_tick_seconds: Option<u64>,
    /// Descheduler settings (JSON: planner limits and per-strategy args); defaults when absent.
    #[arg(long)]
    deschedule_settings: Option<std::path::PathBuf>,
    /// Seconds a Receipt create may take before its outcome counts as unknown; the writer then
    /// retries the same sealed receipt (never a resealed one) until it is seen stored.
    #[arg(long, default_value_t = 10.0)]
    receipt_write_timeout_seconds: f64,
    /// Log format: json (structured, default) or text.
    #[arg(long, default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_logging(&args.log_format);
    let renew_deadline = match args.lease_renew_deadline_seconds {
        Some(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s),
        Some(s) => anyhow::bail!("--lease-renew-deadline-seconds must be a finite number > 0, got {s}"),
        None => {
            let (period, lease) = (args.renew_period_seconds as f64, args.lease_duration_seconds as f64);
            Duration::from_secs_f64(period + (lease - period).max(0.0) * 2.0 / 3.0)
        }
    };
    mom::operator::leader::validate_timings(
        Duration::from_secs(args.renew_period_seconds),
        renew_deadline,
        Duration::from_secs(args.lease_duration_seconds),
    )
    .context("--renew-period-seconds, --lease-renew-deadline-seconds and --lease-duration-seconds")?;
    for (flag, value, min) in [
        ("--scaler-tick-seconds", args.scaler_tick_seconds.unwrap_or(0.1), 0.1),
        ("--scaler-history-seconds", args.scaler_history_seconds, 0.0),
        ("--scaler-startup-seconds", args.scaler_startup_seconds, 0.0),
        (
            "--receipt-write-timeout-seconds",
            args.receipt_write_timeout_seconds,
            0.1,
        ),
    ] {
        if !(value.is_finite() && value >= min) {
            anyhow::bail!("{flag} must be a finite number ≥ {min}, got {value}");
        }
    }
    let model = mom::forecast::ModelKind::parse(&args.scaler_model).context("--scaler-model")?;
    if args.auction_tick_seconds == Some(0) {
        anyhow::bail!("--auction-tick-seconds must be at least 1");
    }
    if args.deschedule_tick_seconds == Some(0) {
        anyhow::bail!("--deschedule-tick-seconds must be at least 1");
    }
    use mom::operator::ticks::Tick;
    let tick = |flag: Option<Duration>| flag.map_or_else(Tick::from_momconfig, Tick::overridden);
    let identity = args.identity.unwrap_or_else(|| {
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "mom".into());
        format!("{host}-{}", std::process::id())
    });
    let descheduler = if args.deschedule || args.deschedule_dry_run {
        let settings: mom::descheduler::Settings = match &args.deschedule_settings {
            Some(path) => {
                let text = mom::bounded_input::read_to_string(path, mom::bounded_input::MAX_SMALL_FILE_BYTES)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => Default::default(),
        };
        settings.validate()?;
        Some(mom::operator::descheduler::DeschedulerConfig {
            tick: tick(args.deschedule_tick_seconds.map(Duration::from_secs)),
            dry_run: args.deschedule_dry_run,
            settings,
        })
    } else {
        None
    };
    let config = mom::operator::OperatorConfig {
        namespace: args.namespace,
        lease_name: args.lease_name,
        identity,
        lease_duration: Duration::from_secs(args.lease_duration_seconds),
        renew_period: Duration::from_secs(args.renew_period_seconds),
        renew_deadline,
        metrics_addr: args.metrics_addr,
        extender_addr: args.extender_addr,
        extender_tls: match (args.extender_tls_cert, args.extender_tls_key) {
            (Some(cert), Some(key)) => Some(mom::operator::tls::TlsFiles { cert, key }),
            _ => None,
        },
        extender_client_ca: args.extender_client_ca,
        scheduler_names: args.scheduler_names,
        receipt_write_timeout: Duration::from_secs_f64(args.receipt_write_timeout_seconds),
        checkpoints: mom::operator::checkpoints::CheckpointSettings {
            every_receipts: args.checkpoint_every_receipts,
            interval: Duration::from_secs(args.checkpoint_interval_seconds),
            keep_last: args.receipt_retention_keep_last,
        },
        scaler: mom::operator::scaler::ScalerSettings {
            // The loop sets this to its period in force before each tick.
            tick: mom::operator::ticks::BUILT_IN,
            prometheus_url: args.prometheus_url,
            history: Duration::from_secs_f64(args.scaler_history_seconds),
            startup: Duration::from_secs_f64(args.scaler_startup_seconds),
            model,
        },
        scaler_tick: tick(args.scaler_tick_seconds.map(Duration::from_secs_f64)),
        auction_tick: tick(args.auction_tick_seconds.map(Duration::from_secs)),
        descheduler,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(mom::operator::run(config))?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().with_current_span(false).init();
    } else {
        builder.init();
    }
}
