//! The Helm chart `charts/mom` against the real control plane: it lints clean, its rendering
//! passes a server-side dry run, `manifests/install.yaml` is its current rendering, and a real
//! `helm install` creates every object with least-privilege RBAC and a ValidatingAdmissionPolicy
//! that rejects deletes of receipts by anyone but the operator. The release is uninstalled (and
//! any MomConfig it displaced restored) when the test ends, however it ends, so the cluster the
//! other test binaries share is left as it was.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Serialises the tests that touch cluster-wide objects of the chart (the MomConfig `default`
/// is moved aside and restored by the install test; the dry run reads it).
static CLUSTER_WIDE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn cluster_wide() -> std::sync::MutexGuard<'static, ()> {
    CLUSTER_WIDE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> String {
    root().join("charts/mom").to_str().unwrap().to_string()
}

/// Polls `check` every 250 ms until it holds, or panics after `timeout` naming `what`.
fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A receipt (the signed genesis example) in `namespace` under `name`.
fn receipt(namespace: &str, name: &str) -> String {
    std::fs::read_to_string(root().join("manifests/examples/receipt/receipt.yaml"))
        .unwrap()
        .replace("namespace: shop", &format!("namespace: {namespace}"))
        .replace("name: example-receipt", &format!("name: {name}"))
}

fn lease_holder(namespace: &str, lease: &str) -> String {
    common::kubectl(
        &[
            "get",
            "lease",
            lease,
            "-n",
            namespace,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
        None,
    )
    .1
}

#[test]
fn helm_lint_of_the_chart_is_clean() {
    let (ok, out, err) = common::helm(&["lint", "--strict", &chart()]);
    assert!(ok, "helm lint failed:\n{out}\n{err}");
    assert!(out.contains("0 chart(s) failed"), "{out}");
    assert!(
        !out.contains("[WARNING]") && !out.contains("[ERROR]"),
        "helm lint is not clean:\n{out}"
    );
}

#[test]
fn bad_values_are_rejected_by_the_chart_schema_naming_the_value() {
    for (set, field, why) in [
        ("operator.extenderPort=abc", "/operator/extenderPort", "want integer"),
        (
            "grafanaDashboard.label=not a label",
            "/grafanaDashboard/label",
            "does not match pattern",
        ),
        ("operator.metricsPort=70000", "/operator/metricsPort", "maximum"),
        ("operator.logFormat=xml", "/operator/logFormat", "json"),
        ("operator.replicas=0", "/operator/replicas", "minimum"),
        (
            "receiptProtection.enabled=maybe",
            "/receiptProtection/enabled",
            "want boolean",
        ),
        ("operator.typo=1", "/operator", "typo"),
    ] {
        let (ok, _, err) = common::helm(&["template", "x", &chart(), "--set", set]);
        assert!(!ok, "--set {set} rendered");
        assert!(
            err.contains(field) && err.contains(why),
            "--set {set}: expected {field} and {why:?} in: {err}"
        );
    }
}

/// The documents of `helm template mom charts/mom` with `--set` values `sets`, each with the
/// template it came from (its `# Source:` line).
fn rendered_documents(sets: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["template", "mom", "--namespace", "mom-system"];
    let chart = chart();
    args.push(&chart);
    for set in sets {
        args.extend(["--set", set]);
    }
    let (ok, out, err) = common::helm(&args);
    assert!(ok, "helm template {sets:?} failed:\n{err}");
    out.split("\n---\n")
        .filter_map(|doc| {
            let source = doc.lines().find_map(|l| l.strip_prefix("# Source: "))?;
            Some((source.to_string(), doc.to_string()))
        })
        .collect()
}

/// The rendered dashboard ConfigMap of `sets` as JSON (kubectl parses the YAML), or `None` when
/// the chart rendered none.
fn dashboard_configmap(sets: &[&str]) -> Option<serde_json::Value> {
    let docs = rendered_documents(sets);
    assert!(
        docs.iter().any(|(source, _)| source == "mom/templates/operator.yaml"),
        "the chart rendered no operator Deployment with {sets:?}: the rendering itself is broken"
    );
    let (_, doc) = docs
        .into_iter()
        .find(|(source, _)| source == "mom/templates/grafana-dashboard.yaml")?;
    let (ok, out, err) = common::kubectl(&["create", "--dry-run=client", "-o", "json", "-f", "-"], Some(&doc));
    assert!(ok, "kubectl could not read the dashboard ConfigMap:\n{err}\n{doc}");
    Some(serde_json::from_str(&out).expect("kubectl printed JSON"))
}

#[test]
fn the_grafana_dashboard_configmap_renders_with_the_sidecar_label_only_when_enabled() {
    assert!(
        dashboard_configmap(&[]).is_none(),
        "the dashboard ConfigMap rendered with the default values (grafanaDashboard.enabled=false)"
    );
    assert!(dashboard_configmap(&["grafanaDashboard.enabled=false"]).is_none());

    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("charts/mom/dashboards/mom.json")).unwrap())
            .expect("charts/mom/dashboards/mom.json is JSON");
    let cm = dashboard_configmap(&["grafanaDashboard.enabled=true"]).expect("a dashboard ConfigMap when enabled");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["namespace"], "mom-system");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1", "{cm}");
    let embedded: serde_json::Value = serde_json::from_str(cm["data"]["mom.json"].as_str().expect("data mom.json"))
        .expect("the embedded dashboard is JSON");
    assert_eq!(
        embedded, file,
        "the ConfigMap does not hold charts/mom/dashboards/mom.json as it is"
    );

    // The label, its value, the namespace and annotations are the values'.
    let cm = dashboard_configmap(&[
        "grafanaDashboard.enabled=true",
        "grafanaDashboard.label=example.com/dashboard",
        "grafanaDashboard.labelValue=mom",
        "grafanaDashboard.namespace=monitoring",
        "grafanaDashboard.annotations.grafana_folder=MOM",
    ])
    .expect("a dashboard ConfigMap when enabled");
    let labels = &cm["metadata"]["labels"];
    assert_eq!(labels["example.com/dashboard"], "mom", "{cm}");
    assert!(labels.get("grafana_dashboard").is_none(), "{cm}");
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "MOM");
}

#[test]
fn install_yaml_is_the_current_rendering_of_the_chart() {
    let cp = common::control_plane();
    let out = Command::new(root().join("hack/render-install.sh"))
        .arg(cp.bin.join("helm"))
        .output()
        .expect("running hack/render-install.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let committed = std::fs::read_to_string(root().join("manifests/install.yaml")).unwrap();
    assert!(
        committed == String::from_utf8_lossy(&out.stdout),
        "manifests/install.yaml is stale: run `make manifests`"
    );
    for crd in std::fs::read_dir(root().join("crds")).unwrap() {
        let crd = crd.unwrap().path();
        let copy = root().join("charts/mom/crds").join(crd.file_name().unwrap());
        assert_eq!(
            std::fs::read_to_string(&crd).unwrap(),
            std::fs::read_to_string(&copy).unwrap_or_default(),
            "{} differs from crds/: run `make chart-crds`",
            copy.display()
        );
    }
}

#[tokio::test]
async fn the_rendered_chart_passes_a_server_side_dry_run() {
    common::install_crds();
    let ns = common::TestNamespace::new("helm-dry").await;
    let _serial = cluster_wide();
    let (ok, rendered, err) = common::helm(&["template", "dry", &chart(), "--namespace", &ns.name]);
    assert!(ok, "helm template failed: {err}");
    let (ok, out, err) = common::kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&rendered));
    assert!(ok, "the apiserver rejected the rendered chart: {err}\n{out}");
    for kind in [
        "deployment.apps/dry-mom-operator",
        "deployment.apps/dry-mom-scheduler",
        "validatingadmissionpolicy.admissionregistration.k8s.io/dry-mom-receipts-append-only",
        "validatingadmissionpolicy.admissionregistration.k8s.io/dry-mom-receipts-operator-only",
        "validatingadmissionpolicy.admissionregistration.k8s.io/dry-mom-operator-configmaps",
        "momconfig.mom.hypersync.io/default",
    ] {
        assert!(out.contains(kind), "{kind} missing in the dry run:\n{out}");
    }
}

#[tokio::test]
async fn with_extender_tls_the_chart_serves_https_and_the_scheduler_verifies_it() {
    common::install_crds();
    let ns = common::TestNamespace::new("helm-tls").await;
    let _serial = cluster_wide();
    let (ok, rendered, err) = common::helm(&[
        "template",
        "tls",
        &chart(),
        "--namespace",
        &ns.name,
        "--set",
        "extenderTLS.enabled=true",
    ]);
    assert!(ok, "helm template failed: {err}");
    // The operator serves the mounted Secret; the scheduler trusts only its ca.crt.
    assert!(
        rendered.contains("--extender-tls-cert=/etc/mom/extender-tls/tls.crt"),
        "{rendered}"
    );
    assert!(rendered.contains("--extender-tls-key=/etc/mom/extender-tls/tls.key"));
    assert!(rendered.contains("secretName: tls-mom-extender-tls"));
    assert!(rendered.contains(&format!("urlPrefix: https://tls-mom-extender.{}.svc:8443", ns.name)));
    assert!(rendered.contains("enableHTTPS: true") && rendered.contains("caFile: /etc/mom-scheduler/tls/ca.crt"));
    let (ok, out, err) = common::kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&rendered));
    assert!(ok, "the apiserver rejected the TLS rendering: {err}\n{out}");

    // With cert-manager: a Certificate for the Service's names and a self-signed Issuer.
    let (ok, rendered, err) = common::helm(&[
        "template",
        "tls",
        &chart(),
        "--namespace",
        &ns.name,
        "--set",
        "extenderTLS.enabled=true",
        "--set",
        "extenderTLS.certManager.enabled=true",
    ]);
    assert!(ok, "helm template failed: {err}");
    assert!(rendered.contains("kind: Certificate") && rendered.contains("selfSigned: {}"));
    assert!(
        rendered.contains(&format!("- tls-mom-extender.{}.svc\n", ns.name)),
        "{rendered}"
    );

    // A bad duration is refused by the values schema, naming the value.
    let (ok, _, err) = common::helm(&[
        "template",
        "tls",
        &chart(),
        "--set",
        "extenderTLS.certManager.duration=90days",
    ]);
    assert!(!ok && err.contains("duration"), "{err}");
}

/// An installed release; dropping it uninstalls it, makes sure the receipt policy is gone and
/// restores the MomConfig `default` that was there before.
struct Release {
    name: String,
    namespace: String,
    displaced_config: Option<String>,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = common::helm(&["uninstall", &self.name, "--namespace", &self.namespace, "--wait"]);
        // Belt and braces: the policy must never outlive the test (other binaries delete
        // namespaces holding receipts).
        for policy in ["receipts-append-only", "receipts-operator-only"] {
            let policy = format!("{}-mom-{policy}", self.name);
            let _ = common::kubectl(
                &[
                    "delete",
                    "validatingadmissionpolicybinding,validatingadmissionpolicy",
                    &policy,
                    "--ignore-not-found",
                ],
                None,
            );
        }
        if let Some(config) = &self.displaced_config {
            let _ = common::kubectl(&["delete", "momconfig", "default", "--ignore-not-found"], None);
            let _ = common::kubectl(&["create", "-f", "-"], Some(config));
        }
    }
}

/// Takes the MomConfig `default` out of the way (the chart creates its own), keeping it to
/// restore later.
fn displace_default_config() -> Option<String> {
    let (exists, json, _) = common::kubectl(&["get", "momconfig", "default", "-o", "json"], None);
    if !exists {
        return None;
    }
    let mut obj: serde_json::Value = serde_json::from_str(&json).unwrap();
    let meta = obj["metadata"].as_object_mut().unwrap();
    for field in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "managedFields",
        "generation",
    ] {
        meta.remove(field);
    }
    obj.as_object_mut().unwrap().remove("status");
    let (ok, _, err) = common::kubectl(&["delete", "momconfig", "default", "--wait=true"], None);
    assert!(ok, "moving the existing MomConfig default aside failed: {err}");
    Some(obj.to_string())
}

#[tokio::test]
async fn helm_install_creates_every_object_and_the_policy_guards_receipts() {
    common::install_crds();
    let ns = common::TestNamespace::new("helm").await;
    let _serial = cluster_wide();
    let release_name = ns.name.clone();
    let displaced_config = displace_default_config();
    let had_config = displaced_config.is_some();
    let release = Release {
        name: release_name.clone(),
        namespace: ns.name.clone(),
        displaced_config,
    };
    let (ok, out, err) = common::helm(&[
        "install",
        &release.name,
        &chart(),
        "--namespace",
        &ns.name,
        "--set",
        "momConfig.spec.verification.level=none",
    ]);
    assert!(ok, "helm install failed: {err}\n{out}");
    assert!(out.contains("STATUS: deployed"), "{out}");

    // Every object exists (pods need not run: there are no images on this control plane).
    let full = format!("{release_name}-mom");
    let operator = format!("{full}-operator");
    let scheduler = format!("{full}-scheduler");
    let policy = format!("{full}-receipts-append-only");
    let create_policy = format!("{full}-receipts-operator-only");
    let configmap_policy = format!("{full}-operator-configmaps");
    let namespaced = [
        ("deployment", operator.clone()),
        ("deployment", scheduler.clone()),
        ("service", format!("{full}-metrics")),
        ("service", format!("{full}-extender")),
        ("serviceaccount", operator.clone()),
        ("serviceaccount", scheduler.clone()),
        ("role", operator.clone()),
        ("rolebinding", operator.clone()),
        ("role", scheduler.clone()),
        ("rolebinding", scheduler.clone()),
        ("configmap", format!("{scheduler}-config")),
        ("networkpolicy", operator.clone()),
    ];
    for (kind, name) in &namespaced {
        let (ok, _, err) = common::kubectl(&["get", kind, name, "-n", &ns.name], None);
        assert!(ok, "{kind} {name} was not created: {err}");
    }
    let cluster_scoped = [
        ("clusterrole", operator.clone()),
        ("clusterrolebinding", operator.clone()),
        ("clusterrolebinding", format!("{scheduler}-kube-scheduler")),
        ("clusterrolebinding", format!("{scheduler}-volume-scheduler")),
        ("validatingadmissionpolicy", policy.clone()),
        ("validatingadmissionpolicybinding", policy.clone()),
        ("validatingadmissionpolicy", create_policy.clone()),
        ("validatingadmissionpolicybinding", create_policy.clone()),
        ("validatingadmissionpolicy", configmap_policy.clone()),
        ("validatingadmissionpolicybinding", configmap_policy.clone()),
        ("momconfig", "default".to_string()),
    ];
    for (kind, name) in &cluster_scoped {
        let (ok, _, err) = common::kubectl(&["get", kind, name], None);
        assert!(ok, "{kind} {name} was not created: {err}");
    }
    let (ok, out, _) = common::kubectl(&["get", "rolebinding", "-n", "kube-system", "-o", "name"], None);
    assert!(
        ok && out.contains(&format!("{scheduler}-")),
        "no auth-reader binding in kube-system: {out}"
    );

    // The operator Deployment: 2 replicas, `mom operator`, downward API, probes, hardening.
    let (ok, json, err) = common::kubectl(&["get", "deployment", &operator, "-n", &ns.name, "-o", "json"], None);
    assert!(ok, "{err}");
    let deployment: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], operator.as_str());
    let container = &pod["containers"][0];
    assert_eq!(container["args"][0], "operator");
    let env = container["env"].to_string();
    assert!(env.contains("POD_NAME") && env.contains("metadata.name"), "{env}");
    assert!(
        env.contains("POD_NAMESPACE") && env.contains("metadata.namespace"),
        "{env}"
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"][0], "ALL");
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");

    // The scheduler's configuration points at the extender Service of this namespace.
    let (ok, config, err) = common::kubectl(
        &[
            "get",
            "configmap",
            &format!("{scheduler}-config"),
            "-n",
            &ns.name,
            "-o",
            "jsonpath={.data.config\\.yaml}",
        ],
        None,
    );
    assert!(ok, "{err}");
    // By default over mutual TLS, with the certificates Helm issued into two Secrets: the
    // scheduler trusts the serving CA and presents its client certificate.
    assert!(
        config.contains(&format!("urlPrefix: https://{full}-extender.{}.svc:8443", ns.name)),
        "{config}"
    );
    assert!(
        config.contains("certFile: /etc/mom-scheduler/client/tls.crt"),
        "{config}"
    );
    for secret in [format!("{full}-extender-tls"), format!("{full}-extender-client-tls")] {
        let (ok, keys, err) = common::kubectl(
            &["get", "secret", &secret, "-n", &ns.name, "-o", "jsonpath={.data}"],
            None,
        );
        assert!(ok, "the chart issued no Secret {secret}: {err}");
        for key in ["tls.crt", "tls.key", "ca.crt"] {
            assert!(keys.contains(key), "{secret} has no {key}: {keys}");
        }
    }
    assert!(config.contains("leaderElect: true") && config.contains(&format!("resourceNamespace: {}", ns.name)));

    // The extender Service routes to the leader only (the pod it labels); metrics to every replica.
    let selector = |service: &str| -> serde_json::Value {
        let (ok, json, err) = common::kubectl(&["get", "service", service, "-n", &ns.name, "-o", "json"], None);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&json).unwrap()["spec"]["selector"].clone()
    };
    let extender_selector = selector(&format!("{full}-extender"));
    assert_eq!(
        extender_selector["mom.hypersync.io/leader"], "true",
        "{extender_selector}"
    );
    assert_eq!(
        extender_selector["app.kubernetes.io/component"], "operator",
        "{extender_selector}"
    );
    let metrics_selector = selector(&format!("{full}-metrics"));
    assert!(
        metrics_selector.get("mom.hypersync.io/leader").is_none(),
        "{metrics_selector}"
    );

    // Least privilege: what the operator may and may not do.
    let sa = format!("system:serviceaccount:{}:{operator}", ns.name);
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--as", &sa]);
        common::kubectl(&all, None).1.trim() == "yes"
    };
    assert!(can(&["create", "pods", "--subresource=binding", "-n", "anywhere"]));
    assert!(can(&["delete", "pods", "-n", "anywhere"]));
    assert!(can(&["create", "receipts.mom.hypersync.io", "-n", "anywhere"]));
    assert!(can(&[
        "patch",
        "geometricagents.mom.hypersync.io",
        "--subresource=status",
        "-n",
        "anywhere"
    ]));
    assert!(can(&[
        "update",
        "leases.coordination.k8s.io/mom-operator-leader",
        "-n",
        &ns.name
    ]));
    assert!(can(&["get", "secrets/mom-receipt-signing-key", "-n", &ns.name]));
    assert!(can(&["patch", "configmaps/mom-receipt-public-keys", "-n", &ns.name]));
    assert!(can(&["patch", "configmaps/mom-receipt-checkpoints", "-n", "anywhere"]));
    // The leader label on its own pod: pods of the release namespace only.
    assert!(can(&["patch", "pods", "-n", &ns.name]));
    // The anomaly loop's node label and annotation (RBAC cannot narrow patch to them).
    assert!(can(&["patch", "nodes"]));
    for denied in [
        &["delete", "receipts.mom.hypersync.io", "-n", "anywhere"][..],
        &["update", "receipts.mom.hypersync.io", "-n", "anywhere"],
        &["patch", "receipts.mom.hypersync.io", "-n", "anywhere"],
        &["create", "pods", "--subresource=eviction", "-n", "anywhere"],
        &["update", "pods", "-n", "anywhere"],
        &["patch", "pods", "-n", "anywhere"],
        &["list", "secrets", "-n", &ns.name],
        &["get", "secrets/other", "-n", &ns.name],
        &["get", "secrets/mom-receipt-signing-key", "-n", "kube-system"],
        &[
            "update",
            "leases.coordination.k8s.io/someone-elses-lease",
            "-n",
            &ns.name,
        ],
        &["update", "nodes"],
        &["delete", "nodes"],
        &["patch", "configmaps/someone-elses", "-n", "anywhere"],
        &["get", "configmaps/someone-elses", "-n", "anywhere"],
    ] {
        assert!(!can(denied), "the operator may {denied:?}, which it should not");
    }
    let scheduler_sa = format!("system:serviceaccount:{}:{scheduler}", ns.name);
    let (_, out, _) = common::kubectl(
        &[
            "auth",
            "can-i",
            "update",
            &format!("leases.coordination.k8s.io/{scheduler}"),
            "-n",
            &ns.name,
            "--as",
            &scheduler_sa,
        ],
        None,
    );
    assert_eq!(out.trim(), "yes", "mom-scheduler cannot renew its Lease");

    // The real binaries run with nothing but the chart's RBAC: `mom operator` as the operator's
    // ServiceAccount takes the Lease and writes MomConfig status; the real kube-scheduler as
    // mom-scheduler's ServiceAccount takes its Lease and serves /healthz. Neither logs a
    // forbidden request. (Verification is `none` in this release: no receipts are written into
    // the cluster the other test binaries share.)
    let dir = std::env::temp_dir().join(format!("mom-helm-{}-{}", std::process::id(), ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    let operator_process = common::OperatorBuilder::new()
        .text_logs()
        .metrics_addr("127.0.0.1:0")
        .kubeconfig(common::service_account_kubeconfig(&dir, &ns.name, &operator))
        .in_pod("helm-rbac-check", &ns.name)
        .log(dir.join("operator.log"))
        .spawn();
    wait_until("the operator to take its Lease", Duration::from_secs(60), || {
        lease_holder(&ns.name, "mom-operator-leader") == "helm-rbac-check"
    });
    wait_until(
        "the operator to report MomConfig default Ready",
        Duration::from_secs(60),
        || {
            common::kubectl(
                &[
                    "get",
                    "momconfig",
                    "default",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ],
                None,
            )
            .1
            .contains("True")
        },
    );
    let scheduler_kubeconfig = common::service_account_kubeconfig(&dir, &ns.name, &scheduler);
    let scheduler_config = dir.join("mom-scheduler.yaml");
    // The scheduler reads the Secrets the chart issued, as its pod would from its mounts.
    let mut local_config = config.clone();
    for (secret, mount) in [
        (format!("{full}-extender-tls"), "/etc/mom-scheduler/tls"),
        (format!("{full}-extender-client-tls"), "/etc/mom-scheduler/client"),
    ] {
        let local = dir.join(mount.trim_start_matches('/').replace('/', "-"));
        std::fs::create_dir_all(&local).unwrap();
        for key in ["tls.crt", "tls.key", "ca.crt"] {
            let (ok, encoded, err) = common::kubectl(
                &[
                    "get",
                    "secret",
                    &secret,
                    "-n",
                    &ns.name,
                    "-o",
                    &format!("jsonpath={{.data.{}}}", key.replace('.', "\\.")),
                ],
                None,
            );
            assert!(ok, "{err}");
            let decoded = Command::new("base64")
                .arg("-d")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    use std::io::Write as _;
                    child.stdin.take().unwrap().write_all(encoded.trim().as_bytes())?;
                    child.wait_with_output()
                })
                .unwrap();
            assert!(decoded.status.success(), "{secret} {key} is not base64");
            std::fs::write(local.join(key), decoded.stdout).unwrap();
        }
        local_config = local_config.replace(mount, local.to_str().unwrap());
    }
    std::fs::write(
        &scheduler_config,
        format!(
            "{local_config}\nclientConnection:\n  kubeconfig: {}\n",
            scheduler_kubeconfig.display()
        ),
    )
    .unwrap();
    let port = common::free_port();
    let mut cmd = Command::new(common::control_plane().bin.join("kube-scheduler"));
    cmd.arg("--config")
        .arg(&scheduler_config)
        .arg("--authentication-kubeconfig")
        .arg(&scheduler_kubeconfig)
        .arg("--authorization-kubeconfig")
        .arg(&scheduler_kubeconfig)
        .args([
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            &port.to_string(),
            "--v",
            "1",
        ]);
    let scheduler_process = common::Process::spawn(cmd, dir.join("mom-scheduler.log"));
    wait_until("mom-scheduler to take its Lease", Duration::from_secs(60), || {
        !lease_holder(&ns.name, &scheduler).is_empty()
    });
    for process in [&operator_process.process, &scheduler_process] {
        let log = process.log();
        assert!(
            // RBAC denials read `... is forbidden: User "..." cannot ...`; other 403s (e.g. a
            // namespace another test is deleting) are not about permissions.
            !log.contains("is forbidden: User"),
            "{} was refused something by RBAC:\n{log}",
            process.log.display()
        );
    }
    drop(scheduler_process);
    drop(operator_process);
    let _ = std::fs::remove_dir_all(&dir);

    // The receipt policies. Only the operator's ServiceAccount creates receipts: a cluster admin
    // (system:masters, past RBAC) who is not the operator is refused by admission...
    let create_as = |user: &str, name: &str, dry_run: bool| {
        let mut args = vec!["create", "-f", "-", "--as", user, "--as-group", "system:masters"];
        if dry_run {
            args.push("--dry-run=server");
        }
        common::kubectl(&args, Some(&receipt(&ns.name, name)))
    };
    wait_until(
        "the receipt create policy to be enforced",
        Duration::from_secs(30),
        || !create_as("someone", "probe", true).0,
    );
    let (ok, _, err) = create_as("someone", "forged", false);
    assert!(!ok, "a non-operator admin created a receipt");
    assert!(
        err.contains(&create_policy),
        "the rejection does not name the policy: {err}"
    );
    assert!(err.contains("receipts-operator-only: only"), "{err}");
    assert!(err.contains("someone may not"), "{err}");
    // ...while the operator's ServiceAccount passes it (the positive control).
    let (ok, _, err) = create_as(&sa, "guarded", false);
    assert!(
        ok,
        "the operator's ServiceAccount was stopped by the create policy: {err}"
    );

    // ...and a cluster admin other than the operator cannot delete a receipt...
    let delete_as = |user: &str, name: &str, dry_run: bool| {
        let mut args = vec![
            "delete",
            "receipt",
            name,
            "-n",
            &ns.name,
            "--as",
            user,
            "--as-group",
            "system:masters",
        ];
        if dry_run {
            args.push("--dry-run=server");
        }
        common::kubectl(&args, None)
    };
    // (the apiserver picks the new policy up within a second or so; dry runs pass admission)
    wait_until("the receipt policy to be enforced", Duration::from_secs(30), || {
        !delete_as("someone", "guarded", true).0
    });
    let (ok, _, err) = delete_as("someone", "guarded", false);
    assert!(!ok, "a non-operator admin deleted a receipt");
    assert!(err.contains(&policy), "the rejection does not name the policy: {err}");
    assert!(err.contains("receipts-append-only: Receipts are append-only"), "{err}");
    assert!(err.contains("someone may not"), "{err}");
    let (ok, _, _) = common::kubectl(&["get", "receipt", "guarded", "-n", &ns.name], None);
    assert!(ok, "the receipt is gone although the delete was rejected");

    // ...while the operator's ServiceAccount passes the policy (given delete rights by
    // impersonating it with system:masters; its RBAC alone does not grant delete).
    let (ok, _, err) = delete_as(&sa, "guarded", false);
    assert!(ok, "the operator's ServiceAccount was stopped by the policy: {err}");

    // Uninstalling removes everything, the policy first of all.
    drop(release);
    for (kind, name) in &cluster_scoped {
        if *kind == "momconfig" {
            continue;
        }
        let (exists, _, _) = common::kubectl(&["get", kind, name], None);
        assert!(!exists, "{kind} {name} survived helm uninstall");
    }
    // The chart's MomConfig is gone; one that was there before is back, without Helm's labels.
    let (exists, labels, _) = common::kubectl(
        &["get", "momconfig", "default", "-o", "jsonpath={.metadata.labels}"],
        None,
    );
    assert_eq!(exists, had_config, "MomConfig default after uninstall: {labels}");
    assert!(
        !labels.contains("app.kubernetes.io/managed-by"),
        "the chart's MomConfig survived: {labels}"
    );
    let (ok, out, _) = common::kubectl(
        &["get", "deployments,services,roles", "-n", &ns.name, "-o", "name"],
        None,
    );
    assert!(ok && out.trim().is_empty(), "objects survived helm uninstall: {out}");
    wait_until("receipt creates to be allowed again", Duration::from_secs(30), || {
        common::kubectl(&["apply", "-f", "-"], Some(&receipt(&ns.name, "free"))).0
    });
    wait_until("receipt deletes to be allowed again", Duration::from_secs(30), || {
        delete_as("someone", "free", true).0
    });
}
