//! `mom verify --tenant-bundle NAMESPACE|FILE`: a tenant checks its own receipts against the
//! operator's latest signed checkpoint, from the bundle the operator publishes in the tenant's
//! namespace (ConfigMap `mom-receipt-checkpoints`), without reading anyone else's receipts.
//!
//! Each proven receipt must be a leaf of the signed tree head; with live receipts (the
//! namespace's Receipt objects, or `--file`) every difference is named: edited, missing,
//! not checkpointed. Prints a table or one JSON object; exits 1 on any problem.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use mom::receipts::Receipt;
use mom::receipts::tenant::{BundleReport, TenantBundle, parse_bundle, verify_bundles};

use super::verify_args::{Args, Format, load_keys, read_receipts};

/// The bundles (by data key) and the published keys of a `mom-receipt-checkpoints` ConfigMap.
fn from_configmap_data(data: &BTreeMap<String, String>) -> anyhow::Result<(Vec<TenantBundle>, Vec<String>)> {
    let mut bundles = Vec::new();
    for (key, text) in data {
        if key.starts_with("tenant.") && key.ends_with(".json") {
            bundles.push(parse_bundle(text).with_context(|| format!("ConfigMap key {key}"))?);
        }
    }
    let keys = data
        .get("public-keys")
        .map(|k| {
            k.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Ok((bundles, keys))
}

fn from_file(path: &Path) -> anyhow::Result<(Vec<TenantBundle>, Vec<String>)> {
    let text = mom::bounded_input::read_to_string(path, mom::bounded_input::MAX_DOCUMENT_BYTES)
        .with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    if value.get("format").is_some() {
        return Ok((
            vec![parse_bundle(&text).with_context(|| path.display().to_string())?],
            Vec::new(),
        ));
    }
    match value.get("data") {
        Some(data) => {
            let data: BTreeMap<String, String> = serde_json::from_value(data.clone())
                .with_context(|| format!("{}: data is not a ConfigMap's", path.display()))?;
            from_configmap_data(&data)
        }
        None => bail!(
            "{}: neither a tenant bundle (no \"format\") nor a ConfigMap (no \"data\")",
            path.display()
        ),
    }
}

/// Bundles, published keys and the Receipts stored in `namespace`.
#[cfg(feature = "operator")]
fn from_namespace(namespace: &str) -> anyhow::Result<(Vec<TenantBundle>, Vec<String>, Vec<Receipt>)> {
    use k8s_openapi::api::core::v1::ConfigMap;
    use mom::operator::store::BUNDLE_CONFIGMAP;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = kube::Client::try_default().await.context("connecting to the cluster")?;
        let maps: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), namespace);
        let data = maps
            .get_opt(BUNDLE_CONFIGMAP)
            .await
            .with_context(|| format!("reading {namespace}/{BUNDLE_CONFIGMAP}"))?
            .with_context(|| {
                format!("{namespace}/{BUNDLE_CONFIGMAP} does not exist (no checkpoint covers this namespace yet?)")
            })?
            .data
            .unwrap_or_default();
        let (bundles, keys) = from_configmap_data(&data)?;
        let api: kube::Api<mom::operator::crd::Receipt> = kube::Api::namespaced(client, namespace);
        let mut live = Vec::new();
        for obj in api.list(&Default::default()).await?.items {
            let name = obj.metadata.name.clone().unwrap_or_default();
            let value = serde_json::to_value(&obj.spec)?;
            live.push(serde_json::from_value::<Receipt>(value).with_context(|| format!("receipt {namespace}/{name}"))?);
        }
        live.sort_by_key(|r| r.sequence);
        Ok((bundles, keys, live))
    })
}

#[cfg(not(feature = "operator"))]
fn from_namespace(namespace: &str) -> anyhow::Result<(Vec<TenantBundle>, Vec<String>, Vec<Receipt>)> {
    bail!(
        "--tenant-bundle {namespace}: no such file, and reading a namespace needs a build with the `operator` feature"
    )
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let source = args.tenant_bundle.clone().unwrap_or_default();
    let path = Path::new(&source);
    let (mut bundles, published, mut live) = if path.is_file() {
        let (b, k) = from_file(path)?;
        (b, k, None)
    } else {
        let (b, k, l) = from_namespace(&source)?;
        (b, k, Some(l))
    };
    if let Some(f) = &args.file {
        live = Some(read_receipts(f)?);
    }
    let all_bundles = bundles.clone();
    if let Some(t) = &args.tenant {
        bundles.retain(|b| &b.tenant == t);
        if bundles.is_empty() {
            bail!("--tenant {t}: {source} holds no bundle of that tenant");
        }
    }
    if bundles.is_empty() {
        bail!("{source}: holds no tenant bundle");
    }
    let trusted_from_bundle = args.public_keys.is_empty();
    let key_sources = if trusted_from_bundle {
        published
    } else {
        args.public_keys.clone()
    };
    if key_sources.is_empty() {
        bail!("give a trusted key with --public-key FILE|HEX (none published with the bundle)");
    }
    let keys = load_keys(&key_sources)?;
    // Every tenant of the ConfigMap takes part (one tenant's receipts are not another's
    // problem); --tenant only selects which reports are shown.
    let mut reports: Vec<BundleReport> = verify_bundles(&all_bundles, &keys, live.as_deref());
    if let Some(t) = &args.tenant {
        reports.retain(|r| &r.tenant == t);
    }
    let ok = reports.iter().all(BundleReport::is_ok);
    match args.format {
        Format::Json => {
            let out = serde_json::json!({
                "tenantBundle": source,
                "ok": ok,
                "keysFromBundle": trusted_from_bundle,
                "reports": reports,
            });
            println!("{}", serde_json::to_string(&out)?);
        }
        Format::Table => {
            println!("bundle       {source}");
            if trusted_from_bundle {
                println!("keys         trusting the keys published with the bundle (pin one with --public-key)");
            }
            for r in &reports {
                println!(
                    "tenant       {} in {}: checkpoint {} (tree size {}), {} receipts proven, {} omitted, {} live compared",
                    r.tenant, r.namespace, r.checkpoint_sequence, r.tree_size, r.verified, r.omitted, r.live_checked
                );
            }
            let problems: Vec<_> = reports
                .iter()
                .flat_map(|r| r.problems.iter().map(move |p| (r, p)))
                .collect();
            if !problems.is_empty() {
                println!();
                println!("{:<10} {:<18} {:<16} DETAIL", "SEQUENCE", "PROBLEM", "TENANT");
                for (r, p) in problems {
                    println!("{:<10} {:<18} {:<16} {}", p.sequence, p.kind, r.tenant, p.detail);
                }
            }
            println!();
            println!("result       {}", if ok { "OK" } else { "FAILED" });
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
