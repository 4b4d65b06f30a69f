//! The chart's ConfigMap policy, against the real apiserver: the operator's ClusterRole must
//! grant ConfigMap `create` cluster-wide (tenant bundles go into every namespace holding
//! receipts; RBAC cannot limit create by name), and the ValidatingAdmissionPolicy
//! `<release>-mom-operator-configmaps` takes every other name back. Acting as the operator's
//! ServiceAccount with the chart's own RBAC: `mom-receipt-checkpoints` may be created and
//! applied in a tenant namespace, `mom-receipt-public-keys`, `mom-receipt-journal` and
//! `mom-failover-history` in the release namespace; any other ConfigMap (or those outside the
//! release namespace) is
//! rejected with a message naming it and the allowed names. Other users are not affected, and
//! without the policy's binding the same RBAC would have allowed the write.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use mom::operator::store::BUNDLE_CONFIGMAP;
use mom::operator::store::PUBLIC_KEYS_CONFIGMAP;

use mom::operator::failover_plan::HISTORY_CONFIGMAP;
use mom::operator::store::JOURNAL_CONFIGMAP;

/// The chart's operator ServiceAccount, RBAC and ConfigMap policy for release `release` in `namespace`.
fn render(release: &str, namespace: &str) -> String {
    common::render_operator_rbac_with(release, namespace, "templates/configmap-policy.yaml")
}

/// Objects applied from a rendering, and a scratch folder; both removed (cluster-scoped objects
/// included) when dropped, however the test ends.
struct Applied(String, std::path::PathBuf);

impl Drop for Applied {
    fn drop(&mut self) {
        let _ = common::kubectl(
            &["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
            Some(&self.0),
        );
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn config_map(name: Option<&str>, generate: Option<&str>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: name.map(str::to_string),
            generate_name: generate.map(str::to_string),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
        ..Default::default()
    }
}

/// Creates a ConfigMap; Ok or the apiserver's (code, message).
async fn create(client: &kube::Client, ns: &str, cm: &ConfigMap, dry_run: bool) -> Result<(), (u16, String)> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let params = PostParams {
        dry_run,
        ..Default::default()
    };
    match api.create(&params, cm).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) => Err((s.code, s.message)),
        Err(e) => panic!("creating a ConfigMap in {ns}: {e}"),
    }
}

#[test]
fn the_policy_allows_exactly_the_configmap_names_the_operator_writes() {
    let rendered = render("mom", "mom-system");
    let policy = rendered
        .split("\n---")
        .find(|d| d.contains("kind: ValidatingAdmissionPolicy\n"))
        .expect("the chart renders the ConfigMap policy");
    let expression = policy
        .split("validations:")
        .nth(1)
        .and_then(|v| v.split("messageExpression").next())
        .unwrap();
    assert!(
        expression.contains(&format!("request.name in ['{BUNDLE_CONFIGMAP}']")),
        "{expression}"
    );
    assert!(
        expression.contains(&format!(
            "request.namespace == 'mom-system' && request.name in ['{PUBLIC_KEYS_CONFIGMAP}','{JOURNAL_CONFIGMAP}','{HISTORY_CONFIGMAP}']"
        )),
        "{expression}"
    );
    assert!(
        policy.contains("request.userInfo.username == 'system:serviceaccount:mom-system:mom-operator'"),
        "{policy}"
    );
    let (ok, out, err) = common::helm(&[
        "template",
        "mom",
        &common::chart_dir(),
        "--set",
        "configMapProtection.enabled=false",
        "--show-only",
        "templates/configmap-policy.yaml",
    ]);
    assert!(!ok && out.is_empty(), "disabled, the policy still renders: {out}");
    assert!(err.contains("could not find template"), "{err}");
}

#[tokio::test]
async fn the_operator_serviceaccount_may_write_only_the_configmaps_mom_owns() {
    let home = common::TestNamespace::new("cmpolicy").await;
    let tenant = common::TestNamespace::new("cmtenant").await;
    let release = home.name.clone();
    let rendered = render(&release, &home.name);
    let dir = std::env::temp_dir().join(format!("mom-cmpolicy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let applied = Applied(rendered.clone(), dir.clone());
    let (ok, _, err) = common::kubectl(&["apply", "-f", "-"], Some(&applied.0));
    assert!(ok, "applying the chart's RBAC and policy: {err}");
    let full = format!("{release}-mom");
    let policy = format!("{full}-operator-configmaps");
    let sa = format!("{full}-operator");
    let operator = common::client_for(&common::service_account_kubeconfig(&dir, &home.name, &sa)).await;
    let admin = common::client().await;

    // A ConfigMap MOM does not own, in a tenant namespace: rejected, naming it and the allowed names.
    let (code, denial) = common::eventually("the policy to be enforced", Duration::from_secs(30), || {
        let operator = operator.clone();
        let ns = tenant.name.clone();
        async move {
            create(&operator, &ns, &config_map(Some("not-mom"), None), true)
                .await
                .err()
                .filter(|(_, message)| message.contains("operator-configmaps"))
        }
    })
    .await;
    assert_eq!(code, 403, "{denial}");
    let (code, denial) = create(&operator, &tenant.name, &config_map(Some("not-mom"), None), false)
        .await
        .expect_err("the operator created ConfigMap not-mom");
    assert_eq!(code, 403, "{denial}");
    for want in [
        policy.as_str(),
        &format!("may not write ConfigMap {}/not-mom", tenant.name),
        "may write only mom-receipt-checkpoints (any namespace)",
        &format!(
            "mom-receipt-public-keys, mom-receipt-journal, mom-failover-history (namespace {})",
            home.name
        ),
    ] {
        assert!(denial.contains(want), "{want:?} not in: {denial}");
    }
    println!("rejected: {denial}");
    // Generated names (the apiserver names the object before admission) and MOM's
    // operator-namespace names outside the release namespace too.
    let (_, denial) = create(&operator, &tenant.name, &config_map(None, Some("mom-")), false)
        .await
        .expect_err("the operator created a ConfigMap with a generated name");
    assert!(
        denial.contains(&format!("may not write ConfigMap {}/mom-", tenant.name)),
        "{denial}"
    );
    for name in [PUBLIC_KEYS_CONFIGMAP, JOURNAL_CONFIGMAP, HISTORY_CONFIGMAP] {
        let (_, denial) = create(&operator, &tenant.name, &config_map(Some(name), None), false)
            .await
            .expect_err("an operator-namespace ConfigMap in a tenant namespace");
        assert!(
            denial.contains(&format!("may not write ConfigMap {}/{name}", tenant.name)),
            "{denial}"
        );
    }

    // What the operator does write: the bundle (created, then server-side applied as the
    // operator does), the public keys and the journal in its own namespace.
    create(
        &operator,
        &tenant.name,
        &config_map(Some(BUNDLE_CONFIGMAP), None),
        false,
    )
    .await
    .unwrap_or_else(|e| panic!("the bundle ConfigMap was rejected: {e:?}"));
    let apply = PatchParams::apply("mom-operator").force();
    let mut bundle = config_map(Some(BUNDLE_CONFIGMAP), None);
    bundle.data = Some(BTreeMap::from([("checkpoint.json".to_string(), "{}".to_string())]));
    Api::<ConfigMap>::namespaced(operator.clone(), &tenant.name)
        .patch(BUNDLE_CONFIGMAP, &apply, &Patch::Apply(&bundle))
        .await
        .expect("applying the bundle ConfigMap");
    Api::<ConfigMap>::namespaced(operator.clone(), &home.name)
        .patch(
            PUBLIC_KEYS_CONFIGMAP,
            &apply,
            &Patch::Apply(&config_map(Some(PUBLIC_KEYS_CONFIGMAP), None)),
        )
        .await
        .expect("applying the public keys ConfigMap in the release namespace");
    create(&operator, &home.name, &config_map(Some(JOURNAL_CONFIGMAP), None), false)
        .await
        .unwrap_or_else(|e| panic!("the journal ConfigMap was rejected: {e:?}"));
    // The failover planner's counts: created, then merge-patched, as the planner does.
    create(&operator, &home.name, &config_map(Some(HISTORY_CONFIGMAP), None), false)
        .await
        .unwrap_or_else(|e| panic!("the failover history ConfigMap was rejected: {e:?}"));
    Api::<ConfigMap>::namespaced(operator.clone(), &home.name)
        .patch(
            HISTORY_CONFIGMAP,
            &PatchParams::apply("mom-operator"),
            &Patch::Merge(serde_json::json!({"data": {"counts.json": "{}"}})),
        )
        .await
        .expect("patching the failover history ConfigMap in the release namespace");

    // Nobody else is matched.
    create(&admin, &tenant.name, &config_map(Some("not-mom"), None), false)
        .await
        .unwrap_or_else(|e| panic!("an admin was stopped by the operator's policy: {e:?}"));

    // The policy is what stops the operator: without its binding, the chart's RBAC allows it.
    let (ok, _, err) = common::kubectl(&["delete", "validatingadmissionpolicybinding", &policy], None);
    assert!(ok, "{err}");
    common::eventually(
        "the write to be allowed without the policy",
        Duration::from_secs(30),
        || {
            let operator = operator.clone();
            let ns = tenant.name.clone();
            async move {
                create(&operator, &ns, &config_map(Some("not-mom-either"), None), true)
                    .await
                    .ok()
            }
        },
    )
    .await;
    drop(applied);
}
