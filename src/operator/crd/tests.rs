//! Tests of the generated CRDs (rules, printer columns, descriptions, committed YAML) and of the
//! example manifests (valid ones deserialise and resolve; invalid ones expect a message the CRDs
//! can actually produce).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use super::agent::{GeometricAgent, Isolation};
use super::momconfig::{MomConfig, OBJECTIVE_SUM_TOLERANCE, OrchestrationMode, RoutingAlgorithm, VerificationLevel};
use super::receipt::{IMMUTABLE_MESSAGE, Receipt, ReceiptAction};
use super::strategy::{Failover, OrchestrationStrategy, Redundancy, ResourcePressure, ScalingMethod, WorkloadType};
use super::validate::{AgentFacts, StrategyFacts, check_agent};
use super::*;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_multiple::<Value>(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The CRD of a kind, as JSON.
fn crd_json(kind: &str) -> Value {
    let crd = all().into_iter().find(|c| c.spec.names.kind == kind).unwrap();
    serde_json::to_value(crd).unwrap()
}

fn root_schema(kind: &str) -> Value {
    crd_json(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The schema at a dotted path of properties under the root (e.g. "spec.geometry.curvature").
fn schema_at(kind: &str, path: &str) -> Value {
    let mut node = root_schema(kind);
    for part in path.split('.') {
        node = node["properties"][part].clone();
        assert!(!node.is_null(), "{kind}: no property {path}");
    }
    node
}

/// A JSON array of strings as a Vec.
fn strings(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn rules(schema: &Value) -> Vec<(String, String)> {
    schema["x-kubernetes-validations"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|r| {
                    (
                        r["rule"].as_str().unwrap().to_string(),
                        r["message"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn printer_columns(kind: &str) -> Vec<(String, String)> {
    crd_json(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["jsonPath"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every CEL message anywhere in a schema.
fn all_messages(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "x-kubernetes-validations" {
                    for rule in value.as_array().into_iter().flatten() {
                        out.extend(rule["message"].as_str().map(str::to_string));
                    }
                } else {
                    all_messages(value, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| all_messages(v, out)),
        _ => {}
    }
}

#[test]
fn all_lists_the_four_crds_in_group_mom_hypersync_io_version_v1alpha1() {
    let crds = all();
    let names: Vec<String> = crds.iter().map(|c| c.metadata.name.clone().unwrap()).collect();
    assert_eq!(
        names,
        vec![
            "momconfigs.mom.hypersync.io",
            "orchestrationstrategies.mom.hypersync.io",
            "geometricagents.mom.hypersync.io",
            "receipts.mom.hypersync.io"
        ]
    );
    for crd in &crds {
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.versions.len(), 1);
        assert_eq!(crd.spec.versions[0].name, VERSION);
        assert!(crd.spec.versions[0].served && crd.spec.versions[0].storage);
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&["mom".to_string()][..]));
        assert_eq!(crd.spec.names.short_names.as_ref().map(Vec::len), Some(1));
    }
    let scopes: Vec<&str> = crds.iter().map(|c| c.spec.scope.as_str()).collect();
    assert_eq!(scopes, vec!["Cluster", "Namespaced", "Namespaced", "Namespaced"]);
}

#[test]
fn momconfig_crd_carries_the_objective_geometry_and_verification_rules() {
    let sum = rules(&schema_at("MomConfig", "spec.objectives"));
    assert_eq!(sum.len(), 1);
    assert!(
        sum[0].0.contains(">= 0.999999") && sum[0].0.contains("<= 1.000001"),
        "{}",
        sum[0].0
    );
    assert!(sum[0].1.starts_with("spec.objectives:"), "{}", sum[0].1);
    for weight in ["performance", "cost", "reliability", "sustainability"] {
        let r = rules(&schema_at("MomConfig", &format!("spec.objectives.{weight}")));
        assert_eq!(
            r,
            vec![(
                "self >= 0.0 && self <= 1.0".into(),
                format!("spec.objectives.{weight} must be in [0, 1]")
            )]
        );
    }
    assert_eq!(
        rules(&schema_at("MomConfig", "spec.geometry.curvature"))[0].0,
        "self > 0.0"
    );
    assert_eq!(
        rules(&schema_at("MomConfig", "spec.geometry.dimension"))[0].0,
        "self >= 2 && self <= 512"
    );
    let verification = schema_at("MomConfig", "spec.verification");
    assert_eq!(
        rules(&verification)[0].0,
        "(has(self.level) && self.level == 'sample') == has(self.sampleRate)"
    );
    assert_eq!(verification["x-kubernetes-validations"][0]["fieldPath"], ".sampleRate");
    assert_eq!(
        rules(&schema_at("MomConfig", "spec.verification.sampleRate"))[0].0,
        "self > 0.0 && self <= 1.0"
    );
    assert_eq!(strings(&schema_at("MomConfig", "spec")["required"]), vec!["objectives"]);
}

#[test]
fn strategy_crd_rejects_min_above_max_and_custom_targets_without_query() {
    let scaling = rules(&schema_at("OrchestrationStrategy", "spec.scaling"));
    assert_eq!(scaling[0].0, "self.minReplicas <= self.maxReplicas");
    assert!(scaling[0].1.contains("spec.scaling.minReplicas"));
    let targets = schema_at("OrchestrationStrategy", "spec.scaling.targets");
    let item_rules: Vec<String> = rules(&targets["items"]).into_iter().map(|(rule, _)| rule).collect();
    assert!(
        item_rules.contains(&"(self.metric == 'custom') == has(self.query)".to_string()),
        "{item_rules:?}"
    );
    assert_eq!(
        targets["maxItems"], 16,
        "lists with per-item CEL rules need maxItems to bound the rule cost"
    );
}

#[test]
fn receipt_spec_is_immutable_and_keeps_the_decision_verbatim() {
    let spec = schema_at("Receipt", "spec");
    assert_eq!(
        rules(&spec),
        vec![("self == oldSelf".to_string(), IMMUTABLE_MESSAGE.to_string())]
    );
    let decision = schema_at("Receipt", "spec.decision");
    assert_eq!(decision["x-kubernetes-preserve-unknown-fields"], true);
    assert!(decision.get("type").is_none(), "a decision may be any JSON value");
    assert_eq!(
        strings(&schema_at("Receipt", "spec.action")["enum"]),
        vec![
            "spawn",
            "terminate",
            "scale",
            "migrate",
            "evict",
            "allocate",
            "configure",
            "checkpoint",
            "bind"
        ]
    );
    assert_eq!(
        strings(&schema_at("Receipt", "spec.level")["enum"]),
        vec!["none", "sample", "full_audit"]
    );
    assert_eq!(schema_at("Receipt", "spec.sequence")["format"], "int64");
    assert_eq!(schema_at("Receipt", "spec.time")["format"], "date-time");
    let required: BTreeSet<String> = strings(&spec["required"]).into_iter().collect();
    let expected: BTreeSet<String> = [
        "sequence",
        "action",
        "subject",
        "decision",
        "inputsDigest",
        "prevHash",
        "hash",
        "signature",
        "keyId",
        "time",
        "level",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(required, expected);
    assert!(
        crd_json("Receipt")["spec"]["versions"][0]["subresources"].is_null(),
        "receipts have no status to update"
    );
}

#[test]
fn geometric_agent_has_the_scale_subresource_and_an_open_pod_template() {
    let crd = crd_json("GeometricAgent");
    let sub = &crd["spec"]["versions"][0]["subresources"];
    assert_eq!(sub["status"], serde_json::json!({}));
    assert_eq!(sub["scale"]["specReplicasPath"], ".spec.replicas");
    assert_eq!(sub["scale"]["statusReplicasPath"], ".status.replicas");
    assert_eq!(sub["scale"]["labelSelectorPath"], ".status.selector");
    let template = schema_at("GeometricAgent", "spec.template");
    assert_eq!(template["type"], "object");
    assert_eq!(template["x-kubernetes-preserve-unknown-fields"], true);
    let peers = schema_at("GeometricAgent", "spec.peers");
    assert_eq!(peers["x-kubernetes-list-type"], "map");
    assert_eq!(peers["x-kubernetes-list-map-keys"], serde_json::json!(["agent"]));
    assert_eq!(rules(&peers["items"]["properties"]["weight"])[0].0, "self > 0.0");
}

#[test]
fn status_conditions_are_lists_keyed_by_type_in_every_kind_with_status() {
    for kind in ["MomConfig", "OrchestrationStrategy", "GeometricAgent"] {
        let conditions = schema_at(kind, "status.conditions");
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{kind}");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"]),
            "{kind}"
        );
        let props = &conditions["items"]["properties"];
        for field in [
            "type",
            "status",
            "reason",
            "message",
            "lastTransitionTime",
            "observedGeneration",
        ] {
            assert!(props.get(field).is_some(), "{kind}: condition lacks {field}");
        }
        assert!(
            crd_json(kind)["spec"]["versions"][0]["subresources"]["status"].is_object(),
            "{kind}"
        );
    }
}

#[test]
fn printer_columns_show_what_kubectl_users_look_for() {
    let names = |kind: &str| {
        printer_columns(kind)
            .into_iter()
            .map(|(name, _)| name)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names("GeometricAgent"),
        vec![
            "Replicas", "Ready", "Tenant", "Strategy", "Near", "Distance", "Type", "Age"
        ]
    );
    assert_eq!(
        names("Receipt"),
        vec!["Seq", "Action", "Kind", "Subject", "Hash", "Age"]
    );
    assert_eq!(
        names("OrchestrationStrategy"),
        vec!["Priority", "Method", "Min", "Max", "Agents", "Age"]
    );
    assert_eq!(
        names("MomConfig"),
        vec![
            "Mode",
            "Routing",
            "Verification",
            "Ready",
            "Nodes",
            "Dim",
            "Chain",
            "Age"
        ]
    );
    let agent: BTreeMap<String, String> = printer_columns("GeometricAgent").into_iter().collect();
    assert_eq!(agent["Replicas"], ".spec.replicas");
    assert_eq!(agent["Ready"], ".status.readyReplicas");
    assert_eq!(agent["Age"], ".metadata.creationTimestamp");
    let receipt: BTreeMap<String, String> = printer_columns("Receipt").into_iter().collect();
    assert_eq!(receipt["Seq"], ".spec.sequence");
    assert_eq!(receipt["Subject"], ".spec.subject.name");
}

/// Walks a schema and records the path of every property without a description.
fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema["properties"].as_object() {
        for (name, prop) in props {
            let here = format!("{path}.{name}");
            // apiVersion/kind/metadata are the standard envelope, described by Kubernetes itself.
            let envelope = path.is_empty() && matches!(name.as_str(), "apiVersion" | "kind" | "metadata");
            if !envelope && prop["description"].as_str().is_none_or(|d| d.trim().is_empty()) {
                out.push(here.clone());
            }
            undocumented(prop, &here, out);
        }
    }
    if schema["items"].is_object() {
        undocumented(&schema["items"], &format!("{path}[]"), out);
    }
}

#[test]
fn every_field_of_every_crd_has_a_description() {
    for crd in all() {
        let kind = crd.spec.names.kind.clone();
        let mut missing = Vec::new();
        undocumented(&root_schema(&kind), "", &mut missing);
        assert!(missing.is_empty(), "{kind}: fields without a description: {missing:?}");
    }
}

#[test]
fn enum_values_are_the_snake_case_names_of_the_issue() {
    let wire = |v: Value| v.as_str().unwrap().to_string();
    assert_eq!(to_wire(Redundancy::NPlus1), "n_plus_1");
    assert_eq!(to_wire(Redundancy::NPlus2), "n_plus_2");
    assert_eq!(to_wire(Redundancy::Quorum), "quorum");
    assert_eq!(to_wire(Failover::ActivePassive), "active_passive");
    assert_eq!(to_wire(Failover::ActiveActive), "active_active");
    assert_eq!(to_wire(Failover::NPlus1), "n_plus_1");
    assert_eq!(to_wire(WorkloadType::MlTraining), "ml_training");
    assert_eq!(to_wire(ResourcePressure::Critical), "critical");
    assert_eq!(to_wire(ScalingMethod::Predictive), "predictive");
    assert_eq!(to_wire(VerificationLevel::FullAudit), "full_audit");
    assert_eq!(to_wire(RoutingAlgorithm::MultipathHyperbolic), "multipath_hyperbolic");
    assert_eq!(to_wire(OrchestrationMode::FullyDistributed), "fully_distributed");
    assert_eq!(to_wire(ReceiptAction::Checkpoint), "checkpoint");
    assert_eq!(to_wire(Isolation::Strict), "strict");
    let enum_of = |kind: &str, path: &str| -> Vec<String> {
        schema_at(kind, path)["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| wire(v.clone()))
            .collect()
    };
    assert_eq!(
        enum_of("MomConfig", "spec.mode"),
        vec!["centralized", "federated", "fully_distributed", "geometric_mesh"]
    );
    assert_eq!(
        enum_of("MomConfig", "spec.geometry.routingAlgorithm"),
        vec!["greedy_forwarding", "multipath_hyperbolic", "gradient_flow"]
    );
    assert_eq!(
        enum_of("OrchestrationStrategy", "spec.resilience.redundancy"),
        vec!["none", "n_plus_1", "n_plus_2", "quorum"]
    );
    assert_eq!(
        enum_of("OrchestrationStrategy", "spec.resilience.failover"),
        vec!["active_passive", "active_active", "n_plus_1"]
    );
    assert_eq!(
        enum_of("OrchestrationStrategy", "spec.scaling.method"),
        vec!["predictive", "reactive", "manual", "learned"]
    );
    assert_eq!(
        enum_of("GeometricAgent", "spec.workloadType"),
        vec!["batch", "streaming", "interactive", "ml_training"]
    );
    assert_eq!(schema_at("MomConfig", "spec.mode")["default"], "centralized");
}

/// The JSON string a unit enum value serialises to.
fn to_wire(value: impl serde::Serialize) -> String {
    serde_json::to_value(value).unwrap().as_str().unwrap().to_string()
}

#[test]
fn committed_crds_match_the_rust_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    for crd in all() {
        let name = crd.metadata.name.clone().unwrap();
        let path = dir.join(format!("{name}.yaml"));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == to_yaml(&crd).unwrap(),
            "{} is stale: run `cargo run -- crdgen --out-dir crds`",
            path.display()
        );
    }
}

#[test]
fn committed_crd_yaml_reads_back_as_the_same_crd() {
    for crd in all() {
        let yaml = to_yaml(&crd).unwrap();
        let back: CustomResourceDefinition = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&crd).unwrap()
        );
    }
}

/// The typed objects of the valid examples.
#[derive(Default)]
struct Examples {
    configs: Vec<MomConfig>,
    strategies: Vec<OrchestrationStrategy>,
    agents: Vec<GeometricAgent>,
    receipts: Vec<Receipt>,
    namespaces: Vec<k8s_openapi::api::core::v1::Namespace>,
}

fn load_examples() -> Examples {
    let mut ex = Examples::default();
    for path in yaml_files(&examples_dir())
        .into_iter()
        .chain(yaml_files(&examples_dir().join("receipt")))
    {
        for doc in documents(&path) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            let ctx = format!("{} ({kind} {})", path.display(), doc["metadata"]["name"]);
            let fail = |e: serde_json::Error| -> ! { panic!("{ctx}: {e}") };
            match kind.as_str() {
                "MomConfig" => ex.configs.push(serde_json::from_value(doc).unwrap_or_else(|e| fail(e))),
                "OrchestrationStrategy" => ex
                    .strategies
                    .push(serde_json::from_value(doc).unwrap_or_else(|e| fail(e))),
                "GeometricAgent" => ex.agents.push(serde_json::from_value(doc).unwrap_or_else(|e| fail(e))),
                "Receipt" => ex
                    .receipts
                    .push(serde_json::from_value(doc).unwrap_or_else(|e| fail(e))),
                "Namespace" => ex
                    .namespaces
                    .push(serde_json::from_value(doc).unwrap_or_else(|e| fail(e))),
                other => panic!("{ctx}: unexpected kind {other:?}"),
            }
        }
    }
    ex
}

#[test]
fn every_valid_example_deserialises_into_the_rust_types() {
    let ex = load_examples();
    assert_eq!(ex.configs.len(), 1);
    assert_eq!(ex.strategies.len(), 2);
    assert_eq!(ex.agents.len(), 4);
    assert_eq!(ex.receipts.len(), 1);
    assert_eq!(ex.namespaces.len(), 1);
    let config = &ex.configs[0];
    assert_eq!(config.metadata.name.as_deref(), Some(super::momconfig::ACTIVE_NAME));
    assert!((config.spec.objectives.sum() - 1.0).abs() <= OBJECTIVE_SUM_TOLERANCE);
    assert_eq!(ex.receipts[0].spec.decision["to"], 4);
    let api = ex
        .agents
        .iter()
        .find(|a| a.metadata.name.as_deref() == Some("api"))
        .unwrap();
    let image = api.spec.template.spec.as_ref().unwrap().containers[0].image.clone();
    assert_eq!(
        image.as_deref(),
        Some("ghcr.io/example/shop-api:1.4.2"),
        "the open template still decodes as a PodTemplateSpec"
    );
}

#[test]
fn valid_examples_survive_a_serialisation_round_trip_unchanged() {
    for path in yaml_files(&examples_dir())
        .into_iter()
        .chain(yaml_files(&examples_dir().join("receipt")))
    {
        for doc in documents(&path) {
            let back = match doc["kind"].as_str() {
                Some("MomConfig") => serde_json::to_value(serde_json::from_value::<MomConfig>(doc.clone()).unwrap()),
                Some("OrchestrationStrategy") => {
                    serde_json::to_value(serde_json::from_value::<OrchestrationStrategy>(doc.clone()).unwrap())
                }
                Some("GeometricAgent") => {
                    serde_json::to_value(serde_json::from_value::<GeometricAgent>(doc.clone()).unwrap())
                }
                Some("Receipt") => serde_json::to_value(serde_json::from_value::<Receipt>(doc.clone()).unwrap()),
                _ => continue,
            }
            .unwrap();
            // Round trip adds defaults; every field given in the example must come back as written.
            assert_subset(&doc, &back, &path.display().to_string());
        }
    }
}

/// Asserts that every value in `given` appears at the same place in `got` (numbers compared as f64).
fn assert_subset(given: &Value, got: &Value, at: &str) {
    match (given, got) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                assert_subset(v, b.get(k).unwrap_or(&Value::Null), &format!("{at}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{at}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_subset(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Number(a), Value::Number(b)) => assert_eq!(a.as_f64(), b.as_f64(), "{at}"),
        _ => assert_eq!(given, got, "{at}"),
    }
}

#[test]
fn the_example_app_resolves_every_strategy_and_peer_without_problems() {
    let ex = load_examples();
    let strategies: Vec<StrategyFacts> = ex.strategies.iter().map(StrategyFacts::from_strategy).collect();
    let names: BTreeSet<String> = ex.agents.iter().map(|a| a.metadata.name.clone().unwrap()).collect();
    let mut chosen = BTreeMap::new();
    for agent in &ex.agents {
        let facts = AgentFacts::from_agent(agent, BTreeSet::new());
        let check = check_agent(&facts, &names, &strategies, Some(ResourcePressure::Medium));
        assert!(check.problems.is_empty(), "{}: {:?}", facts.name, check.problems);
        chosen.insert(facts.name, check.strategy.unwrap_or_default());
    }
    let expected: BTreeMap<String, String> = [
        ("api", "web-tier"),
        ("cache", "data-tier"),
        ("db", "data-tier"),
        ("frontend", "web-tier"),
    ]
    .into_iter()
    .map(|(a, s)| (a.to_string(), s.to_string()))
    .collect();
    assert_eq!(chosen, expected);
}

/// Messages the apiserver itself writes for schema (non-CEL) violations.
const APISERVER_PHRASES: [&str; 7] = [
    "Unsupported value",
    "Required value",
    "Duplicate value",
    "in body should match",
    "in body should have at least",
    "in body must be of type",
    "in body should be greater than or equal to",
];

#[test]
fn every_invalid_example_names_a_message_its_crd_can_produce() {
    let files = yaml_files(&examples_dir().join("invalid"));
    assert!(
        files.len() >= 8,
        "expected the invalid examples of the issue, found {}",
        files.len()
    );
    let mut seen_kinds = BTreeSet::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# expect: <substring>`", path.display()))
            .trim()
            .to_string();
        let docs = documents(&path);
        assert_eq!(docs.len(), 1, "{}: one object per invalid example", path.display());
        let kind = docs[0]["kind"].as_str().unwrap().to_string();
        seen_kinds.insert(kind.clone());
        let mut messages = Vec::new();
        all_messages(&root_schema(&kind), &mut messages);
        let from_cel = messages.iter().any(|m| m.contains(&expect));
        let from_apiserver = APISERVER_PHRASES.iter().any(|p| expect.contains(p));
        assert!(
            from_cel || from_apiserver,
            "{}: no rule of {kind} produces {expect:?}",
            path.display()
        );
        assert!(
            expect.starts_with("spec.") || expect == IMMUTABLE_MESSAGE,
            "{}: expect must name the field",
            path.display()
        );
    }
    assert_eq!(
        seen_kinds,
        ["GeometricAgent", "MomConfig", "OrchestrationStrategy", "Receipt"]
            .into_iter()
            .map(str::to_string)
            .collect()
    );
}

#[test]
fn invalid_enum_values_are_rejected_by_the_rust_types_too() {
    for path in yaml_files(&examples_dir().join("invalid")) {
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.lines().next().unwrap_or_default().contains("Unsupported value") {
            continue;
        }
        let doc = documents(&path).remove(0);
        let result = match doc["kind"].as_str() {
            Some("MomConfig") => serde_json::from_value::<MomConfig>(doc).map(drop),
            Some("OrchestrationStrategy") => serde_json::from_value::<OrchestrationStrategy>(doc).map(drop),
            Some("GeometricAgent") => serde_json::from_value::<GeometricAgent>(doc).map(drop),
            other => panic!("{}: unexpected kind {other:?}", path.display()),
        };
        let err = result.expect_err(&path.display().to_string()).to_string();
        assert!(err.contains("unknown variant"), "{}: {err}", path.display());
    }
}

#[test]
fn the_receipt_edit_differs_from_the_valid_receipt_only_in_spec() {
    let original: Receipt =
        serde_json::from_value(documents(&examples_dir().join("receipt/receipt.yaml")).remove(0)).unwrap();
    let edited: Receipt =
        serde_json::from_value(documents(&examples_dir().join("invalid/receipt-edit.yaml")).remove(0)).unwrap();
    assert_eq!(
        original.metadata, edited.metadata,
        "the edit must target the same object"
    );
    assert_ne!(original.spec, edited.spec, "the edit must change the spec");
}

#[test]
fn receipts_and_agents_can_be_listed_by_field_selector() {
    let selectable = |kind: &str| -> Vec<String> {
        crd_json(kind)["spec"]["versions"][0]["selectableFields"]
            .as_array()
            .map(|fields| {
                fields
                    .iter()
                    .map(|f| f["jsonPath"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        selectable("Receipt"),
        vec![
            ".spec.action",
            ".spec.subject.kind",
            ".spec.subject.name",
            ".spec.subject.namespace"
        ]
    );
    assert_eq!(selectable("GeometricAgent"), vec![".spec.tenant", ".spec.workloadType"]);
    assert_eq!(selectable("OrchestrationStrategy"), vec![".spec.scaling.method"]);
}
