//! Least privilege, proven on a real control plane: `helm install` the chart, then run the
//! operator and `mom-scheduler` out of cluster (kwok runs no containers) with nothing but the
//! chart's ServiceAccount tokens, and pass the placement scenario (place a talking pair of
//! agents under a strategy, scale one down, receipts at `full_audit`, `mom verify --cluster` clean). The
//! apiserver's audit log then shows every request the operator made: none may be forbidden,
//! and every permission the chart grants but the operator never used is listed — the test
//! fails unless each such permission is in [`UNEXERCISED`] with the reason it stays. A grant
//! limited to resourceNames counts per name (`group/resource:verb@name`): it must be used on
//! that very object. The scenario also scales an agent by a learned policy whose model the
//! operator reads from `mom-scaling-models` (first absent, then present).
//!
//! This binary always starts its own, audited control plane (never a shared one), since the
//! audit log must hold this operator's requests only.

mod common;
mod placement_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use placement_support::{agent, running_pods, strategy};

const RELEASE: &str = "mom";
const NAMESPACE: &str = "mom-system";
const OPERATOR_SA: &str = "mom-operator";
const SCHEDULER_SA: &str = "mom-scheduler";

/// Permissions the chart grants that the placement scenario does not reach, each with why it
/// stays. Keys are `group/resource[/subresource]:verb` (core group written as `core`).
const UNEXERCISED: &[(&str, &str)] = &[
    (
        "core/configmaps:patch@mom-receipt-journal",
        "the journal is written only before a batch of several receipts sealed at once is \
         created (tests/receipts_journal.rs); this scenario's receipts are written one at a time",
    ),
    (
        "core/configmaps:patch@mom-failover-history",
        "the failover history is created on its first save and patched only when a stored \
         history is saved again after further node health transitions \
         (tests/failover_predictive.rs); this scenario does not get that far",
    ),
    (
        "mom.hypersync.io/orchestrationstrategies:patch",
        "automatic rollback writes a strategy's recorded spec back only when an agent flag is \
         raised soon after a strategy change under spec.resilience.rollback.mode: auto \
         (tests/anomaly_responses.rs); this scenario configures no series",
    ),
    (
        "events.k8s.io/events:patch",
        "the recorder patches an Event only to fold a repeat of it into a series, which this \
         scenario need not produce",
    ),
    (
        "networking.k8s.io/networkpolicies:get",
        "read only for agents whose strategy sets spec.resilience.quarantine: isolate \
         (tests/anomaly_responses.rs); this scenario has none",
    ),
    (
        "networking.k8s.io/networkpolicies:create",
        "a quarantine policy is made only while an agent flag is up under quarantine: isolate \
         (tests/anomaly_responses.rs); this scenario configures no series",
    ),
    (
        "networking.k8s.io/networkpolicies:delete",
        "a quarantine policy is deleted only when its agent's flags clear \
         (tests/anomaly_responses.rs)",
    ),
    (
        "core/nodes:patch",
        "the anomaly loop labels a node only when a MomConfig spec.anomaly series flags it \
         (tests/anomaly.rs); this scenario configures no series",
    ),
];

fn kubectl_json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let (ok, out, err) = common::kubectl(&all, None);
    assert!(ok, "kubectl {args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

/// Every `group/resource[/sub]:verb` a role's rules grant.
fn granted(role: &serde_json::Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        let strings = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        // A rule limited to resourceNames grants `group/resource:verb@name` per name, so each
        // named grant must be used on that very object.
        let names = strings("resourceNames");
        for group in strings("apiGroups") {
            let group = if group.is_empty() { "core".to_string() } else { group };
            for resource in strings("resources") {
                for verb in strings("verbs") {
                    let key = format!("{group}/{resource}:{verb}");
                    if names.is_empty() {
                        out.insert(key);
                    } else {
                        out.extend(names.iter().map(|name| format!("{key}@{name}")));
                    }
                }
            }
        }
    }
    out
}

/// Reads the audit log: the permissions `user` used, and its forbidden requests.
fn used_by(user: &str) -> (BTreeSet<String>, Vec<String>) {
    let text = std::fs::read_to_string(common::audit_log()).expect("reading the audit log");
    let mut used = BTreeSet::new();
    let mut forbidden = Vec::new();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if event["user"]["username"] != user {
            continue;
        }
        let object = &event["objectRef"];
        let Some(resource) = object["resource"].as_str() else {
            continue; // non-resource URLs (/version, discovery) are everyone's
        };
        let group = object["apiGroup"].as_str().filter(|g| !g.is_empty()).unwrap_or("core");
        let resource = match object["subresource"].as_str() {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_string(),
        };
        let verb = event["verb"].as_str().unwrap_or_default();
        let key = format!("{group}/{resource}:{verb}");
        let code = &event["responseStatus"]["code"];
        if code == 403 {
            forbidden.push(format!("{key} ({})", object["namespace"].as_str().unwrap_or("-")));
        } else {
            // A server-side apply that creates its object is audited as `patch` (201) but is
            // authorized for `create` too.
            if verb == "patch" && code == 201 {
                used.insert(format!("{group}/{resource}:create"));
            }
            if let Some(name) = object["name"].as_str() {
                used.insert(format!("{key}@{name}"));
            }
            used.insert(key);
        }
    }
    (used, forbidden)
}

#[tokio::test]
async fn the_chart_rbac_runs_the_placement_scenario_and_grants_nothing_it_does_not_use() {
    common::use_private_audited_control_plane();
    let cp = common::control_plane();
    common::install_crds();
    common::ensure_kwok_nodes(2, 3, 2);
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/mom");
    let (ok, out, err) = common::helm(&[
        "install",
        RELEASE,
        chart,
        "--namespace",
        NAMESPACE,
        "--create-namespace",
    ]);
    assert!(ok, "helm install failed: {err}\n{out}");

    // A stand-in for the operator's own pod (POD_NAME below): the leader labels it
    // mom.hypersync.io/leader=true, as a chart replica labels its pod for the extender Service.
    common::apply(&format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"rbac-operator","namespace":"{NAMESPACE}"}},
            "spec":{{"schedulerName":"no-such-scheduler","containers":[{{"name":"c","image":"pause"}}]}}}}"#
    ));
    // The operator and the scheduler, each with only its ServiceAccount's token.
    let dir = std::env::temp_dir().join(format!("mom-rbac-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The chart's mutual TLS, with the certificates Helm issued into the two Secrets: the
    // extender serves the serving Secret and trusts the client Secret's CA; the scheduler
    // presents the client certificate (files laid out as extender-certs.sh does).
    let tls = dir.join("extender-tls");
    std::fs::create_dir_all(&tls).unwrap();
    for (secret, key, file) in [
        ("mom-extender-tls", "tls.crt", "tls.crt"),
        ("mom-extender-tls", "tls.key", "tls.key"),
        ("mom-extender-tls", "ca.crt", "ca.crt"),
        ("mom-extender-client-tls", "ca.crt", "client-ca.crt"),
        ("mom-extender-client-tls", "tls.crt", "client.crt"),
        ("mom-extender-client-tls", "tls.key", "client.key"),
    ] {
        let jsonpath = format!("jsonpath={{.data.{}}}", key.replace('.', "\\."));
        let (ok, b64, err) = common::kubectl(&["get", "secret", secret, "-n", NAMESPACE, "-o", &jsonpath], None);
        assert!(ok && !b64.is_empty(), "the chart issued no {secret}/{key}: {err}");
        let out = Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(b64.trim().as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        std::fs::write(tls.join(file), out.stdout).unwrap();
    }
    let spawn_operator = |log: &str| {
        common::OperatorBuilder::new()
            .text_logs()
            .extender_tls(&tls)
            .metrics_addr("127.0.0.1:0")
            .kubeconfig(common::service_account_kubeconfig(&dir, NAMESPACE, OPERATOR_SA))
            .in_pod("rbac-operator", NAMESPACE)
            .log(dir.join(log))
            .spawn()
    };
    let operator = spawn_operator("operator.log");
    eprintln!("logs of the operator and mom-scheduler: {}", dir.display());

    let (ok, config, err) = common::kubectl(
        &[
            "get",
            "configmap",
            &format!("{SCHEDULER_SA}-config"),
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.data.config\\.yaml}",
        ],
        None,
    );
    assert!(ok, "{err}");
    let service = format!("mom-extender.{NAMESPACE}.svc");
    let in_cluster_url = format!("https://{service}:8443");
    assert!(config.contains(&in_cluster_url), "{config}");
    // The certificate names the Service, so the scheduler checks that name on 127.0.0.1.
    let config = config
        .replace("/etc/mom-scheduler/tls/ca.crt", &tls.join("ca.crt").to_string_lossy())
        .replace(
            "/etc/mom-scheduler/client/tls.crt",
            &tls.join("client.crt").to_string_lossy(),
        )
        .replace(
            "/etc/mom-scheduler/client/tls.key",
            &tls.join("client.key").to_string_lossy(),
        )
        .lines()
        .flat_map(|line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            let server_name = line
                .trim_start()
                .starts_with("caFile:")
                .then(|| format!("{indent}serverName: {service}"));
            server_name.into_iter().chain(std::iter::once(line.to_string()))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let scheduler_kubeconfig = common::service_account_kubeconfig(&dir, NAMESPACE, SCHEDULER_SA);
    let scheduler_config: PathBuf = dir.join("mom-scheduler.yaml");
    std::fs::write(
        &scheduler_config,
        format!(
            "{}\nclientConnection:\n  kubeconfig: {}\n",
            config.replace(&in_cluster_url, &format!("https://{}", operator.extender_addr)),
            scheduler_kubeconfig.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(cp.bin.join("kube-scheduler"));
    cmd.arg("--config")
        .arg(&scheduler_config)
        .arg("--authentication-kubeconfig")
        .arg(&scheduler_kubeconfig)
        .arg("--authorization-kubeconfig")
        .arg(&scheduler_kubeconfig)
        .args(["--bind-address", "127.0.0.1", "--secure-port"])
        .arg(common::free_port().to_string())
        .args(["--v", "1"]);
    let scheduler = common::Process::spawn(cmd, dir.join("mom-scheduler.log"));

    // The placement scenario: two talking agents, placed together; then a scale-down.
    let ns = common::TestNamespace::new("rbac").await;
    let n = &ns.name;
    // Manual scaling with a ceiling of 2 (the scaler clamps spec.replicas), placement in region-1.
    common::apply(
        &strategy(n, "pair", r#""preferredRegions":["region-1"]"#, None)
            .replace(r#""maxReplicas":20"#, r#""maxReplicas":2"#),
    );
    // Reactive on cpu: the scaler asks the metrics API (there is no metrics-server here, so it
    // reports MetricsUnavailable and leaves the replicas alone).
    common::apply(&format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"OrchestrationStrategy",
            "metadata":{{"name":"by-cpu","namespace":"{n}"}},
            "spec":{{"scaling":{{"method":"reactive","minReplicas":1,"maxReplicas":3,
                      "targets":[{{"metric":"cpu","target":0.5}}]}}}}}}"#
    ));
    common::apply(&agent(n, "worker", 1, r#","strategyRef":{"name":"by-cpu"}"#, ""));
    // Learned, with its model in the ConfigMap `mom-scaling-models` (not there yet).
    common::apply(&format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"OrchestrationStrategy",
            "metadata":{{"name":"learned","namespace":"{n}"}},
            "spec":{{"scaling":{{"method":"learned","learnedModel":"m","minReplicas":1,"maxReplicas":3,
                      "targets":[{{"metric":"cpu","target":0.5}}]}}}}}}"#
    ));
    common::apply(&agent(n, "learner", 1, r#","strategyRef":{"name":"learned"}"#, ""));
    let pair = r#","strategyRef":{"name":"pair"}"#;
    common::apply(&agent(
        n,
        "api",
        2,
        &format!(r#"{pair},"peers":[{{"agent":"db","weight":3}}]"#),
        "",
    ));
    common::apply(&agent(
        n,
        "db",
        2,
        &format!(r#"{pair},"peers":[{{"agent":"api","weight":3}}]"#),
        "",
    ));
    let api = running_pods(&ns, "api", 2).await;
    let db = running_pods(&ns, "db", 2).await;
    assert_eq!(api.len() + db.len(), 4);
    let (ok, _, err) = common::kubectl(
        &[
            "patch",
            "geometricagent",
            "db",
            "-n",
            n,
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":1}}"#,
        ],
        None,
    );
    assert!(ok, "{err}");
    running_pods(&ns, "db", 1).await;
    // Above the strategy's ceiling: the scaler clamps spec.replicas back to 2.
    let (ok, _, err) = common::kubectl(
        &[
            "patch",
            "geometricagent",
            "db",
            "-n",
            n,
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":5}}"#,
        ],
        None,
    );
    assert!(ok, "{err}");
    common::eventually("the scaler to clamp db to 2", Duration::from_secs(90), || async {
        let agent = kubectl_json(&["get", "geometricagent", "db", "-n", n]);
        (agent["spec"]["replicas"] == 2).then_some(())
    })
    .await;
    running_pods(&ns, "db", 2).await;
    common::eventually(
        "the cpu scaler to report the metrics API",
        Duration::from_secs(90),
        || async {
            let agent = kubectl_json(&["get", "geometricagent", "worker", "-n", n]);
            let conditions = agent["status"]["conditions"].as_array().cloned().unwrap_or_default();
            conditions
                .iter()
                .any(|c| c["type"] == "ScalingReady" && c["reason"] == "MetricsUnavailable")
                .then_some(())
        },
    )
    .await;
    // The learned scaler reads its model under the chart's RBAC: first absent (not forbidden),
    // then, once the ConfigMap holds a model, read, so the scaler goes on to the metrics API.
    let scaling_ready = |agent: &str| {
        let agent = kubectl_json(&["get", "geometricagent", agent, "-n", n]);
        agent["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "ScalingReady")
            .map(|c| {
                (
                    c["reason"].as_str().unwrap_or("").to_string(),
                    c["message"].as_str().unwrap_or("").to_string(),
                )
            })
    };
    let (_, message) = common::eventually(
        "the learned scaler to miss its model",
        Duration::from_secs(90),
        || async { scaling_ready("learner").filter(|(reason, _)| reason == "ModelUnavailable") },
    )
    .await;
    assert!(
        message.contains("mom-scaling-models") && !message.contains("forbidden"),
        "{message}"
    );
    let model = serde_json::json!({
        "format": 1,
        "headrooms": mom::learned::HEADROOMS,
        "weights": vec![0.0; mom::learned::PARAMS],
    });
    let (ok, _, err) = common::kubectl(
        &[
            "create",
            "configmap",
            "mom-scaling-models",
            "-n",
            n,
            &format!("--from-literal=m={model}"),
        ],
        None,
    );
    assert!(ok, "{err}");
    common::eventually(
        "the learned scaler to read its model and ask the metrics API",
        Duration::from_secs(90),
        || async { scaling_ready("learner").filter(|(reason, _)| reason == "MetricsUnavailable") },
    )
    .await;
    // The leader reported on the agents and on MomConfig default.
    common::eventually("agent status from the operator", Duration::from_secs(60), || async {
        let status = kubectl_json(&["get", "geometricagent", "db", "-n", n]);
        (status["status"]["replicas"] == 2).then_some(())
    })
    .await;
    common::eventually("the strategy's matched agents", Duration::from_secs(60), || async {
        let status = kubectl_json(&["get", "orchestrationstrategy", "pair", "-n", n]);
        (status["status"]["matchedAgentCount"] == 2).then_some(())
    })
    .await;
    common::eventually(
        "the chain head in MomConfig status",
        Duration::from_secs(60),
        || async {
            let config = kubectl_json(&["get", "momconfig", "default"]);
            config["status"]["receiptChainHead"].is_object().then_some(())
        },
    )
    .await;

    common::eventually(
        "the leader label on the operator's pod",
        Duration::from_secs(60),
        || async {
            let pod = kubectl_json(&["get", "pod", "rbac-operator", "-n", NAMESPACE]);
            (pod["metadata"]["labels"]["mom.hypersync.io/leader"] == "true").then_some(())
        },
    )
    .await;

    // Receipts at full_audit (the chart's default), and they verify.
    let out = Command::new(env!("CARGO_BIN_EXE_mom"))
        .args(["verify", "--cluster", "--namespace", NAMESPACE, "--format", "json"])
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mom verify failed: {report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A graceful stop: the leader seals its receipts in a final checkpoint and writes the
    // tenant's bundle ConfigMap, under the chart's RBAC and ConfigMap policy.
    drop(scheduler);
    let mut operator = operator;
    let status = operator.terminate(Duration::from_secs(60));
    let mut log = operator.log();
    assert!(
        status.is_some_and(|s| s.success()),
        "the operator did not stop cleanly on SIGTERM ({status:?}):\n{log}"
    );
    assert!(
        log.contains("final checkpoint") && !log.contains("final checkpoint not written"),
        "{log}"
    );
    if log.contains("final checkpoint timed out") {
        // The stop took longer than its bound (a stalled machine; CI saw the whole process
        // make no progress for 8 s once). What a timed-out stop promises is that the next
        // leader covers these receipts: start it, under the same RBAC, and hold it to that.
        eprintln!("the final checkpoint timed out; the next leader must cover the receipts");
        let mut next = spawn_operator("operator-next.log");
        common::eventually(
            "the next leader's checkpoint and the tenant's bundle",
            Duration::from_secs(120),
            || async {
                common::kubectl(&["get", "configmap", "mom-receipt-checkpoints", "-n", n], None)
                    .0
                    .then_some(())
            },
        )
        .await;
        let status = next.terminate(Duration::from_secs(60));
        log.push_str(&next.log());
        assert!(
            status.is_some_and(|s| s.success()),
            "the next operator did not stop cleanly on SIGTERM ({status:?}):\n{log}"
        );
    }
    let (ok, out, err) = common::kubectl(&["get", "configmap", "mom-receipt-checkpoints", "-n", n], None);
    assert!(ok, "no tenant bundle after the final checkpoint: {err}\n{out}");
    let out = Command::new(env!("CARGO_BIN_EXE_mom"))
        .args(["verify", "--tenant-bundle", n, "--format", "json"])
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the tenant bundle does not verify: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(operator);
    assert!(
        !log.contains("is forbidden: User"),
        "the operator was refused something by RBAC:\n{log}"
    );

    // What the audit log says the operator did, against what the chart grants it.
    let user = format!("system:serviceaccount:{NAMESPACE}:{OPERATOR_SA}");
    let (used, forbidden) = used_by(&user);
    assert!(forbidden.is_empty(), "forbidden requests: {forbidden:#?}");
    let mut grants = granted(&kubectl_json(&["get", "clusterrole", OPERATOR_SA]));
    grants.extend(granted(&kubectl_json(&["get", "role", OPERATOR_SA, "-n", NAMESPACE])));
    let unused: BTreeSet<&String> = grants.iter().filter(|g| !used.contains(*g)).collect();
    let explained: BTreeMap<&str, &str> = UNEXERCISED.iter().copied().collect();
    eprintln!("permissions granted but not used in this scenario:");
    for permission in &unused {
        eprintln!(
            "  {permission}: {}",
            explained.get(permission.as_str()).unwrap_or(&"UNEXPLAINED")
        );
    }
    let unexplained: Vec<&&String> = unused.iter().filter(|p| !explained.contains_key(p.as_str())).collect();
    assert!(
        unexplained.is_empty(),
        "the chart grants the operator permissions it never used: {unexplained:?} \
         (used: {used:#?})"
    );
    // And the allowlist stays honest: nothing in it is no longer granted.
    for (permission, _) in UNEXERCISED {
        assert!(
            grants.contains(*permission),
            "{permission} is explained but not granted"
        );
    }
    let _ = common::helm(&["uninstall", RELEASE, "--namespace", NAMESPACE]);
    let _ = std::fs::remove_dir_all(&dir);
}
