//! A valid signed demo chain, so `mom verify` can be tried offline and benchmarked.
//!
//! Inputs: a signer, a receipt count, a checkpoint interval. Output: receipts `0..count` with
//! `test.sum` decisions (replayable with the built-in replayer), mixed actions and subjects,
//! and a checkpoint every `checkpoint_every` receipts. Deterministic: same inputs, same bytes.

use serde_json::json;

use super::replay::{TEST_SUM_KIND, test_sum};
use super::{Action, ChainBuilder, Level, Receipt, ReceiptDraft, ReceiptError, Signer, SubjectRef, inputs_digest};

const ACTIONS: [Action; 7] = [
    Action::Spawn,
    Action::Terminate,
    Action::Scale,
    Action::Migrate,
    Action::Evict,
    Action::Allocate,
    Action::Configure,
];

/// RFC 3339 time of demo receipt `i`: 2026-01-01 plus `i` milliseconds (within one day).
fn demo_time(i: u64) -> String {
    let ms = i % 86_400_000;
    let (h, m, s, frac) = (ms / 3_600_000, (ms / 60_000) % 60, (ms / 1000) % 60, ms % 1000);
    format!("2026-01-01T{h:02}:{m:02}:{s:02}.{frac:03}Z")
}

/// The subject of the chain's own checkpoints.
pub fn checkpoint_subject() -> SubjectRef {
    SubjectRef {
        api_version: "mom.dev/v1alpha1".into(),
        kind: "ReceiptChain".into(),
        namespace: "mom-system".into(),
        name: "default".into(),
        uid: None,
    }
}

/// The draft of demo action `i`.
pub fn demo_draft(i: u64) -> Result<ReceiptDraft, ReceiptError> {
    let inputs = json!({
        "values": [i % 97, (i * 7) % 13, 42],
        "tick": i,
        "node": format!("node-{}", i % 16),
    });
    let output = test_sum(&inputs).map_err(|e| ReceiptError::BadField {
        field: "decision",
        value: e.to_string(),
        expected: "a test.sum decision",
    })?;
    let action = ACTIONS[(i % ACTIONS.len() as u64) as usize];
    Ok(ReceiptDraft {
        action,
        subject: SubjectRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: format!("tenant-{}", i % 5),
            name: format!("svc-{}", i % 23),
            uid: Some(format!("00000000-0000-4000-8000-{:012x}", i % 23)),
        },
        decision: json!({"kind": TEST_SUM_KIND, "inputs": inputs, "output": output}),
        inputs_digest: inputs_digest(&inputs)?,
        time: demo_time(i),
        level: Level::FullAudit,
    })
}

/// A chain of `count` receipts; a checkpoint every `checkpoint_every` (0 = none).
pub fn demo_chain(signer: &Signer, count: u64, checkpoint_every: u64) -> Result<Vec<Receipt>, ReceiptError> {
    let mut b = ChainBuilder::genesis(signer.clone());
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count {
        let r = if checkpoint_every > 0 && i > 0 && i.is_multiple_of(checkpoint_every) {
            b.checkpoint(checkpoint_subject(), demo_time(i))?
        } else {
            b.seal(demo_draft(i)?)?
        };
        out.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipts::replay::{InlineOnly, ReplayRegistry};
    use crate::receipts::{TrustedKeys, VerifyOptions, verify_chain};

    #[test]
    fn the_demo_chain_verifies_and_replays_cleanly() {
        let s = Signer::from_seed([1; 32]);
        let rs = demo_chain(&s, 120, 50).unwrap();
        let mut keys = TrustedKeys::new();
        keys.add(s.public_key());
        let rep = verify_chain(&rs, &keys, &VerifyOptions::default());
        assert!(rep.is_ok(), "{:?}", rep.problems);
        assert_eq!(rep.checkpoints_recomputed, 2);
        let replay = ReplayRegistry::with_test_sum().replay_all(&rs, &InlineOnly);
        assert_eq!((replay.replayed, replay.matched), (118, 118));
    }

    #[test]
    fn demo_times_are_rfc3339_and_wrap_within_a_day() {
        assert_eq!(demo_time(0), "2026-01-01T00:00:00.000Z");
        assert_eq!(demo_time(3_723_004), "2026-01-01T01:02:03.004Z");
        assert_eq!(demo_time(86_400_000), "2026-01-01T00:00:00.000Z");
    }
}
