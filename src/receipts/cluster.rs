//! Cluster checkpoints over several receipt chains, one per shard of a sharded control plane:
//! every shard's head, countersigned by every shard, so that a verifier holding the chains finds
//! a chain that is missing, one that is not listed, one cut short, and one that forked from
//! what was signed; and the ownership check that no agent was acted on by two shards in one term.
//!
//! A checkpoint is `{epoch, prev, heads}` with `heads` sorted by shard name, each
//! `{shard, size, headHash, keyId}` (`size` receipts, the last with hash `headHash`, signed by
//! `keyId`). Its digest is SHA-256 of that object's canonical JSON (`receipts::canonical`);
//! `prev` is the previous checkpoint's digest ([`GENESIS_PREV_HASH`] for epoch 0). Each listed
//! shard signs `"mom-cluster-checkpoint-v1\0" ‖ digest` with the key its head names
//! ([`super::signing::cluster_checkpoint_message`]). Pure: no clock, no I/O; sorted maps.
//!
//! Nothing in the operator writes per-shard chains yet (`spec.mode` acts as `centralized`);
//! this is the format and the checks the sharded modes are to use.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::signing::{Signer, TrustedKeys, cluster_checkpoint_message};
use super::{GENESIS_PREV_HASH, Receipt, canonical};

/// The decision field a sharded writer puts in every receipt about an agent: the owner term
/// (epoch) under which it acted. Receipts without it are not part of the ownership check.
pub const OWNER_EPOCH_FIELD: &str = "ownerEpoch";

/// One shard's chain head as signed in a cluster checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShardHead {
    pub shard: String,
    /// Receipts in the chain (the head's sequence + 1).
    pub size: u64,
    /// Hex hash of the receipt at `size − 1`.
    pub head_hash: String,
    /// The key that signed that receipt, and that signs this shard's countersignature.
    pub key_id: String,
}

/// A shard's signature over the checkpoint's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShardSignature {
    pub shard: String,
    pub signature: String,
}

/// A cluster checkpoint: the heads of every shard's chain and every shard's countersignature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterCheckpoint {
    pub epoch: u64,
    /// Hex digest of the previous cluster checkpoint.
    pub prev: String,
    /// Sorted by shard, one per shard.
    pub heads: Vec<ShardHead>,
    pub signatures: Vec<ShardSignature>,
}

/// Errors building a checkpoint (the verifier reports [`ClusterProblem`]s instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("shard {shard:?}: its chain is empty, so it has no head to sign")]
    EmptyChain { shard: String },
    #[error("shard {0:?} is listed twice")]
    DuplicateShard(String),
    #[error("no shards: a cluster checkpoint lists at least one chain")]
    NoShards,
    #[error("shard {shard:?}: the signer's key {signer} is not the head's key {head}")]
    WrongKey {
        shard: String,
        signer: String,
        head: String,
    },
    #[error("shard {0:?} is not listed in this checkpoint")]
    NotListed(String),
    #[error("canonical JSON: {0}")]
    Canonical(String),
}

/// What the verifier found wrong; each names the shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterProblem {
    /// A shard is listed twice, or the heads are not sorted (the digest would be ambiguous).
    Malformed { message: String },
    /// A listed shard did not countersign.
    Unsigned { shard: String },
    /// A countersignature does not verify with the key its shard's head names, or that key is
    /// not trusted.
    BadSignature { shard: String, key_id: String },
    /// A signature from a shard the checkpoint does not list.
    ForeignSignature { shard: String },
    /// A listed shard whose chain the verifier was not given.
    MissingChain { shard: String },
    /// A chain the verifier holds that the checkpoint does not list.
    Unlisted { shard: String },
    /// The chain held is shorter than the size signed (receipts after the signed head's
    /// position are gone).
    Truncated { shard: String, signed: u64, held: u64 },
    /// The receipt at the signed head's position has another hash: the chain forked or was
    /// rewritten after the checkpoint.
    Forked {
        shard: String,
        sequence: u64,
        signed: String,
        found: String,
    },
    /// The chain held no longer has the receipt at the signed position (pruned by retention):
    /// the link cannot be checked.
    HeadNotHeld { shard: String, sequence: u64 },
    /// Successive checkpoints: `prev` is not the previous digest or the epoch is not the next.
    BrokenLink { epoch: u64, message: String },
    /// Successive checkpoints: a shard listed before is missing, or its chain shrank.
    Regressed { shard: String, message: String },
}

/// Problems found and what was checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterReport {
    pub shards: usize,
    pub signatures_ok: usize,
    pub problems: Vec<ClusterProblem>,
}

impl ClusterReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The head of `chain` (in sequence order) for shard `shard`.
pub fn head_of(shard: &str, chain: &[Receipt]) -> Result<ShardHead, ClusterError> {
    let last = chain
        .last()
        .ok_or_else(|| ClusterError::EmptyChain { shard: shard.into() })?;
    Ok(ShardHead {
        shard: shard.into(),
        size: last.sequence + 1,
        head_hash: last.hash.clone(),
        key_id: last.key_id.clone(),
    })
}

/// SHA-256 of the canonical JSON of `{epoch, heads, prev}`.
pub fn digest(epoch: u64, prev: &str, heads: &[ShardHead]) -> Result<[u8; 32], ClusterError> {
    let body = json!({ "epoch": epoch, "prev": prev, "heads": heads });
    let text = canonical::to_string(&body).map_err(|e| ClusterError::Canonical(e.to_string()))?;
    Ok(Sha256::digest(text.as_bytes()).into())
}

impl ClusterCheckpoint {
    /// An unsigned checkpoint after `previous` (`None`: the first, epoch 0) over `heads`
    /// (any order; sorted here).
    pub fn propose(previous: Option<&ClusterCheckpoint>, mut heads: Vec<ShardHead>) -> Result<Self, ClusterError> {
        if heads.is_empty() {
            return Err(ClusterError::NoShards);
        }
        heads.sort_by(|a, b| a.shard.cmp(&b.shard));
        if let Some(w) = heads.windows(2).find(|w| w[0].shard == w[1].shard) {
            return Err(ClusterError::DuplicateShard(w[0].shard.clone()));
        }
        let (epoch, prev) = match previous {
            Some(p) => (p.epoch + 1, hex::encode(p.digest()?)),
            None => (0, GENESIS_PREV_HASH.to_string()),
        };
        Ok(Self {
            epoch,
            prev,
            heads,
            signatures: Vec::new(),
        })
    }

    /// This checkpoint's digest (signatures excluded).
    pub fn digest(&self) -> Result<[u8; 32], ClusterError> {
        digest(self.epoch, &self.prev, &self.heads)
    }

    /// Adds `shard`'s countersignature made with `signer`, which must hold the head's key.
    pub fn countersign(&mut self, shard: &str, signer: &Signer) -> Result<(), ClusterError> {
        let head = self
            .heads
            .iter()
            .find(|h| h.shard == shard)
            .ok_or_else(|| ClusterError::NotListed(shard.into()))?;
        if head.key_id != signer.key_id() {
            return Err(ClusterError::WrongKey {
                shard: shard.into(),
                signer: signer.key_id().into(),
                head: head.key_id.clone(),
            });
        }
        let signature = signer.sign_cluster_checkpoint(&self.digest()?);
        self.signatures.retain(|s| s.shard != shard);
        self.signatures.push(ShardSignature {
            shard: shard.into(),
            signature,
        });
        self.signatures.sort_by(|a, b| a.shard.cmp(&b.shard));
        Ok(())
    }
}

/// Checks `checkpoint` against the chains held (shard → receipts in sequence order, possibly
/// pruned at the front) with the trusted keys. Each chain's own links and signatures are
/// `verify_chain`'s job; this checks what ties the chains together.
pub fn verify_cluster(
    checkpoint: &ClusterCheckpoint,
    chains: &BTreeMap<String, Vec<Receipt>>,
    keys: &TrustedKeys,
) -> ClusterReport {
    let mut report = ClusterReport {
        shards: checkpoint.heads.len(),
        ..ClusterReport::default()
    };
    let problems = &mut report.problems;
    if let Some(w) = checkpoint.heads.windows(2).find(|w| w[0].shard >= w[1].shard) {
        problems.push(ClusterProblem::Malformed {
            message: format!("heads not sorted or listed twice at shard {:?}", w[1].shard),
        });
    }
    let listed: BTreeMap<&str, &ShardHead> = checkpoint.heads.iter().map(|h| (h.shard.as_str(), h)).collect();
    match checkpoint.digest() {
        Ok(d) => {
            let message = cluster_checkpoint_message(&d);
            let mut signed = BTreeSet::new();
            for s in &checkpoint.signatures {
                let Some(head) = listed.get(s.shard.as_str()) else {
                    problems.push(ClusterProblem::ForeignSignature { shard: s.shard.clone() });
                    continue;
                };
                if keys.verify(&head.key_id, &message, &s.signature) {
                    signed.insert(s.shard.as_str());
                    report.signatures_ok += 1;
                } else {
                    problems.push(ClusterProblem::BadSignature {
                        shard: s.shard.clone(),
                        key_id: head.key_id.clone(),
                    });
                }
            }
            for shard in listed.keys().filter(|s| !signed.contains(*s)) {
                let bad = checkpoint.signatures.iter().any(|s| s.shard == *shard);
                if !bad {
                    problems.push(ClusterProblem::Unsigned {
                        shard: shard.to_string(),
                    });
                }
            }
        }
        Err(e) => problems.push(ClusterProblem::Malformed { message: e.to_string() }),
    }
    for (shard, head) in &listed {
        let Some(chain) = chains.get(*shard) else {
            problems.push(ClusterProblem::MissingChain {
                shard: shard.to_string(),
            });
            continue;
        };
        if head.size == 0 {
            problems.push(ClusterProblem::Malformed {
                message: format!("shard {shard:?}: a head of size 0 names no receipt"),
            });
            continue;
        }
        let position = head.size - 1;
        let held = chain.last().map_or(0, |r| r.sequence + 1);
        if held < head.size {
            problems.push(ClusterProblem::Truncated {
                shard: shard.to_string(),
                signed: head.size,
                held,
            });
            continue;
        }
        match chain.binary_search_by_key(&position, |r| r.sequence) {
            Ok(i) if chain[i].hash == head.head_hash => {}
            Ok(i) => problems.push(ClusterProblem::Forked {
                shard: shard.to_string(),
                sequence: position,
                signed: head.head_hash.clone(),
                found: chain[i].hash.clone(),
            }),
            Err(_) => problems.push(ClusterProblem::HeadNotHeld {
                shard: shard.to_string(),
                sequence: position,
            }),
        }
    }
    for shard in chains.keys().filter(|s| !listed.contains_key(s.as_str())) {
        problems.push(ClusterProblem::Unlisted { shard: shard.clone() });
    }
    report
}

/// Checks that `next` follows `previous`: the next epoch, `prev` = the previous digest, every
/// shard listed before still listed (a shard that stopped keeps its last head), and no chain
/// shorter than before. Whether a grown chain still contains the old head is
/// [`verify_cluster`]'s check of each checkpoint against the chains.
pub fn verify_succession(previous: &ClusterCheckpoint, next: &ClusterCheckpoint) -> Vec<ClusterProblem> {
    let mut problems = Vec::new();
    if next.epoch != previous.epoch + 1 {
        problems.push(ClusterProblem::BrokenLink {
            epoch: next.epoch,
            message: format!("epoch {} does not follow {}", next.epoch, previous.epoch),
        });
    }
    match previous.digest() {
        Ok(d) if hex::encode(d) == next.prev => {}
        Ok(d) => problems.push(ClusterProblem::BrokenLink {
            epoch: next.epoch,
            message: format!("prev {} is not the previous digest {}", next.prev, hex::encode(d)),
        }),
        Err(e) => problems.push(ClusterProblem::Malformed { message: e.to_string() }),
    }
    for old in &previous.heads {
        match next.heads.iter().find(|h| h.shard == old.shard) {
            None => problems.push(ClusterProblem::Regressed {
                shard: old.shard.clone(),
                message: format!(
                    "listed at epoch {} with {} receipts, gone at {}",
                    previous.epoch, old.size, next.epoch
                ),
            }),
            Some(new) if new.size < old.size || (new.size == old.size && new.head_hash != old.head_hash) => problems
                .push(ClusterProblem::Regressed {
                    shard: old.shard.clone(),
                    message: format!(
                        "{} receipts (head {}) at epoch {}, {} (head {}) at {}",
                        old.size, old.head_hash, previous.epoch, new.size, new.head_hash, next.epoch
                    ),
                }),
            Some(_) => {}
        }
    }
    problems
}

/// Two shards acted on one agent in one owner term, or a shard acted under an older term
/// after a newer one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermOverlap {
    /// `agent` has receipts with owner epoch `epoch` in both chains.
    SharedTerm {
        agent: String,
        epoch: u64,
        shards: (String, String),
    },
    /// In `shard`'s chain, `agent`'s epoch went from `from` down to `to` at `sequence`.
    OlderTerm {
        agent: String,
        shard: String,
        sequence: u64,
        from: u64,
        to: u64,
    },
}

/// The agent (`namespace/name`) and owner epoch a receipt acted under, if it names both.
pub fn owner_term(r: &Receipt) -> Option<(String, u64)> {
    if r.subject.kind != "GeometricAgent" {
        return None;
    }
    let epoch = r.decision.get(OWNER_EPOCH_FIELD)?.as_u64()?;
    Some((format!("{}/{}", r.subject.namespace, r.subject.name), epoch))
}

/// Checks that owner terms are exclusive across chains: for every agent, each epoch belongs to
/// one shard, and each shard's epochs for the agent never go down along its chain.
pub fn overlapping_terms(chains: &BTreeMap<String, Vec<Receipt>>) -> Vec<TermOverlap> {
    let mut found = Vec::new();
    let mut holder: BTreeMap<(String, u64), &str> = BTreeMap::new();
    for (shard, chain) in chains {
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        for r in chain {
            let Some((agent, epoch)) = owner_term(r) else { continue };
            if let Some(&from) = last.get(&agent)
                && epoch < from
            {
                found.push(TermOverlap::OlderTerm {
                    agent: agent.clone(),
                    shard: shard.clone(),
                    sequence: r.sequence,
                    from,
                    to: epoch,
                });
            }
            last.insert(agent.clone(), epoch);
            match holder.get(&(agent.clone(), epoch)) {
                Some(other) if *other != shard.as_str() => {
                    let overlap = TermOverlap::SharedTerm {
                        agent: agent.clone(),
                        epoch,
                        shards: (other.to_string(), shard.clone()),
                    };
                    if !found.contains(&overlap) {
                        found.push(overlap);
                    }
                }
                Some(_) => {}
                None => {
                    holder.insert((agent, epoch), shard.as_str());
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipts::chain::ChainBuilder;
    use crate::receipts::{Action, Level, ReceiptDraft, SubjectRef};

    fn signer(seed: u8) -> Signer {
        Signer::from_seed([seed; 32])
    }

    fn draft(agent: &str, epoch: Option<u64>) -> ReceiptDraft {
        let mut decision = json!({"replicas": 2});
        if let Some(e) = epoch {
            decision[OWNER_EPOCH_FIELD] = json!(e);
        }
        ReceiptDraft {
            action: Action::Scale,
            subject: SubjectRef {
                api_version: "mom.io/v1alpha1".into(),
                kind: "GeometricAgent".into(),
                namespace: "shop".into(),
                name: agent.into(),
                uid: None,
            },
            decision,
            inputs_digest: "00".repeat(32),
            time: "2026-12-07T00:00:00Z".into(),
            level: Level::FullAudit,
        }
    }

    /// A chain of `n` receipts about `agent` under `epoch` signed by `s`.
    fn chain(s: &Signer, n: usize, agent: &str, epoch: Option<u64>) -> Vec<Receipt> {
        let mut b = ChainBuilder::genesis(s.clone());
        (0..n).map(|_| b.seal(draft(agent, epoch)).unwrap()).collect()
    }

    struct Mesh {
        signers: BTreeMap<String, Signer>,
        chains: BTreeMap<String, Vec<Receipt>>,
        keys: TrustedKeys,
    }

    fn mesh() -> Mesh {
        let mut m = Mesh {
            signers: BTreeMap::new(),
            chains: BTreeMap::new(),
            keys: TrustedKeys::new(),
        };
        for (i, shard) in ["mom-0", "mom-1", "mom-2"].iter().enumerate() {
            let s = signer(i as u8 + 1);
            m.keys.add(s.public_key());
            m.chains
                .insert(shard.to_string(), chain(&s, 3 + i, &format!("agent-{i}"), Some(1)));
            m.signers.insert(shard.to_string(), s);
        }
        m
    }

    fn signed(m: &Mesh, previous: Option<&ClusterCheckpoint>) -> ClusterCheckpoint {
        let heads = m.chains.iter().map(|(s, c)| head_of(s, c).unwrap()).collect();
        let mut cp = ClusterCheckpoint::propose(previous, heads).unwrap();
        for (shard, s) in &m.signers {
            cp.countersign(shard, s).unwrap();
        }
        cp
    }

    #[test]
    fn a_checkpoint_countersigned_by_every_shard_verifies_against_their_chains() {
        let m = mesh();
        let cp = signed(&m, None);
        let report = verify_cluster(&cp, &m.chains, &m.keys);
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!((report.shards, report.signatures_ok), (3, 3));
        // It survives a JSON round trip (the form it is stored in).
        let back: ClusterCheckpoint = serde_json::from_str(&serde_json::to_string(&cp).unwrap()).unwrap();
        assert!(verify_cluster(&back, &m.chains, &m.keys).ok());
    }

    #[test]
    fn a_missing_an_unlisted_a_truncated_and_a_forked_chain_are_each_named() {
        let m = mesh();
        let cp = signed(&m, None);
        let mut chains = m.chains.clone();
        chains.remove("mom-0");
        assert_eq!(
            verify_cluster(&cp, &chains, &m.keys).problems,
            vec![ClusterProblem::MissingChain { shard: "mom-0".into() }]
        );
        let mut chains = m.chains.clone();
        chains.insert("mom-9".into(), chain(&signer(9), 1, "x", None));
        assert_eq!(
            verify_cluster(&cp, &chains, &m.keys).problems,
            vec![ClusterProblem::Unlisted { shard: "mom-9".into() }]
        );
        let mut chains = m.chains.clone();
        chains.get_mut("mom-1").unwrap().pop();
        assert_eq!(
            verify_cluster(&cp, &chains, &m.keys).problems,
            vec![ClusterProblem::Truncated {
                shard: "mom-1".into(),
                signed: 4,
                held: 3
            }]
        );
        // A fork: the same shard's chain rebuilt with other receipts (same length).
        let mut chains = m.chains.clone();
        chains.insert("mom-2".into(), chain(&m.signers["mom-2"], 5, "other", Some(1)));
        let problems = verify_cluster(&cp, &chains, &m.keys).problems;
        assert!(
            matches!(&problems[..], [ClusterProblem::Forked { shard, sequence: 4, .. }] if shard == "mom-2"),
            "{problems:?}"
        );
        // A chain that grew after the checkpoint still verifies against it.
        let mut chains = m.chains.clone();
        let mut b = ChainBuilder::resume(m.signers["mom-0"].clone(), &chains["mom-0"]).unwrap();
        let more = b.seal(draft("agent-0", Some(1))).unwrap();
        chains.get_mut("mom-0").unwrap().push(more);
        assert!(verify_cluster(&cp, &chains, &m.keys).ok());
    }

    #[test]
    fn a_missing_a_forged_and_a_foreign_countersignature_are_refused() {
        let m = mesh();
        let mut cp = signed(&m, None);
        cp.signatures.retain(|s| s.shard != "mom-1");
        assert_eq!(
            verify_cluster(&cp, &m.chains, &m.keys).problems,
            vec![ClusterProblem::Unsigned { shard: "mom-1".into() }]
        );
        // mom-0 signs in mom-1's place: the key mom-1's head names does not verify it.
        let mut forged = signed(&m, None);
        let by_other = m.signers["mom-0"].sign_cluster_checkpoint(&forged.digest().unwrap());
        forged
            .signatures
            .iter_mut()
            .find(|s| s.shard == "mom-1")
            .unwrap()
            .signature = by_other;
        assert!(matches!(
            &verify_cluster(&forged, &m.chains, &m.keys).problems[..],
            [ClusterProblem::BadSignature { shard, .. }] if shard == "mom-1"
        ));
        // Heads edited after signing: every signature fails.
        let mut edited = signed(&m, None);
        edited.heads[0].size += 1;
        let problems = verify_cluster(&edited, &m.chains, &m.keys).problems;
        assert_eq!(
            problems
                .iter()
                .filter(|p| matches!(p, ClusterProblem::BadSignature { .. }))
                .count(),
            3,
            "{problems:?}"
        );
        let mut foreign = signed(&m, None);
        foreign.signatures.push(ShardSignature {
            shard: "mom-7".into(),
            signature: "00".repeat(64),
        });
        assert_eq!(
            verify_cluster(&foreign, &m.chains, &m.keys).problems,
            vec![ClusterProblem::ForeignSignature { shard: "mom-7".into() }]
        );
        // Untrusted keys: nothing verifies.
        assert_eq!(
            verify_cluster(&signed(&m, None), &m.chains, &TrustedKeys::new()).signatures_ok,
            0
        );
    }

    #[test]
    fn a_shard_signs_only_with_its_heads_key_and_only_listed_shards_sign() {
        let m = mesh();
        let heads = m.chains.iter().map(|(s, c)| head_of(s, c).unwrap()).collect();
        let mut cp = ClusterCheckpoint::propose(None, heads).unwrap();
        assert!(matches!(
            cp.countersign("mom-1", &m.signers["mom-0"]),
            Err(ClusterError::WrongKey { .. })
        ));
        assert_eq!(
            cp.countersign("mom-5", &m.signers["mom-0"]),
            Err(ClusterError::NotListed("mom-5".into()))
        );
        assert!(cp.countersign("mom-1", &m.signers["mom-1"]).is_ok());
        let dup = vec![head_of("a", &m.chains["mom-0"]).unwrap(); 2];
        assert_eq!(
            ClusterCheckpoint::propose(None, dup),
            Err(ClusterError::DuplicateShard("a".into()))
        );
        assert_eq!(ClusterCheckpoint::propose(None, vec![]), Err(ClusterError::NoShards));
        assert!(matches!(head_of("a", &[]), Err(ClusterError::EmptyChain { .. })));
    }

    #[test]
    fn successive_checkpoints_link_by_digest_and_a_dropped_or_shrunk_shard_is_named() {
        let mut m = mesh();
        let first = signed(&m, None);
        let mut b = ChainBuilder::resume(m.signers["mom-2"].clone(), &m.chains["mom-2"]).unwrap();
        let more = b.seal(draft("agent-2", Some(1))).unwrap();
        m.chains.get_mut("mom-2").unwrap().push(more);
        let second = signed(&m, Some(&first));
        assert_eq!(second.epoch, 1);
        assert!(verify_succession(&first, &second).is_empty());
        // Both still verify against the grown chains.
        assert!(verify_cluster(&first, &m.chains, &m.keys).ok());
        assert!(verify_cluster(&second, &m.chains, &m.keys).ok());
        let mut unlinked = second.clone();
        unlinked.prev = "ab".repeat(32);
        assert!(matches!(
            &verify_succession(&first, &unlinked)[..],
            [ClusterProblem::BrokenLink { epoch: 1, .. }]
        ));
        let mut dropped = second.clone();
        dropped.heads.retain(|h| h.shard != "mom-0");
        assert!(matches!(
            &verify_succession(&first, &dropped)[..],
            [ClusterProblem::Regressed { shard, .. }] if shard == "mom-0"
        ));
        // Going back: the first checkpoint does not follow the second.
        let back = verify_succession(&second, &first);
        assert!(
            back.iter()
                .any(|p| matches!(p, ClusterProblem::Regressed { shard, .. } if shard == "mom-2"))
        );
        assert!(back.iter().any(|p| matches!(p, ClusterProblem::BrokenLink { .. })));
    }

    #[test]
    fn two_shards_acting_on_one_agent_in_one_term_or_a_shard_going_back_a_term_are_found() {
        let (a, b) = (signer(1), signer(2));
        // Positive control: agent x handed from mom-a (term 1) to mom-b (term 2).
        let mut chains = BTreeMap::new();
        chains.insert("mom-a".to_string(), chain(&a, 2, "x", Some(1)));
        chains.insert("mom-b".to_string(), chain(&b, 2, "x", Some(2)));
        assert!(overlapping_terms(&chains).is_empty());
        // mom-b also acted in term 1.
        chains.insert("mom-b".to_string(), chain(&b, 2, "x", Some(1)));
        assert_eq!(
            overlapping_terms(&chains),
            vec![TermOverlap::SharedTerm {
                agent: "shop/x".into(),
                epoch: 1,
                shards: ("mom-a".into(), "mom-b".into())
            }]
        );
        // mom-a acts in term 2, then again in term 1.
        let mut builder = ChainBuilder::genesis(a.clone());
        let going_back = vec![
            builder.seal(draft("y", Some(2))).unwrap(),
            builder.seal(draft("y", Some(1))).unwrap(),
        ];
        let chains = BTreeMap::from([("mom-a".to_string(), going_back)]);
        assert_eq!(
            overlapping_terms(&chains),
            vec![TermOverlap::OlderTerm {
                agent: "shop/y".into(),
                shard: "mom-a".into(),
                sequence: 1,
                from: 2,
                to: 1
            }]
        );
        // Receipts without a term (centralized mode) are not part of the check.
        let chains = BTreeMap::from([
            ("mom-a".to_string(), chain(&a, 2, "z", None)),
            ("mom-b".to_string(), chain(&b, 2, "z", None)),
        ]);
        assert!(overlapping_terms(&chains).is_empty());
    }
}
