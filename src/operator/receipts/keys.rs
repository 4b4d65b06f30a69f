//! The writer's signing key: the Ed25519 seed in the Secret `<namespace>/mom-receipt-signing-key`
//! (generated from the OS's randomness when absent) and its public key, published in the ConfigMap
//! `<namespace>/mom-receipt-public-keys` that `mom verify --cluster` trusts by default.

use std::collections::BTreeMap;
use std::io::Read as _;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ObjectMeta, PostParams};

use super::*;
use crate::operator::store::{KEY_FIELD, KEY_SECRET, PUBLIC_KEYS_CONFIGMAP};
use crate::receipts::signing::Signer;

impl ReceiptWriter {
    pub(super) async fn signer(&self) -> Result<Signer, WriteError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let name = format!("{}/{KEY_SECRET}", self.namespace);
        let signer = match secrets.get_opt(KEY_SECRET).await? {
            Some(secret) => {
                let bytes = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(KEY_FIELD))
                    .ok_or_else(|| WriteError::Key(name.clone(), format!("has no data key {KEY_FIELD}")))?;
                let text = String::from_utf8_lossy(&bytes.0).trim().to_string();
                Signer::from_hex(&text).map_err(|e| WriteError::Key(name.clone(), e.to_string()))?
            }
            None => {
                let mut seed = [0u8; 32];
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut f| f.read_exact(&mut seed))
                    .map_err(|e| WriteError::Key(name.clone(), format!("cannot read randomness: {e}")))?;
                let signer = Signer::from_seed(seed);
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(KEY_SECRET.into()),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([(
                        KEY_FIELD.to_string(),
                        ByteString(signer.secret_hex().into_bytes()),
                    )])),
                    ..Default::default()
                };
                match secrets.create(&PostParams::default(), &secret).await {
                    Ok(_) => signer,
                    // Another replica generated it first: use theirs.
                    Err(kube::Error::Api(s)) if s.code == 409 => return Box::pin(self.signer()).await,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        self.publish_public_key(&signer).await?;
        Ok(signer)
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

    async fn publish_public_key(&self, signer: &Signer) -> Result<(), WriteError> {
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut data = maps
            .get_opt(PUBLIC_KEYS_CONFIGMAP)
            .await?
            .and_then(|c| c.data)
            .unwrap_or_default();
        if data.get(signer.key_id()).map(String::as_str) == Some(signer.public_hex().as_str()) {
            return Ok(());
        }
        data.insert(signer.key_id().to_string(), signer.public_hex());
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(PUBLIC_KEYS_CONFIGMAP.into()),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        let params = kube::api::PatchParams::apply("mom-operator").force();
        maps.patch(PUBLIC_KEYS_CONFIGMAP, &params, &kube::api::Patch::Apply(&cm))
            .await?;
        Ok(())
    }
}
