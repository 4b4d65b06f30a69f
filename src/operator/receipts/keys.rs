//! The writer's signing key: the Ed25519 seed in the Secret the MomConfig `default` names in
//! `spec.verification.signingKey` (default `<operator namespace>/mom-receipt-signing-key`, key
//! `ed25519-seed`; generated from the OS's randomness when the Secret is absent), its public key
//! published in the ConfigMap `<namespace>/mom-receipt-public-keys` that `mom verify --cluster`
//! trusts by default, and the hand-over to a new key when the referenced key changes.
//!
//! - Key material: 64 hex digits (what the operator generates) or the 32 raw seed bytes. A
//!   Secret without the key, or with anything else under it, is an error naming the Secret, the
//!   key and the problem: nothing is signed (at `full_audit` the actions wait), the MomConfig gets
//!   `SigningKeyReady=False` and a Warning Event.
//! - Rotation: every key ever used stays published (key id → public key) beside the others, with
//!   an annotation `mom.hypersync.io/key-source-<key id>` naming the Secret it came from. When
//!   the chain's current key (see `receipts::rotation::key_after`) is not the referenced one, the
//!   writer finds the outgoing key (held in memory, or read again from the Secret it came from)
//!   and seals a `receipts.key_rotation` hand-over receipt signed by it before anything is signed
//!   with the new key. Without the outgoing key nothing is signed (the hand-over cannot be
//!   recorded), and the condition says which key and Secret are missing.

use std::collections::BTreeMap;
use std::io::Read as _;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ObjectMeta, PostParams};

use super::*;
use crate::operator::crd::MomConfig;
use crate::operator::crd::momconfig::{ACTIVE_NAME, SecretKeyRef};
use crate::operator::store::{KEY_FIELD, KEY_SECRET, PUBLIC_KEYS_CONFIGMAP};
use crate::receipts::signing::{Signer, TrustedKeys};

/// Annotation prefix on `mom-receipt-public-keys`: `<prefix><key id>` = `namespace/name/key`.
pub const KEY_SOURCE_ANNOTATION: &str = "mom.hypersync.io/key-source-";

/// Where a signing key is read from: a key in a Secret.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeySource {
    pub namespace: String,
    pub name: String,
    pub key: String,
}

impl KeySource {
    /// The default: `<operator namespace>/mom-receipt-signing-key`, key `ed25519-seed`.
    pub fn default_in(operator_namespace: &str) -> Self {
        KeySource {
            namespace: operator_namespace.to_string(),
            name: KEY_SECRET.to_string(),
            key: KEY_FIELD.to_string(),
        }
    }

    /// The source `spec.verification.signingKey` names (the operator's namespace when the ref
    /// has none), or the default when the field is unset.
    pub fn from_ref(reference: Option<&SecretKeyRef>, operator_namespace: &str) -> Self {
        match reference {
            None => Self::default_in(operator_namespace),
            Some(r) => KeySource {
                namespace: r
                    .namespace
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| operator_namespace.to_string()),
                name: r.name.clone(),
                key: r.key.clone(),
            },
        }
    }

    fn annotation_value(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.name, self.key)
    }

    fn parse_annotation(value: &str) -> Option<Self> {
        let mut parts = value.splitn(3, '/');
        let (namespace, name, key) = (parts.next()?, parts.next()?, parts.next()?);
        (!namespace.is_empty() && !name.is_empty() && !key.is_empty()).then(|| KeySource {
            namespace: namespace.into(),
            name: name.into(),
            key: key.into(),
        })
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret {}/{} key {:?}", self.namespace, self.name, self.key)
    }
}

/// The signer in the bytes stored under a Secret's key: 64 hex digits (surrounding whitespace
/// ignored) or the 32 raw seed bytes. `Err` says what is wrong, without echoing the bytes.
pub fn parse_seed(bytes: &[u8]) -> Result<Signer, String> {
    if bytes.len() == 32 {
        return Signer::from_bytes(bytes).map_err(|e| e.to_string());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| {
        format!(
            "holds {} bytes that are neither 64 hex digits nor a 32-byte Ed25519 seed",
            bytes.len()
        )
    })?;
    let t = text.trim();
    if t.len() != 64 || !t.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "holds {} characters that are not 64 hex digits (nor {} bytes a 32-byte Ed25519 seed)",
            t.chars().count(),
            bytes.len()
        ));
    }
    Signer::from_hex(t).map_err(|e| e.to_string())
}

/// What the MomConfig `SigningKeyReady` condition reports: `Ok(what is in use)` or `Err(why not)`.
pub type KeyState = Result<String, String>;

impl ReceiptWriter {
    /// The key source the MomConfig `default` names (the default when it or the field is absent).
    pub async fn desired_key_source(&self) -> Result<KeySource, WriteError> {
        Ok(self.desired_key_config().await?.0)
    }

    /// The key source and the receipt level of the MomConfig `default` (defaults when absent).
    async fn desired_key_config(&self) -> Result<(KeySource, VerificationLevel), WriteError> {
        let api: Api<MomConfig> = Api::all(self.client.clone());
        let verification = match api.get_opt(ACTIVE_NAME).await {
            Ok(cfg) => cfg.map(|c| c.spec.verification).unwrap_or_default(),
            // The CRD may not be installed (yet).
            Err(kube::Error::Api(s)) if s.code == 404 => Default::default(),
            Err(e) => return Err(e.into()),
        };
        Ok((
            KeySource::from_ref(verification.signing_key.as_ref(), &self.namespace),
            verification.level,
        ))
    }

    /// Reads the signer at `source`; when the Secret does not exist and `generate` is set,
    /// creates it with a new seed. `Ok(None)`: absent and not generated.
    async fn read_signer(&self, source: &KeySource, generate: bool) -> Result<Option<Signer>, WriteError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &source.namespace);
        let name = format!("{}/{}", source.namespace, source.name);
        match secrets.get_opt(&source.name).await? {
            Some(secret) => {
                let data = secret.data.unwrap_or_default();
                let Some(bytes) = data.get(&source.key) else {
                    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
                    return Err(WriteError::Key(
                        name,
                        format!(
                            "has no data key {:?} (it has: {}); nothing is signed until it does",
                            source.key,
                            if keys.is_empty() {
                                "none".to_string()
                            } else {
                                keys.join(", ")
                            }
                        ),
                    ));
                };
                parse_seed(&bytes.0)
                    .map(Some)
                    .map_err(|why| WriteError::Key(name, format!("key {:?} {why}", source.key)))
            }
            None if !generate => Ok(None),
            None => {
                let mut seed = [0u8; 32];
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut f| f.read_exact(&mut seed))
                    .map_err(|e| WriteError::Key(name.clone(), format!("cannot read randomness: {e}")))?;
                let signer = Signer::from_seed(seed);
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(source.name.clone()),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([(
                        source.key.clone(),
                        ByteString(signer.secret_hex().into_bytes()),
                    )])),
                    ..Default::default()
                };
                match secrets.create(&PostParams::default(), &secret).await {
                    Ok(_) => {
                        tracing::info!(key_id = signer.key_id(), %source, "receipt signing key generated");
                        Ok(Some(signer))
                    }
                    // Another replica generated it first: use theirs.
                    Err(kube::Error::Api(s)) if s.code == 409 => Box::pin(self.read_signer(source, false)).await,
                    Err(e) => Err(WriteError::Key(name, format!("cannot create it: {e}"))),
                }
            }
        }
    }

    /// The signer the MomConfig names, generated when its Secret is absent, published, and
    /// remembered (for a later hand-over); the outcome is kept for the `SigningKeyReady`
    /// condition.
    pub(super) async fn signer(&self) -> Result<Signer, WriteError> {
        let source = self.desired_key_source().await?;
        let signer = match self.read_signer(&source, true).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                let e = WriteError::Key(
                    format!("{}/{}", source.namespace, source.name),
                    "was deleted while being read".into(),
                );
                self.note_key(Err(e.to_string()));
                return Err(e);
            }
            Err(e) => {
                self.note_key(Err(e.to_string()));
                return Err(e);
            }
        };
        self.publish_public_key(&signer, &source).await?;
        if let Ok(mut held) = self.held_keys.lock() {
            held.insert(signer.key_id().to_string(), signer.clone());
        }
        self.note_key(Ok(format!(
            "receipts are signed with key {} from {source}",
            signer.key_id()
        )));
        Ok(signer)
    }

    pub(super) fn note_key(&self, state: KeyState) {
        if let Err(why) = &state {
            tracing::warn!(error = %why, "receipt signing key unavailable: nothing is signed");
        }
        if let Ok(mut k) = self.key_state.lock() {
            *k = Some(state);
        }
    }

    /// The signing key's state as of the writer's last look (`None` before the first).
    pub fn key_state(&self) -> Option<KeyState> {
        self.key_state.lock().ok().and_then(|k| k.clone())
    }

    /// The key the chain is signed with now (`key_id`), to hand the chain over from: held in
    /// memory, else read again from the Secret it was published from (or the default Secret).
    pub(super) async fn outgoing_signer(&self, key_id: &str, incoming: &Signer) -> Result<Signer, WriteError> {
        if let Some(s) = self.held_keys.lock().ok().and_then(|h| h.get(key_id).cloned()) {
            return Ok(s);
        }
        let mut sources = vec![KeySource::default_in(&self.namespace)];
        if let Some(recorded) = self
            .published_annotations()
            .await?
            .get(&format!("{KEY_SOURCE_ANNOTATION}{key_id}"))
            .and_then(|v| KeySource::parse_annotation(v))
        {
            sources.insert(0, recorded);
        }
        sources.dedup();
        for source in &sources {
            // A source that cannot be read now is no outgoing key; keep looking.
            if let Ok(Some(s)) = self.read_signer(source, false).await
                && s.key_id() == key_id
            {
                return Ok(s);
            }
        }
        let looked: Vec<String> = sources.iter().map(ToString::to_string).collect();
        Err(WriteError::KeyHandover(format!(
            "the receipt chain is signed with key {key_id}, which is no longer readable (looked in {}); the hand-over to key {} cannot be recorded, so nothing is signed: point spec.verification.signingKey back at the Secret holding key {key_id} (or restore it there) until the hand-over receipt is written",
            looked.join(", "),
            incoming.key_id()
        )))
    }

    /// Seals and stores the hand-over from the builder's key to `to` (signed by the outgoing
    /// key, in the operator's namespace), then signs everything after it with `to`.
    pub(super) async fn hand_over(&self, builder: &mut ChainBuilder, to: &Signer) -> Result<(), WriteError> {
        let from = builder.signer().key_id().to_string();
        let receipt = crate::receipts::rotation::prepare_handover(builder, to, checkpoint_subject(), now_rfc3339())?;
        self.create_receipt(&receipt, &self.namespace).await?;
        builder.commit(&receipt)?;
        builder.set_signer(to.clone());
        self.confirmed(&receipt);
        tracing::info!(
            sequence = receipt.sequence,
            from = %from,
            to = to.key_id(),
            "receipt signing key handed over"
        );
        Ok(())
    }

    /// Leader housekeeping (every few seconds): reads the key the MomConfig names and, when it
    /// is not the key the loaded chain signs with, loads the chain again (which hands it over).
    /// A chain not loaded yet in this term is loaded now unless the level is `none` (so a
    /// pending hand-over is written, or its problem reported, without waiting for an action).
    /// A key that cannot be read drops the chain: nothing is signed with a key the
    /// configuration no longer names.
    pub async fn sync_signing_key(&self) -> Result<(), WriteError> {
        // Read before taking the chain lock: writers are not held up by these reads.
        let (source, level) = self.desired_key_config().await?;
        let desired = self.read_signer(&source, true).await;
        let mut guard = self.chain.lock().await;
        let desired = match desired {
            Ok(s) => s,
            Err(e) => {
                self.note_key(Err(e.to_string()));
                *guard = None;
                return Err(e);
            }
        };
        match guard.as_ref() {
            Some(b) if desired.as_ref().is_some_and(|d| d.key_id() == b.signer().key_id()) => return Ok(()),
            Some(b) => {
                tracing::info!(
                    from = b.signer().key_id(),
                    to = ?desired.as_ref().map(Signer::key_id),
                    %source,
                    "the receipt signing key changed; handing the chain over"
                );
                if let Ok(mut held) = self.held_keys.lock() {
                    let s = b.signer().clone();
                    held.insert(s.key_id().to_string(), s);
                }
            }
            None if level == VerificationLevel::None => {
                if let Some(s) = &desired {
                    self.note_key(Ok(format!("receipts are signed with key {} from {source}", s.key_id())));
                }
                return Ok(());
            }
            None => {}
        }
        *guard = None;
        match self.load().await {
            Ok(b) => {
                *guard = Some(b);
                Ok(())
            }
            Err(e) => {
                self.note_failure(&e);
                Err(e)
            }
        }
    }

    /// The public keys (hex) published in `mom-receipt-public-keys`.
    pub(super) async fn published_keys(&self) -> Result<Vec<String>, WriteError> {
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        Ok(maps
            .get_opt(PUBLIC_KEYS_CONFIGMAP)
            .await?
            .and_then(|c| c.data)
            .map(|d| d.into_values().collect())
            .unwrap_or_default())
    }

    /// The published keys and `signer` as a trust set.
    pub(super) async fn trust_set(&self, signer: &Signer) -> Result<TrustedKeys, WriteError> {
        let mut keys = TrustedKeys::new();
        keys.add(signer.public_key());
        for hex in self.published_keys().await? {
            if let Ok(key) = crate::receipts::signing::parse_public_key(&hex) {
                keys.add(key);
            }
        }
        Ok(keys)
    }

    async fn published_annotations(&self) -> Result<BTreeMap<String, String>, WriteError> {
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        Ok(maps
            .get_opt(PUBLIC_KEYS_CONFIGMAP)
            .await?
            .and_then(|c| c.metadata.annotations)
            .unwrap_or_default())
    }

    /// Publishes `signer`'s public key beside the others (never removing one: old receipts stay
    /// verifiable) and records the Secret it came from.
    async fn publish_public_key(&self, signer: &Signer, source: &KeySource) -> Result<(), WriteError> {
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let existing = maps.get_opt(PUBLIC_KEYS_CONFIGMAP).await?;
        let mut data = existing.as_ref().and_then(|c| c.data.clone()).unwrap_or_default();
        let mut annotations: BTreeMap<String, String> = existing
            .as_ref()
            .and_then(|c| c.metadata.annotations.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k.starts_with(KEY_SOURCE_ANNOTATION))
            .collect();
        let annotation = format!("{KEY_SOURCE_ANNOTATION}{}", signer.key_id());
        if data.get(signer.key_id()).map(String::as_str) == Some(signer.public_hex().as_str())
            && annotations.get(&annotation) == Some(&source.annotation_value())
        {
            return Ok(());
        }
        data.insert(signer.key_id().to_string(), signer.public_hex());
        annotations.insert(annotation, source.annotation_value());
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(PUBLIC_KEYS_CONFIGMAP.into()),
                annotations: Some(annotations),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        let params = kube::api::PatchParams::apply("mom-operator").force();
        maps.patch(PUBLIC_KEYS_CONFIGMAP, &params, &kube::api::Patch::Apply(&cm))
            .await?;
        tracing::info!(key_id = signer.key_id(), %source, "receipt public key published");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_is_read_from_hex_or_raw_bytes_and_anything_else_is_named() {
        let s = Signer::from_seed([4; 32]);
        assert_eq!(parse_seed(s.secret_hex().as_bytes()).unwrap().key_id(), s.key_id());
        assert_eq!(
            parse_seed(format!("{}\n", s.secret_hex()).as_bytes()).unwrap().key_id(),
            s.key_id()
        );
        assert_eq!(parse_seed(&[4; 32]).unwrap().key_id(), s.key_id());
        let short = parse_seed(b"abcd").unwrap_err();
        assert!(
            short.contains("4 characters") && short.contains("64 hex digits"),
            "{short}"
        );
        let binary = parse_seed(&[0xff; 31]).unwrap_err();
        assert!(binary.contains("31 bytes"), "{binary}");
        assert!(parse_seed(&"z".repeat(64).into_bytes()).is_err());
    }

    #[test]
    fn an_unset_ref_is_the_default_secret_and_a_ref_without_namespace_is_the_operators() {
        assert_eq!(
            KeySource::from_ref(None, "ops"),
            KeySource {
                namespace: "ops".into(),
                name: "mom-receipt-signing-key".into(),
                key: "ed25519-seed".into()
            }
        );
        let r = SecretKeyRef {
            namespace: None,
            name: "k2".into(),
            key: "seed".into(),
        };
        assert_eq!(KeySource::from_ref(Some(&r), "ops").namespace, "ops");
        let r = SecretKeyRef {
            namespace: Some("vault".into()),
            ..r
        };
        let source = KeySource::from_ref(Some(&r), "ops");
        assert_eq!(source.namespace, "vault");
        assert_eq!(KeySource::parse_annotation(&source.annotation_value()), Some(source));
        assert_eq!(KeySource::parse_annotation("a/b"), None);
    }
}
