//! Crash loop: the operator is killed with SIGKILL at least 20 times in the middle of a stream of
//! scaling actions — more, up to 60, until a decision has been seen to find an action that a kill
//! cut short — and restarted (alternately as the same Lease identity, like a container restart
//! in its pod, and as a new one that must wait for the Lease to expire).
//!
//! What "no gap, no fork, no duplicate action" is checked as:
//! - chain: every receipt from the first one this test caused on has a distinct sequence, the
//!   sequences are contiguous, and `mom verify --cluster` finds no problem from there on;
//! - decisions: for each agent, in sequence order, a receipt's `from` (the pods that existed when
//!   it was decided) lies between the previous receipt's `from` and `to` — the previous action
//!   was done, partly done (killed in between: a write-ahead receipt without all its action) or
//!   not done, but never done twice and never contradicted;
//! - pods: the pods ever created for an agent are at most the sum of `to − from` over its spawn
//!   receipts, the pods deleted at most the sum of `from − to` over its terminate receipts, the
//!   live pods never exceed the largest `replicas` the agent ever asked for, and at the end every
//!   agent has exactly `replicas` pods;
//! - write-ahead, on every action: when an agent's k-th pod was created, Receipts stored before it
//!   (by etcd revision) had announced at least k creations;
//! - configuration: one `configure` receipt per MomConfig generation, however many restarts.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use mom::operator::crd::{GeometricAgent, MomConfig, Receipt as ReceiptObject};
use mom::receipts::{Action, Receipt};
use rand::{Rng, SeedableRng};

const AGENTS: usize = 8;
/// Kills at least this many…
const KILLS: usize = 20;
/// …and more, up to this many, until a decision has found an action a kill cut short.
const MAX_KILLS: usize = 60;
const AGENT_LABEL: &str = "mom.hypersync.io/agent";

fn start_operator(identity: &str) -> common::OperatorProcess {
    let cp = common::control_plane();
    let log = cp.kubeconfig.parent().unwrap().join("logs/operator-crash.log");
    common::OperatorBuilder::new()
        .namespace("mom-system")
        .identity(identity)
        .text_logs()
        .flag("--lease-duration-seconds", "2")
        .flag("--renew-period-seconds", "1")
        .checkpoints("25", "3")
        .appending_log(log)
        .spawn()
}

fn to_receipt(obj: &ReceiptObject) -> Receipt {
    serde_json::from_value(serde_json::to_value(&obj.spec).unwrap()).unwrap()
}

async fn all_receipts(client: &kube::Client) -> Vec<Receipt> {
    let api: Api<ReceiptObject> = Api::all(client.clone());
    let mut out: Vec<Receipt> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(to_receipt)
        .collect();
    out.sort_by_key(|r| r.sequence);
    out
}

/// sequence → the `metadata.resourceVersion` its Receipt object was created at (Receipts are
/// never updated, so it is their creation's).
///
/// Resource versions are opaque to API clients in general; on this control plane (one etcd) they
/// are etcd revisions, one counter for every object, which makes "this Receipt was stored before
/// that pod was created" a comparison of two integers. That is the write-ahead rule, checked on
/// every action rather than only where a kill happened to land.
async fn receipt_versions(client: &kube::Client) -> BTreeMap<u64, u64> {
    let api: Api<ReceiptObject> = Api::all(client.clone());
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| (to_receipt(o).sequence, revision(&o.metadata)))
        .collect()
}

/// An object's resource version as the etcd revision it is.
fn revision(meta: &kube::api::ObjectMeta) -> u64 {
    let rv = meta.resource_version.as_deref().unwrap_or_default();
    rv.parse()
        .unwrap_or_else(|_| panic!("resourceVersion {rv:?} is not an etcd revision"))
}

/// Agents whose last receipt's action was cut short, as seen right after a kill (the operator is
/// dead, so nothing moves but kwok finishing deletions): their pods that are alive and not
/// being deleted are not the `to` of that receipt. The next decision for such an agent starts
/// from a count other than that `to`: an interrupted action in the final check.
async fn cut_short(client: &kube::Client, ns: &str, names: &[String]) -> Vec<(String, String)> {
    let receipts = all_receipts(client).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut out = Vec::new();
    for name in names {
        let Some(last) = receipts
            .iter()
            .rev()
            // Scaling receipts only: an `agent.change` receipt records the spec and has no `to`
            // (read as 0, it made every agent with pods look cut short).
            .filter(|r| r.decision["kind"] != mom::decisions::config_change::AGENT_CHANGE_KIND)
            .find(|r| r.subject.namespace == ns && &r.subject.name == name)
        else {
            continue;
        };
        let Some(to) = last.decision["to"].as_u64() else {
            panic!(
                "receipt {} of {name} has no decision.to: {}",
                last.sequence, last.decision
            );
        };
        let to = to as usize;
        let live = pods
            .list(&ListParams::default().labels(&format!("{AGENT_LABEL}={name}")))
            .await
            .unwrap()
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count();
        if live != to {
            out.push((
                name.clone(),
                format!("{name}: receipt {} wants {to}, {live} alive", last.sequence),
            ));
        }
    }
    out
}

/// Scaling receipts of agent `name` in `ns`, in sequence order (its `agent.change` spec record
/// decides no pods and is left out).
fn scaling_receipts<'a>(receipts: &'a [Receipt], ns: &str, name: &str) -> Vec<&'a Receipt> {
    receipts
        .iter()
        .filter(|r| r.subject.namespace == ns && r.subject.name == name)
        .filter(|r| r.decision["kind"] != mom::decisions::config_change::AGENT_CHANGE_KIND)
        .collect()
}

/// A receipt's `(from, to)`: the pods that existed when it was decided, and the count it decided.
fn from_to(r: &Receipt) -> (i64, i64) {
    (
        r.decision["from"].as_i64().unwrap_or(-1),
        r.decision["to"].as_i64().unwrap_or(-1),
    )
}

/// How many of `names`' scaling receipts were followed by a decision that found their action
/// incomplete (its `from` is not the previous receipt's `to`).
fn interrupted_actions(receipts: &[Receipt], ns: &str, names: &[String]) -> usize {
    names
        .iter()
        .map(|name| {
            scaling_receipts(receipts, ns, name)
                .windows(2)
                .filter(|pair| from_to(pair[1]).0 != from_to(pair[0]).1)
                .count()
        })
        .sum()
}

/// What the test saw of each agent's pods (from a watch).
#[derive(Default)]
struct PodLog {
    /// agent → uids ever seen.
    created: BTreeMap<String, BTreeSet<String>>,
    /// agent → uids seen deleting or deleted.
    deleted: BTreeMap<String, BTreeSet<String>>,
    /// uid → (agent, deleting).
    live: BTreeMap<String, (String, bool)>,
    /// agent → most pods alive (not deleting) at once.
    max_active: BTreeMap<String, usize>,
    /// agent → uid → the resource version the pod was first seen at: its creation's, since the
    /// watch runs from before the first pod (a re-list after a dropped watch would only see a
    /// later version, which makes the write-ahead check below more lenient, never wrong).
    first_seen: BTreeMap<String, BTreeMap<String, u64>>,
}

impl PodLog {
    fn apply(&mut self, pod: &Pod, gone: bool) {
        let Some(agent) = pod.metadata.labels.as_ref().and_then(|l| l.get(AGENT_LABEL)).cloned() else {
            return;
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.created.entry(agent.clone()).or_default().insert(uid.clone());
        self.first_seen
            .entry(agent.clone())
            .or_default()
            .entry(uid.clone())
            .or_insert_with(|| revision(&pod.metadata));
        let deleting = gone || pod.metadata.deletion_timestamp.is_some();
        if deleting {
            self.deleted.entry(agent.clone()).or_default().insert(uid.clone());
        }
        if gone {
            self.live.remove(&uid);
        } else {
            self.live.insert(uid, (agent.clone(), deleting));
        }
        let active = self.live.values().filter(|(a, d)| *a == agent && !d).count();
        let m = self.max_active.entry(agent).or_default();
        *m = (*m).max(active);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_kill_9_restarts_in_a_stream_of_actions_leave_no_gap_no_fork_and_no_duplicate_action() {
    common::control_plane();
    common::install_crds();
    common::apply_test_momconfig("full_audit");
    let _ = common::kubectl(&["create", "namespace", "mom-system"], None);
    let client = common::client().await;
    let ns = common::TestNamespace::new("crash").await;
    let agents: Api<GeometricAgent> = Api::namespaced(client.clone(), &ns.name);
    let names: Vec<String> = (0..AGENTS).map(|i| format!("crashy-{i}")).collect();
    for name in &names {
        let a: GeometricAgent = serde_json::from_value(serde_json::json!({
            "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
            "metadata": {"name": name, "namespace": ns.name},
            "spec": {"workloadType": "batch", "replicas": 0,
                     "template": {"spec": {"containers": [{"name": "c", "image": "pause"}]}}}
        }))
        .unwrap();
        agents.create(&PostParams::default(), &a).await.unwrap();
    }
    let first = all_receipts(&client).await.last().map_or(0, |r| r.sequence + 1);

    // Watch the pods.
    let pod_log = Arc::new(Mutex::new(PodLog::default()));
    let watch_task = {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
        let log = pod_log.clone();
        tokio::spawn(async move {
            let mut stream = watcher::watcher(pods, watcher::Config::default().labels(AGENT_LABEL)).boxed();
            while let Some(event) = stream.next().await {
                let mut l = log.lock().unwrap();
                match event {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => l.apply(&p, false),
                    Ok(watcher::Event::Delete(p)) => l.apply(&p, true),
                    _ => {}
                }
            }
        })
    };

    // A stream of scaling requests: every 100 ms one agent gets a new replica count (seeded).
    let stop = Arc::new(AtomicBool::new(false));
    let max_desired: Arc<Mutex<BTreeMap<String, i32>>> = Default::default();
    // Agents a kill was seen to cut short: the stream leaves their replicas alone from then on,
    // so the next term must find the action incomplete and finish it (a new request could
    // otherwise make the half-done count the wanted one, and no decision would be needed).
    let pinned: Arc<Mutex<BTreeSet<String>>> = Default::default();
    let driver = {
        let (agents, names, stop, max_desired, pinned) = (
            agents.clone(),
            names.clone(),
            stop.clone(),
            max_desired.clone(),
            pinned.clone(),
        );
        tokio::spawn(async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
            let mut requests = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let name = &names[rng.random_range(0..names.len())];
                let replicas: i32 = rng.random_range(0..=3);
                if pinned.lock().unwrap().contains(name) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                {
                    let mut m = max_desired.lock().unwrap();
                    let e = m.entry(name.clone()).or_insert(0);
                    *e = (*e).max(replicas);
                }
                let patch = serde_json::json!({"spec": {"replicas": replicas}});
                if agents
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .is_ok()
                {
                    requests += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            requests
        })
    };

    let started = Instant::now();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20);
    let configs: Api<MomConfig> = Api::all(client.clone());
    let mut bumped_generation = None;
    // Kills seen landing mid-action (the checks below must have seen one to mean anything).
    let mut cut_short_seen: Vec<String> = Vec::new();
    let mut kills = 0;
    // Decisions so far that found an earlier action incomplete: the crash loop goes on past
    // KILLS until there is one (a kill seen mid-action is not enough on its own: a create the
    // dead operator had already sent can still land after the look).
    let mut interrupted_so_far = 0;
    while kills < KILLS || (interrupted_so_far == 0 && kills < MAX_KILLS) {
        let kill = kills;
        kills += 1;
        // Even kills: the same identity comes back (a container restart in the same pod) and
        // renews at once; odd: a new identity waits for the Lease to expire.
        let identity = if kill % 2 == 0 {
            "crash-same".to_string()
        } else {
            format!("crash-new-{kill}")
        };
        let before = all_receipts(&client).await.len();
        let mut op = start_operator(&identity);
        common::eventually(
            &format!("the operator (run {kill}) to write receipts"),
            Duration::from_secs(60),
            || {
                let client = client.clone();
                async move { (all_receipts(&client).await.len() >= before + 2).then_some(()) }
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
        op.kill();
        for (name, what) in cut_short(&client, &ns.name, &names).await {
            pinned.lock().unwrap().insert(name);
            cut_short_seen.push(format!("kill {kill}: {what}"));
        }
        interrupted_so_far = interrupted_actions(&all_receipts(&client).await, &ns.name, &names);
        if kill == KILLS / 2 {
            // A configuration change while the operator is down.
            let patch = serde_json::json!({"spec": {"tickSeconds": 15 + (first % 7) as i32 + 1}});
            let cfg = configs
                .patch("default", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
            bumped_generation = cfg.metadata.generation;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let requests = driver.await.unwrap();
    let crash_loop = started.elapsed();

    // A last, undisturbed term converges every agent.
    let final_op = start_operator("crash-final");
    // Leading before anything is checked: the agents may already be at their counts, and the
    // term under test is this operator's.
    common::eventually("the last operator to lead", Duration::from_secs(60), || {
        let led = final_op
            .log()
            .lines()
            // (text logs carry colour codes between a field's name and its value)
            .any(|l| l.contains("leadership changed") && l.contains("true") && l.contains("crash-final"));
        async move { led.then_some(()) }
    })
    .await;
    let desired: BTreeMap<String, i32> = agents
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|a| (a.metadata.name.clone().unwrap(), a.spec.replicas))
        .collect();
    common::eventually("every agent at its replica count", Duration::from_secs(90), || {
        let log = pod_log.clone();
        let desired = desired.clone();
        async move {
            let l = log.lock().unwrap();
            desired
                .iter()
                .all(|(a, want)| l.live.values().filter(|(x, d)| x == a && !d).count() == *want as usize)
                .then_some(())
        }
    })
    .await;
    // A graceful stop, awaited: the operator drains its in-flight work (receipt, then action)
    // and writes its final checkpoint before it exits, so nothing is still being written when
    // the chain is read below.
    let mut final_op = final_op;
    let status = final_op.terminate(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "the last operator did not stop cleanly on SIGTERM within 60 s: {status:?}\n{}",
        final_op.log()
    );
    drop(final_op);
    watch_task.abort();

    // Chain: contiguous, no duplicate sequence, verified clean from `first` on.
    let receipts: Vec<Receipt> = all_receipts(&client)
        .await
        .into_iter()
        .filter(|r| r.sequence >= first)
        .collect();
    let seqs: Vec<u64> = receipts.iter().map(|r| r.sequence).collect();
    let expected: Vec<u64> = (first..first + seqs.len() as u64).collect();
    assert_eq!(
        seqs, expected,
        "receipts from {first} on must be contiguous with no duplicate sequence"
    );
    let published = Api::<ConfigMap>::namespaced(client.clone(), "mom-system")
        .get("mom-receipt-public-keys")
        .await
        .unwrap()
        .data
        .unwrap();
    let cp = common::control_plane();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mom"));
    cmd.args(["verify", "--cluster", "--format", "json"]);
    for key in published.values() {
        cmd.args(["--public-key", key]);
    }
    let out = cmd.env("KUBECONFIG", &cp.kubeconfig).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours: Vec<&serde_json::Value> = report["report"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["sequence"].as_u64().unwrap() >= first)
        .collect();
    assert!(ours.is_empty(), "problems in the crash loop's receipts: {ours:?}");
    let checkpoints = receipts.iter().filter(|r| r.action == Action::Checkpoint).count();

    // Decisions and pods.
    let (log, max_desired) = {
        let l = pod_log.lock().unwrap();
        let created = l.created.clone();
        let deleted = l.deleted.clone();
        let max_active = l.max_active.clone();
        let first_seen = l.first_seen.clone();
        (
            (created, deleted, max_active, first_seen),
            max_desired.lock().unwrap().clone(),
        )
    };
    let (created_pods, deleted_pods, max_active, first_seen) = log;
    let versions = receipt_versions(&client).await;
    let mut pods_checked_against_receipts = 0;
    let interrupted = interrupted_actions(&receipts, &ns.name, &names);
    let mut actions = 0;
    for name in &names {
        // The agent's spec is recorded once (`agent.change`, at its first reconcile): only its
        // replicas change, and a new leader compares each generation with the spec the chain
        // records instead of recording it again.
        let spec_records: Vec<u64> = receipts
            .iter()
            .filter(|r| r.subject.namespace == ns.name && &r.subject.name == name)
            .filter(|r| r.decision["kind"] == mom::decisions::config_change::AGENT_CHANGE_KIND)
            .map(|r| r.sequence)
            .collect();
        assert_eq!(
            spec_records.len(),
            1,
            "{name}: agent.change receipts {spec_records:?} over {kills} restarts that changed only replicas"
        );
        // Its scaling receipts (the spec record decides no pods).
        let mine = scaling_receipts(&receipts, &ns.name, name);
        actions += mine.len();
        for r in &mine {
            let (f, t) = from_to(r);
            assert!(
                f >= 0 && t >= 0,
                "{name}: receipt {} has no decision.from/to: {}",
                r.sequence,
                r.decision
            );
        }
        for pair in mine.windows(2) {
            let ((f0, t0), (f1, _)) = (from_to(pair[0]), from_to(pair[1]));
            assert!(
                f0.min(t0) <= f1 && f1 <= f0.max(t0),
                "{name}: receipt {} decided from {f1} pods, but receipt {} went from {f0} to {t0}",
                pair[1].sequence,
                pair[0].sequence
            );
        }
        let announced_up: i64 = mine.iter().map(|r| from_to(r)).map(|(f, t)| (t - f).max(0)).sum();
        let announced_down: i64 = mine.iter().map(|r| from_to(r)).map(|(f, t)| (f - t).max(0)).sum();
        let created = created_pods.get(name).map_or(0, BTreeSet::len) as i64;
        let deleted = deleted_pods.get(name).map_or(0, BTreeSet::len) as i64;
        assert!(
            created <= announced_up,
            "{name}: {created} pods created but spawn receipts announced {announced_up}"
        );
        assert!(
            deleted <= announced_down,
            "{name}: {deleted} pods deleted but terminate receipts announced {announced_down}"
        );
        // Write-ahead, pod by pod: when the k-th pod of this agent was created, receipts
        // already stored had announced at least k creations. A receipt written after its pods
        // (or not at all) fails here whether or not a kill fell in between.
        let mut births: Vec<u64> = first_seen
            .get(name)
            .map(|m| m.values().copied().collect())
            .unwrap_or_default();
        births.sort_unstable();
        for (k, born) in births.iter().enumerate() {
            let announced_before: i64 = mine
                .iter()
                .filter(|r| versions.get(&r.sequence).is_some_and(|v| v < born))
                .map(|r| from_to(r))
                .map(|(f, t)| (t - f).max(0))
                .sum();
            assert!(
                (k as i64) < announced_before,
                "{name}: pod {} of the agent was created at revision {born}, when stored spawn receipts had announced only {announced_before}: a pod made before its receipt",
                k + 1
            );
            pods_checked_against_receipts += 1;
        }
        let most = max_active.get(name).copied().unwrap_or(0);
        let asked = max_desired.get(name).copied().unwrap_or(0).max(0) as usize;
        assert!(
            most <= asked,
            "{name}: {most} pods alive at once, never more than {asked} asked for"
        );
    }

    assert!(
        pods_checked_against_receipts >= names.len(),
        "only {pods_checked_against_receipts} pod creations were checked against their receipts"
    );
    // The invariants above hold trivially over an empty stream: the crash loop must have
    // produced agent actions, on average at least one per restart.
    assert!(
        actions >= kills,
        "only {actions} agent receipts over {kills} restarts: the kills did not land in a stream of actions"
    );

    // A kill landed mid-action at least once, and a decision after one found the action
    // incomplete (the loop above kept killing until it did, pinning each agent seen cut short):
    // the invariants above were put to the case they are about.
    assert!(
        !cut_short_seen.is_empty(),
        "no kill in {kills} landed in the middle of an action"
    );
    assert!(
        interrupted > 0,
        "kills landed mid-action ({cut_short_seen:?}), but no later decision found an action incomplete"
    );

    // One configure receipt per MomConfig generation.
    let mut per_generation: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for r in all_receipts(&client)
        .await
        .iter()
        // MomConfig changes only: the anomaly loop's flag receipts (left in the shared cluster by
        // tests/anomaly.rs) are `configure` receipts too.
        .filter(|r| {
            r.action == Action::Configure && r.decision["kind"] == mom::decisions::config_change::CONFIG_CHANGE_KIND
        })
    {
        let key = (
            r.decision["uid"].as_str().unwrap_or_default().to_string(),
            r.decision["generation"].as_i64().unwrap_or(-1),
        );
        *per_generation.entry(key).or_default() += 1;
    }
    assert!(per_generation.values().all(|n| *n == 1), "{per_generation:?}");
    let bumped = bumped_generation.unwrap();
    assert!(
        per_generation.keys().any(|(_, g)| *g == bumped),
        "the change to generation {bumped} was not recorded: {per_generation:?}"
    );
    println!(
        "{kills} kills in {:.1} s; {requests} scaling requests; {actions} agent receipts from {first} on ({} receipts, {checkpoints} checkpoints); {interrupted} receipts were followed by a decision that found their action incomplete; {pods_checked_against_receipts} pod creations checked write-ahead against stored receipts; cut short right after a kill: {cut_short_seen:?}",
        crash_loop.as_secs_f64(),
        receipts.len()
    );
}
