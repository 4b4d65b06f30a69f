//! Shared harness of the integration tests: one real control plane per test binary (or the
//! one named by `MOM_TEST_KUBECONFIG`), a client, a namespace per test, kwok nodes.
//!
//! The control plane is started by `tests/cluster/up.sh` with `--watch-pid <this process>`, so
//! it is torn down when the test binary exits, however it exits.
#![allow(dead_code)]

pub mod browser;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

pub struct ControlPlane {
    pub kubeconfig: PathBuf,
    /// Folder of the control-plane binaries (kubectl among them).
    pub bin: PathBuf,
}

static CONTROL_PLANE: OnceLock<ControlPlane> = OnceLock::new();
static PRIVATE_AUDITED: AtomicBool = AtomicBool::new(false);
static PRIVATE: AtomicBool = AtomicBool::new(false);
static METRICS_SERVER: AtomicBool = AtomicBool::new(false);

/// Makes this test binary's control plane a private one (started for it, torn down when it
/// exits), even when `MOM_TEST_KUBECONFIG` names a shared one. Call it before anything else
/// touches the control plane. (Instead of removing `MOM_TEST_KUBECONFIG` from the
/// environment, which is unsound once other test threads run.)
pub fn use_private_control_plane() {
    PRIVATE.store(true, Ordering::SeqCst);
}

/// Makes this test binary's control plane a private one with an apiserver audit log
/// (`<state>/logs/audit.log`, ServiceAccount users only), even when `MOM_TEST_KUBECONFIG`
/// names a shared one. Call it before anything else touches the control plane.
pub fn use_private_audited_control_plane() {
    PRIVATE_AUDITED.store(true, Ordering::SeqCst);
}

/// Makes this test binary's control plane a private one that also serves the resource metrics
/// API (`up.sh` with `MOM_METRICS_SERVER=1`: metrics-server scraping kwok's simulated kubelet
/// resource metrics). Call it before anything else touches the control plane.
pub fn use_private_control_plane_with_metrics_server() {
    METRICS_SERVER.store(true, Ordering::SeqCst);
}

/// The apiserver audit log of a control plane started after
/// [`use_private_audited_control_plane`].
pub fn audit_log() -> PathBuf {
    control_plane()
        .kubeconfig
        .parent()
        .expect("state dir")
        .join("logs/audit.log")
}

fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The control plane of this test binary, started on first use.
///
/// Panics with the start-up log when it cannot come up: a test without a real control plane
/// must fail loudly, never pass quietly.
pub fn control_plane() -> &'static ControlPlane {
    CONTROL_PLANE.get_or_init(|| {
        let root = project_root();
        let metrics_server = METRICS_SERVER.load(Ordering::SeqCst);
        let metrics_env = metrics_server.then_some(("MOM_METRICS_SERVER", "1"));
        let build = Command::new(root.join("tests/cluster/build.sh"))
            .envs(metrics_env)
            .output()
            .expect("running tests/cluster/build.sh");
        assert!(
            build.status.success(),
            "building the control plane failed:\n{}",
            String::from_utf8_lossy(&build.stderr)
        );
        let bin = PathBuf::from(String::from_utf8_lossy(&build.stdout).trim());
        let audited = PRIVATE_AUDITED.load(Ordering::SeqCst);
        let private = audited || metrics_server || PRIVATE.load(Ordering::SeqCst);
        if let (false, Ok(path)) = (private, std::env::var("MOM_TEST_KUBECONFIG")) {
            return ControlPlane {
                kubeconfig: PathBuf::from(path),
                bin,
            };
        }
        let state = std::env::temp_dir().join(format!("mom-test-cluster-{}", std::process::id()));
        let out = Command::new(root.join("tests/cluster/up.sh"))
            .arg(&state)
            .arg("--watch-pid")
            .arg(std::process::id().to_string())
            .args(audited.then_some("--audit"))
            .args((std::env::var("MOM_KEEP_CLUSTER_STATE").as_deref() != Ok("1")).then_some("--remove-state"))
            .envs(metrics_env)
            .output()
            .expect("running tests/cluster/up.sh");
        assert!(
            out.status.success(),
            "the local control plane did not come up:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ControlPlane {
            kubeconfig: state.join("kubeconfig"),
            bin,
        }
    })
}

/// A client for the test control plane.
pub async fn client() -> kube::Client {
    let cp = control_plane();
    client_for(&cp.kubeconfig).await
}

pub async fn client_for(kubeconfig: &Path) -> kube::Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("reading the test kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    kube::Client::try_from(config).expect("building a client")
}

/// Runs the control plane's kubectl; returns (success, stdout, stderr).
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let cp = control_plane();
    let mut cmd = Command::new(cp.bin.join("kubectl"));
    cmd.arg("--kubeconfig").arg(&cp.kubeconfig).args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawning kubectl");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("writing kubectl stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("waiting for kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A namespace of its own for one test; deleted (without waiting) when dropped.
static EARLIER_NAMESPACES_GONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

pub struct TestNamespace {
    pub name: String,
    client: kube::Client,
    /// Left in place when dropped (see [`TestNamespace::keep`]).
    kept: bool,
}

impl TestNamespace {
    pub async fn new(prefix: &str) -> Self {
        Self::create(prefix, None).await
    }

    /// A namespace of `tenant` (its `mom.hypersync.io/tenant` label, as a cluster admin sets it).
    pub async fn for_tenant(prefix: &str, tenant: &str) -> Self {
        Self::create(prefix, Some(tenant)).await
    }

    async fn create(prefix: &str, tenant: Option<&str>) -> Self {
        let client = client().await;
        let api: Api<Namespace> = Api::all(client.clone());
        // Once per test binary: the test namespaces an earlier binary on a shared control plane
        // left behind (deleted without waiting) must be gone, with their pods, before this
        // binary's tests share the nodes.
        EARLIER_NAMESPACES_GONE
            .get_or_init(|| async {
                let test_namespaces = kube::api::ListParams::default().labels("mom.hypersync.io/test=true");
                eventually(
                    "the test namespaces of earlier test binaries to be deleted",
                    Duration::from_secs(180),
                    || {
                        let (api, test_namespaces) = (api.clone(), test_namespaces.clone());
                        async move {
                            let left: Vec<String> = api
                                .list(&test_namespaces)
                                .await
                                .ok()?
                                .items
                                .into_iter()
                                .filter(|n| n.metadata.deletion_timestamp.is_some())
                                .filter_map(|n| n.metadata.name)
                                .collect();
                            left.is_empty().then_some(())
                        }
                    },
                )
                .await
            })
            .await;
        let mut labels = serde_json::json!({"mom.hypersync.io/test": "true"});
        if let Some(t) = tenant {
            labels["mom.hypersync.io/tenant"] = t.into();
        }
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"generateName": format!("{prefix}-"), "labels": labels}
        }))
        .expect("namespace");
        let created = api
            .create(&PostParams::default(), &ns)
            .await
            .expect("creating a test namespace");
        let name = created.metadata.name.expect("generated name");
        Self {
            name,
            client,
            kept: false,
        }
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Leaves the namespace in place when dropped. Receipts live in their subject's namespace,
    /// so deleting it deletes them and `mom verify --cluster` rightly reports the gap: a test
    /// that verifies the chain after an earlier test on the same private control plane keeps
    /// the earlier test's namespace (its objects deleted, its receipts kept).
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        // Best effort, without blocking the (possibly finished) runtime.
        let _ = kubectl(&["delete", "namespace", &self.name, "--wait=false"], None);
    }
}

/// Makes sure kwok nodes of a uniform layout exist (server-side apply: idempotent).
pub fn ensure_kwok_nodes(regions: u32, zones_per_region: u32, nodes_per_rack: u32) {
    let layout = mom::cluster_layout::UniformLayout {
        regions,
        zones_per_region,
        nodes_per_rack,
        ..Default::default()
    };
    let nodes = layout.nodes().expect("layout");
    let items: Vec<serde_json::Value> = nodes.iter().map(|n| n.kwok_manifest()).collect();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let (ok, _, err) = kubectl(
        &["apply", "--server-side", "--field-manager", "mom-tests", "-f", "-"],
        Some(&list),
    );
    assert!(ok, "creating kwok nodes failed: {err}");
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    poll_until(what, timeout, check, || None).await
}

/// As [`eventually`], and on timeout the panic also says what `explain` returns then (e.g. the
/// last state the check saw), so a CI failure names what was missing.
pub async fn eventually_explained<T, F, Fut>(what: &str, timeout: Duration, check: F, explain: impl Fn() -> String) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    poll_until(what, timeout, check, || Some(explain())).await
}

async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F, explain: impl Fn() -> Option<String>) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            match explain() {
                Some(seen) => panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}"),
                None => panic!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn background_delete() -> DeleteParams {
    DeleteParams::background()
}

/// A running MOM (operator + mom-scheduler) for this test binary.
pub struct Mom {
    pub operator_pid: u32,
    pub metrics_url: String,
    pub extender_url: String,
    /// The extender's TLS material (`extender-certs.sh` layout), unless started with
    /// `--plain-http`.
    pub tls_dir: Option<PathBuf>,
}

impl Mom {
    /// Waits (up to 60 s) until this operator holds the Lease (`mom_leader 1`): a Lease left by
    /// the previous binary's operator, killed without releasing it, expires first. Until then
    /// the extender refuses to bind with "not the leader", whatever else is wrong.
    pub async fn wait_leading(&self) {
        eventually("MOM's operator to lead", Duration::from_secs(60), || async {
            scrape_metrics(&self.metrics_url)
                .lines()
                .any(|l| l.starts_with("mom_leader ") && l.ends_with(" 1"))
                .then_some(())
        })
        .await;
    }

    /// `host:port` of the extender.
    pub fn extender_addr(&self) -> String {
        let url = &self.extender_url;
        url.split_once("://").map_or(url.as_str(), |(_, rest)| rest).to_string()
    }

    /// curl arguments that trust the extender's certificate and present the scheduler's client
    /// certificate (empty for a plain-HTTP extender).
    pub fn curl_tls_args(&self) -> Vec<String> {
        let Some(dir) = &self.tls_dir else { return Vec::new() };
        let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
        let mut args = vec!["--cacert".to_string(), path("ca.crt")];
        if dir.join("client.crt").exists() {
            args.extend([
                "--cert".to_string(),
                path("client.crt"),
                "--key".to_string(),
                path("client.key"),
            ]);
        }
        args
    }
}

static MOM: OnceLock<Mom> = OnceLock::new();

/// Installs the CRDs (idempotent) and waits until they are served.
pub fn install_crds() {
    let crds = project_root().join("crds");
    let (ok, _, err) = kubectl(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            crds.to_str().expect("path"),
        ],
        None,
    );
    assert!(ok, "installing the CRDs failed: {err}");
    let (ok, _, err) = kubectl(
        &[
            "wait",
            "--for",
            "condition=Established",
            "--timeout",
            "60s",
            "-f",
            crds.to_str().expect("path"),
        ],
        None,
    );
    assert!(ok, "CRDs not established: {err}");
}

/// Starts MOM once per test binary (after the CRDs and a 2-region × 3-zone kwok cluster exist);
/// it stops when the test binary exits.
pub fn mom() -> &'static Mom {
    mom_with_flags(&[])
}

/// [`mom`] with extra `mom operator` flags; the first call in a test binary decides them.
pub fn mom_with_flags(flags: &[String]) -> &'static Mom {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    mom_with(&flags)
}

/// Like [`mom`], passing extra `mom operator` flags (the first call in a test binary decides).
pub fn mom_with(operator_flags: &[&str]) -> &'static Mom {
    MOM.get_or_init(|| {
        let args: Vec<&str> = std::iter::once("--").chain(operator_flags.iter().copied()).collect();
        start_mom(&args, &[])
    })
}

/// Starts one more MOM (operator + a kube-scheduler wired to its extender) with extra
/// `start-mom.sh` arguments (e.g. `--tls-dir DIR`) and environment (e.g. `MOM_SCHEDULER_NAME`).
/// Both processes stop when this test binary exits.
pub fn start_mom(args: &[&str], env: &[(&str, &str)]) -> Mom {
    let cp = control_plane();
    install_crds();
    ensure_kwok_nodes(2, 3, 2);
    let state = cp.kubeconfig.parent().expect("state dir").to_path_buf();
    let out = Command::new(project_root().join("tests/cluster/start-mom.sh"))
        .arg(&state)
        .arg(env!("CARGO_BIN_EXE_mom"))
        .arg("--watch-pid")
        .arg(std::process::id().to_string())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("running start-mom.sh");
    assert!(
        out.status.success(),
        "MOM did not start:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("start-mom.sh printed no {key}: {stdout}"))
            .to_string()
    };
    Mom {
        operator_pid: field("OPERATOR_PID").parse().expect("pid"),
        metrics_url: field("METRICS_URL"),
        extender_url: field("EXTENDER_URL"),
        tls_dir: Some(field("EXTENDER_TLS_DIR"))
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
    }
}

/// Applies YAML/JSON with kubectl (server-side), panicking with kubectl's message on failure.
pub fn apply(manifest: &str) {
    let (ok, _, err) = kubectl(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(manifest),
    );
    assert!(ok, "kubectl apply failed: {err}\n{manifest}");
}

/// Applies the MomConfig `default` the integration tests assume (greedy forwarding, region →
/// zone → host) with the given receipt level; other test binaries may have applied the
/// examples' config. When this binary's operator ([`mom`]) runs, waits until it has the
/// MomConfig's generation in effect ([`wait_config_in_effect`]); an operator started later
/// reads it at start-up, and one started otherwise is waited for by its test.
pub fn apply_test_momconfig(verification_level: &str) {
    apply(&format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"MomConfig","metadata":{{"name":"default"}},
            "spec":{{"objectives":{{"performance":0.55,"cost":0.15,"reliability":0.2,"sustainability":0.1}},
                    "geometry":{{"curvature":1.0,"dimension":2,"routingAlgorithm":"greedy_forwarding",
                                "topologyKeys":["topology.kubernetes.io/region","topology.kubernetes.io/zone","kubernetes.io/hostname"]}},
                    "verification":{{"level":"{verification_level}"}}}}}}"#
    ));
    if let Some(mom) = MOM.get() {
        wait_config_in_effect(&mom.metrics_url);
    }
}

/// Waits (up to 60 s) until the operator serving metrics at `metrics_url` has the current
/// generation of the MomConfig `default` in effect (its `mom_config_generation` gauge).
pub fn wait_config_in_effect(metrics_url: &str) {
    let (ok, out, err) = kubectl(
        &["get", "momconfig", "default", "-o", "jsonpath={.metadata.generation}"],
        None,
    );
    assert!(ok, "reading the MomConfig generation: {err}");
    let want: i64 = out.trim().parse().expect("a generation");
    let in_effect = || {
        http_get(&format!("{metrics_url}/metrics"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("mom_config_generation "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let have = in_effect();
        if have.is_some_and(|g| g >= want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the operator at {metrics_url} did not put MomConfig generation {want} in effect (has {have:?})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A process started by this test, its stdout and stderr in the file `log`; killed (SIGKILL)
/// and reaped when dropped.
pub struct Process {
    child: std::process::Child,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(cmd: Command, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).unwrap();
        Self::spawn_into(cmd, file, log)
    }

    /// [`Process::spawn`] writing to `file`, an already opened `log` (created or appended to).
    fn spawn_into(mut cmd: Command, file: std::fs::File, log: PathBuf) -> Self {
        let child = cmd
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        Self { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("polling a child process")
    }

    /// Sends SIGKILL (a crash) and reaps the process.
    pub fn kill(&mut self) {
        self.child.kill().expect("killing a child process");
        self.child.wait().expect("reaping a child process");
    }

    /// Sends SIGTERM (a graceful stop) and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().ok()?;
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().ok()? {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A kubeconfig that authenticates as ServiceAccount `sa` of `namespace` (a fresh token), so a
/// process using it has exactly the chart's RBAC.
pub fn service_account_kubeconfig(dir: &std::path::Path, namespace: &str, sa: &str) -> PathBuf {
    let cp = control_plane();
    let (ok, token, err) = kubectl(&["create", "token", sa, "-n", namespace, "--duration", "1h"], None);
    assert!(ok, "no token for {sa}: {err}");
    let admin = std::fs::read_to_string(&cp.kubeconfig).unwrap();
    let server = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .expect("server in the test kubeconfig")
        .trim()
        .to_string();
    let path = dir.join(format!("{sa}.kubeconfig"));
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": true}}],
        "users": [{"name": sa, "user": {"token": token.trim()}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": sa}}],
        "current-context": "c",
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// A free TCP port on loopback.
///
/// The port is free when asked, not reserved. It is picked at random below the kernel's
/// ephemeral range, which outgoing connections use, and ports this process already handed out
/// are skipped (a metrics and an extender port of one operator were once the same, and it
/// exited with "Address already in use").
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    // Below the kernel's ephemeral range (as tests/cluster/free-port.py): a port bind(0) hands
    // out may be taken by any outgoing connection before its server binds it.
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (start, end) = if low > 11000 {
        (10000u16, low - 1)
    } else {
        (61000, 65535)
    };
    let mut x = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    loop {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let port = start + ((x >> 33) % u64::from(end - start + 1)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        if HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner()).insert(port) {
            return port;
        }
    }
}

/// The text of a `/metrics` endpoint (`base` is the server's URL).
pub fn scrape_metrics(base: &str) -> String {
    let out = Command::new("curl")
        .args(["-sf", &format!("{base}/metrics")])
        .output()
        .expect("running curl");
    assert!(out.status.success(), "GET {base}/metrics failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `cmd` and a watcher that kills it when this test binary exits (statics never drop),
/// then removes `cleanup` if given.
pub fn spawn_guarded(cmd: &mut Command, log: &Path, cleanup: Option<&Path>) -> Child {
    let log = std::fs::File::create(log).unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    // A detached watcher (the shell that starts it exits at once and is waited for).
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "(while kill -0 {} 2>/dev/null; do sleep 1; done; kill {} 2>/dev/null; {}) >/dev/null 2>&1 &",
            std::process::id(),
            child.id(),
            cleanup.map_or(String::new(), |d| format!("sleep 2; rm -rf '{}'", d.display()))
        ))
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    child
}

/// `curl -sf URL`: Some(body) on HTTP 2xx.
pub fn http_get(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn wait_http(url: &str, what: &str, log: &Path) {
    for _ in 0..300 {
        if http_get(url).is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "{what} did not answer at {url}; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// A real Prometheus (Debian's package via `tests/cluster/prometheus.sh`) on a free loopback
/// port, scraping each `(job, host:port)` every second, with its data and log in `dir` (removed
/// when this test binary exits). Returns its URL and process.
pub fn start_prometheus(dir: &Path, jobs: &[(String, String)]) -> (String, std::process::Child) {
    let port = free_port();
    let mut config = String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n");
    for (job, target) in jobs {
        config.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
        ));
    }
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let out = Command::new(project_root().join("tests/cluster/prometheus.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "prometheus.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let binary = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let log = dir.join("prometheus.log");
    let child = spawn_guarded(
        Command::new(&binary)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        &log,
        Some(dir),
    );
    let url = format!("http://127.0.0.1:{port}");
    wait_http(&format!("{url}/-/ready"), "Prometheus", &log);
    (url, child)
}

/// The chart's directory.
pub fn chart_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/charts/mom").to_string()
}

/// The chart's operator ServiceAccount and RBAC plus one admission-policy template (e.g.
/// `templates/node-policy.yaml`) rendered for release `release` in `namespace`, and nothing
/// else: no Deployment, no MomConfig, so the shared cluster is untouched.
pub fn render_operator_rbac_with(release: &str, namespace: &str, policy_template: &str) -> String {
    let chart = chart_dir();
    let (ok, out, err) = helm(&[
        "template",
        release,
        &chart,
        "--namespace",
        namespace,
        "--show-only",
        "templates/serviceaccount.yaml",
        "--show-only",
        "templates/rbac-operator.yaml",
        "--show-only",
        policy_template,
    ]);
    assert!(ok, "helm template failed: {err}");
    out
}

/// Runs the pinned helm against the test control plane; returns (success, stdout, stderr).
pub fn helm(args: &[&str]) -> (bool, String, String) {
    let cp = control_plane();
    let out = Command::new(cp.bin.join("helm"))
        .arg("--kubeconfig")
        .arg(&cp.kubeconfig)
        .args(args)
        .output()
        .expect("running helm");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A free loopback address (`127.0.0.1:PORT`).
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Runs `mom verify ARGS --format json` against the test control plane; `None` when it printed
/// no JSON (e.g. a tenant bundle not published yet), else (success, report).
pub fn try_mom_verify(args: &[&str]) -> Option<(bool, serde_json::Value)> {
    let out = Command::new(env!("CARGO_BIN_EXE_mom"))
        .arg("verify")
        .args(args)
        .args(["--format", "json"])
        .env("KUBECONFIG", &control_plane().kubeconfig)
        .output()
        .expect("running mom verify");
    let report = serde_json::from_slice(&out.stdout).ok()?;
    Some((out.status.success(), report))
}

/// The twin snapshot `mom whatif snapshot --cluster --since 15m --namespace NS` writes of the
/// shared control plane, as JSON.
pub fn twin_snapshot(namespace: &str) -> serde_json::Value {
    let file = std::env::temp_dir().join(format!("mom-twin-{namespace}-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_mom"))
        .args([
            "whatif",
            "snapshot",
            "--cluster",
            "--since",
            "15m",
            "--namespace",
            namespace,
            "--out",
        ])
        .arg(&file)
        .env("KUBECONFIG", &control_plane().kubeconfig)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let twin = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    std::fs::remove_file(&file).ok();
    twin
}

/// [`try_mom_verify`] that must print a report.
pub fn mom_verify(args: &[&str]) -> (bool, serde_json::Value) {
    try_mom_verify(args).unwrap_or_else(|| panic!("mom verify {args:?} printed no JSON report"))
}

/// The receipt signing keys the operator published (`mom-system/mom-receipt-public-keys`).
pub async fn published_keys(client: &kube::Client) -> Vec<String> {
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), "mom-system")
        .get("mom-receipt-public-keys")
        .await
        .expect("reading mom-system/mom-receipt-public-keys")
        .data
        .unwrap_or_default()
        .into_values()
        .collect()
}

/// Pods of `agent` in `namespace` that are not being deleted (0 when the list fails).
pub async fn live_pods_of(client: &kube::Client, namespace: &str, agent: &str) -> usize {
    Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), namespace)
        .list(&kube::api::ListParams::default().labels(&format!("mom.hypersync.io/agent={agent}")))
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .count()
        })
        .unwrap_or(0)
}

/// `mom verify --cluster` trusting every key the operator published: (passed, JSON report).
pub async fn verify_cluster_with_published_keys(client: &kube::Client) -> (bool, serde_json::Value) {
    let keys = published_keys(client).await;
    let mut args = vec!["--cluster"];
    for key in &keys {
        args.extend(["--public-key", key.as_str()]);
    }
    mom_verify(&args)
}

/// How an [`OperatorBuilder`] opens the operator's log file.
enum LogMode {
    Create,
    Append,
}

/// Builds one `mom operator` command line for an integration test: the binary, its
/// `KUBECONFIG`, free loopback addresses for `--metrics-addr` and `--extender-addr` (unless
/// given), stdout and stderr into a log file, and a [`Process`] guard that kills it on drop.
///
/// Every other flag and variable is the test's own, so each test passes exactly what it means:
/// `OperatorBuilder::new().namespace("mom-system").identity("a").text_logs().spawn()` runs
/// `mom operator --namespace mom-system --identity a --log-format text --metrics-addr
/// 127.0.0.1:P1 --extender-addr 127.0.0.1:P2` with `KUBECONFIG` = the control plane's.
pub struct OperatorBuilder {
    /// Flags after `operator`, in the order given (before the two addresses).
    flags: Vec<String>,
    env: Vec<(String, String)>,
    env_removed: Vec<String>,
    /// `KUBECONFIG`; `None`: the admin kubeconfig of this test binary's control plane.
    kubeconfig: Option<PathBuf>,
    metrics_addr: Option<String>,
    extender_addr: Option<String>,
    log: Option<(PathBuf, LogMode)>,
    identity: Option<String>,
}

static OPERATOR_LOGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Default for OperatorBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl OperatorBuilder {
    /// `mom operator` with no flag of its own yet, against this test binary's control plane.
    pub fn new() -> Self {
        Self {
            flags: Vec::new(),
            env: Vec::new(),
            env_removed: Vec::new(),
            kubeconfig: None,
            metrics_addr: None,
            extender_addr: None,
            log: None,
            identity: None,
        }
    }

    /// `--namespace NAMESPACE` (the operator's own: Lease, published keys, receipts' home).
    pub fn namespace(self, namespace: &str) -> Self {
        self.flag("--namespace", namespace)
    }

    /// `--identity IDENTITY` (its Lease holder name); also names the default log file.
    pub fn identity(mut self, identity: &str) -> Self {
        self.identity = Some(identity.to_string());
        self.flag("--identity", identity)
    }

    /// `--log-format text`.
    pub fn text_logs(self) -> Self {
        self.flag("--log-format", "text")
    }

    /// `--checkpoint-every-receipts RECEIPTS --checkpoint-interval-seconds SECONDS`.
    pub fn checkpoints(self, every_receipts: &str, interval_seconds: &str) -> Self {
        self.flag("--checkpoint-every-receipts", every_receipts)
            .flag("--checkpoint-interval-seconds", interval_seconds)
    }

    /// Any other flag with its value, e.g. `.flag("--lease-duration-seconds", "2")`.
    pub fn flag(mut self, name: &str, value: &str) -> Self {
        self.flags.push(name.to_string());
        self.flags.push(value.to_string());
        self
    }

    /// `--metrics-addr ADDR` instead of a free loopback port (e.g. `127.0.0.1:0`, or the
    /// address of an operator this one replaces).
    pub fn metrics_addr(mut self, addr: &str) -> Self {
        self.metrics_addr = Some(addr.to_string());
        self
    }

    /// `--extender-addr ADDR` instead of a free loopback port.
    pub fn extender_addr(mut self, addr: &str) -> Self {
        self.extender_addr = Some(addr.to_string());
        self
    }

    /// The extender's TLS flags for the material in `dir` (`extender-certs.sh` layout): HTTPS
    /// with `tls.crt`/`tls.key`, and mutual TLS with `client-ca.crt` when present.
    pub fn extender_tls(self, dir: &Path) -> Self {
        let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
        let this = self
            .flag("--extender-tls-cert", &path("tls.crt"))
            .flag("--extender-tls-key", &path("tls.key"));
        if dir.join("client-ca.crt").exists() {
            this.flag("--extender-client-ca", &path("client-ca.crt"))
        } else {
            this
        }
    }

    /// `KUBECONFIG=PATH` instead of the control plane's admin kubeconfig (e.g. a
    /// ServiceAccount's from [`service_account_kubeconfig`]).
    pub fn kubeconfig(mut self, path: PathBuf) -> Self {
        self.kubeconfig = Some(path);
        self
    }

    /// `POD_NAME` and `POD_NAMESPACE`: the pod the operator believes it runs in (it labels it
    /// `mom.hypersync.io/leader=true` while it leads).
    pub fn in_pod(self, name: &str, namespace: &str) -> Self {
        self.env("POD_NAME", name).env("POD_NAMESPACE", namespace)
    }

    /// Removes `POD_NAME` and `POD_NAMESPACE` from the inherited environment: a process that
    /// runs in no pod.
    pub fn outside_any_pod(mut self) -> Self {
        self.env_removed.push("POD_NAME".into());
        self.env_removed.push("POD_NAMESPACE".into());
        self
    }

    /// One more environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The log file (created afresh). Without it: `operator-IDENTITY-PID-N.log` in the
    /// control plane's `logs/` folder (PID: this test binary's; N counts its operators).
    pub fn log(mut self, path: PathBuf) -> Self {
        self.log = Some((path, LogMode::Create));
        self
    }

    /// Like [`Self::log`], but appends, so the runs of a restarted operator share one file.
    pub fn appending_log(mut self, path: PathBuf) -> Self {
        self.log = Some((path, LogMode::Append));
        self
    }

    /// The command line and the addresses it serves on (metrics, extender).
    fn command(&self) -> (Command, String, String) {
        let metrics_addr = self.metrics_addr.clone().unwrap_or_else(free_addr);
        let extender_addr = self.extender_addr.clone().unwrap_or_else(free_addr);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mom"));
        cmd.arg("operator")
            .args(&self.flags)
            .args(["--metrics-addr", &metrics_addr])
            .args(["--extender-addr", &extender_addr]);
        match &self.kubeconfig {
            Some(path) => cmd.env("KUBECONFIG", path),
            None => cmd.env("KUBECONFIG", &control_plane().kubeconfig),
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        for key in &self.env_removed {
            cmd.env_remove(key);
        }
        (cmd, metrics_addr, extender_addr)
    }

    fn default_log(&self) -> PathBuf {
        let dir = control_plane().kubeconfig.parent().expect("state dir").join("logs");
        std::fs::create_dir_all(&dir).unwrap();
        let n = OPERATOR_LOGS.fetch_add(1, Ordering::SeqCst);
        let name = self.identity.as_deref().unwrap_or("test");
        dir.join(format!("operator-{name}-{}-{n}.log", std::process::id()))
    }

    /// Starts the operator; it is killed when the returned process is dropped.
    pub fn spawn(self) -> OperatorProcess {
        let (cmd, metrics_addr, extender_addr) = self.command();
        let (path, mode) = match self.log {
            Some(log) => log,
            None => (self.default_log(), LogMode::Create),
        };
        let file = match mode {
            LogMode::Create => std::fs::File::create(&path),
            LogMode::Append => std::fs::OpenOptions::new().create(true).append(true).open(&path),
        }
        .unwrap_or_else(|e| panic!("opening the operator log {}: {e}", path.display()));
        OperatorProcess {
            process: Process::spawn_into(cmd, file, path),
            metrics_addr,
            extender_addr,
        }
    }

    /// Runs the operator to its exit (for a start-up that must fail), capturing its output.
    pub fn output(self) -> std::process::Output {
        let (mut cmd, _, _) = self.command();
        cmd.output().expect("running mom operator")
    }
}

/// A `mom operator` started by [`OperatorBuilder::spawn`]; killed when dropped.
pub struct OperatorProcess {
    pub process: Process,
    /// `--metrics-addr` (`host:port`).
    pub metrics_addr: String,
    /// `--extender-addr` (`host:port`).
    pub extender_addr: String,
}

impl OperatorProcess {
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Its stdout and stderr so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn log_path(&self) -> &Path {
        &self.process.log
    }

    /// The exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.process.try_wait()
    }

    /// SIGKILL (a crash), then reaps it.
    pub fn kill(&mut self) {
        self.process.kill()
    }

    /// SIGTERM (a graceful stop); waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.process.terminate(timeout)
    }

    /// Waits (up to 60 s) until the extender answers `GET /healthz` over plain HTTP, panicking
    /// with the log otherwise.
    pub fn wait_until_the_extender_serves(&self, what: &str) {
        wait_http(
            &format!("http://{}/healthz", self.extender_addr),
            what,
            &self.process.log,
        );
    }
}

/// A TCP proxy on loopback to `upstream` whose forwarding can be stalled: while stalled, bytes
/// are read but held back (in both directions), so requests through it hang as on a dead link.
pub struct StallableProxy {
    pub addr: String,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Latency added to every byte from the apiserver to the client, in milliseconds.
    response_delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl StallableProxy {
    pub fn start(upstream: &str) -> Self {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let response_delay_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let flag = stalled.clone();
        let delay = response_delay_ms.clone();
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                for (direction, (mut from, mut to)) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ]
                .into_iter()
                .enumerate()
                {
                    let flag = flag.clone();
                    let delay = delay.clone();
                    // Bytes travel through a queue to a writer that releases each chunk at its
                    // arrival time plus the response delay (a constant latency, not a pile-up).
                    let (tx, rx) = std::sync::mpsc::channel::<(std::time::Instant, Vec<u8>)>();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if tx.send((std::time::Instant::now(), buf[..n].to_vec())).is_err() {
                                break;
                            }
                        }
                    });
                    std::thread::spawn(move || {
                        for (arrived, bytes) in rx {
                            while flag.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            if direction == 1 {
                                let due = arrived + Duration::from_millis(delay.load(Ordering::SeqCst));
                                std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
                            }
                            if to.write_all(&bytes).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Self {
            addr,
            stalled,
            response_delay_ms,
        }
    }

    /// Delays every byte from the apiserver by `delay` from now on (zero: none): requests still
    /// arrive and are carried out at once, their answers come late (an overloaded apiserver or
    /// a congested link, as a client sees it).
    pub fn delay_responses(&self, delay: Duration) {
        self.response_delay_ms
            .store(delay.as_millis() as u64, std::sync::atomic::Ordering::SeqCst);
    }

    /// Holds back every byte from now on (connections stay open).
    pub fn stall(&self) {
        self.stalled.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// A copy of the control plane's admin kubeconfig whose server goes through this proxy.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let admin = std::fs::read_to_string(&control_plane().kubeconfig).unwrap();
        let server = admin
            .lines()
            .find_map(|l| l.trim().strip_prefix("server:"))
            .expect("server in the test kubeconfig")
            .trim()
            .to_string();
        let host_port = server.trim_start_matches("https://").trim_start_matches("http://");
        let path = dir.join("proxied.kubeconfig");
        std::fs::write(&path, admin.replace(host_port, &self.addr)).unwrap();
        path
    }

    /// The `host:port` of the control plane's apiserver (the proxy's upstream).
    pub fn apiserver() -> String {
        let admin = std::fs::read_to_string(&control_plane().kubeconfig).unwrap();
        admin
            .lines()
            .find_map(|l| l.trim().strip_prefix("server:"))
            .expect("server in the test kubeconfig")
            .trim()
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .to_string()
    }
}
