//! Zero-copy reading of one JSON-lines receipt, for verifying straight from text.
//!
//! Input: one line. Output: a [`ReceiptRef`] whose fields borrow the line, with the `decision`
//! kept as its raw text, or `None` when the line is outside the shape handled here — then the
//! caller parses the line with serde_json ([`super::parse_line`]) as before.
//!
//! Handled: a receipt object with exactly the known fields (any order, JSON whitespace between
//! members), strings without escapes or control characters, a `sequence` that is a `u64`, and a
//! `decision` already in canonical form: no whitespace, object keys ASCII and strictly
//! ascending, strings without escapes or control characters, numbers non-negative integers
//! without leading zeros up to `u64::MAX`, nesting under 100 levels. On that subset the raw text
//! *is* the canonical JSON of the value serde_json would build (RFC 8785 writes such strings,
//! integers, literals and sorted ASCII keys verbatim), so the canonical body, and hence the
//! receipt hash, is written without building a `serde_json::Value`: no allocation per receipt.
//! MOM's own writer emits exactly this shape (serde_json with sorted maps, compact).

use sha2::{Digest, Sha256};

use super::canonical::{push_u64, write_str};
use super::merkle::Hash;
use super::{Action, Level, Receipt, ReceiptError};

const MAX_DEPTH: usize = 100;

/// A receipt borrowing its line; `decision` is the raw (canonical) JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptRef<'a> {
    pub sequence: u64,
    pub action: Action,
    pub api_version: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: Option<&'a str>,
    pub decision: &'a str,
    pub inputs_digest: &'a str,
    pub prev_hash: &'a str,
    pub hash: &'a str,
    pub signature: &'a str,
    pub key_id: &'a str,
    pub time: &'a str,
    pub level: Level,
    /// The whole line, to build the owned [`Receipt`] when one is needed (rare).
    pub line: &'a str,
}

impl ReceiptRef<'_> {
    /// The canonical body (as [`super::hash::write_canonical_body`] writes it for the owned
    /// receipt), appended to `s`.
    pub fn write_canonical_body(&self, s: &mut String) {
        s.push_str("{\"action\":");
        write_str(s, self.action.as_str());
        s.push_str(",\"decision\":");
        s.push_str(self.decision);
        s.push_str(",\"inputsDigest\":");
        write_str(s, self.inputs_digest);
        s.push_str(",\"keyId\":");
        write_str(s, self.key_id);
        s.push_str(",\"level\":");
        write_str(s, self.level.as_str());
        s.push_str(",\"prevHash\":");
        write_str(s, self.prev_hash);
        s.push_str(",\"sequence\":");
        push_u64(s, self.sequence);
        s.push_str(",\"subject\":{\"apiVersion\":");
        write_str(s, self.api_version);
        s.push_str(",\"kind\":");
        write_str(s, self.kind);
        s.push_str(",\"name\":");
        write_str(s, self.name);
        s.push_str(",\"namespace\":");
        write_str(s, self.namespace);
        if let Some(uid) = self.uid {
            s.push_str(",\"uid\":");
            write_str(s, uid);
        }
        s.push_str("},\"time\":");
        write_str(s, self.time);
        s.push('}');
    }

    /// `SHA-256` of the canonical body, reusing `buf`.
    pub fn content_hash(&self, buf: &mut String) -> Hash {
        buf.clear();
        self.write_canonical_body(buf);
        Sha256::digest(buf.as_bytes()).into()
    }

    /// The owned receipt (parsed by serde_json from the line).
    pub fn to_receipt(&self) -> Result<Receipt, ReceiptError> {
        super::parse_line(self.line, 1)?.ok_or(ReceiptError::Parse {
            line: 1,
            message: "blank line".into(),
        })
    }
}

struct Cursor<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        if self.peek()? == c {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// A string literal (no leading whitespace) without escapes or control characters.
    fn raw_str(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.i + 1;
        let len = self
            .b
            .get(start..)?
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if self.b[start + len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        // Both ends sit next to ASCII quotes, so they are char boundaries.
        self.text.get(start..start + len)
    }

    fn str_slice(&mut self) -> Option<&'a str> {
        self.ws();
        self.raw_str()
    }

    /// A non-negative integer without leading zeros that fits a u64, not followed by a
    /// fraction or exponent.
    fn u64(&mut self) -> Option<u64> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let digits = &self.b[start..self.i];
        if digits.is_empty() || (digits[0] == b'0' && digits.len() > 1) {
            return None;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let mut v: u64 = 0;
        for &d in digits {
            v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        Some(v)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? == word {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// Skips one value in canonical form (see the module doc); `None` if it is not.
    fn canonical_value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.raw_str().map(|_| ()),
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                let mut prev: Option<&str> = None;
                loop {
                    let k = self.raw_str()?;
                    if !k.is_ascii() || prev.is_some_and(|p| p >= k) {
                        return None;
                    }
                    prev = Some(k);
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.i += 1;
                    self.canonical_value(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.canonical_value(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'0'..=b'9' => self.u64().map(|_| ()),
            _ => None,
        }
    }

    /// Calls `field(cursor, key)` for each member of an object; the callback reads the value.
    fn members(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let k = self.str_slice()?;
            self.eat(b':')?;
            self.ws();
            field(self, k)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

fn action(s: &str) -> Option<Action> {
    Some(match s {
        "spawn" => Action::Spawn,
        "terminate" => Action::Terminate,
        "scale" => Action::Scale,
        "migrate" => Action::Migrate,
        "evict" => Action::Evict,
        "allocate" => Action::Allocate,
        "configure" => Action::Configure,
        "checkpoint" => Action::Checkpoint,
        "bind" => Action::Bind,
        _ => return None,
    })
}

fn level(s: &str) -> Option<Level> {
    Some(match s {
        "none" => Level::None,
        "sample" => Level::Sample,
        "full_audit" => Level::FullAudit,
        _ => return None,
    })
}

/// Sets `slot` once; a repeated field (an error for serde_json) gives `None`.
fn once<T>(slot: &mut Option<T>, v: Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(v?);
    Some(())
}

/// The receipt on `line` borrowing it, or `None` (see the module doc).
pub fn parse_receipt_ref(line: &str) -> Option<ReceiptRef<'_>> {
    let mut c = Cursor {
        text: line,
        b: line.as_bytes(),
        i: 0,
    };
    let (mut sequence, mut act, mut decision, mut inputs_digest, mut prev_hash) = (None, None, None, None, None);
    let (mut hash, mut signature, mut key_id, mut time, mut lvl) = (None, None, None, None, None);
    let (mut api_version, mut kind, mut namespace, mut name) = (None, None, None, None);
    let mut uid: Option<Option<&str>> = None;
    let mut subject_seen = false;
    c.members(|c, k| match k {
        "sequence" => once(&mut sequence, c.u64()),
        "action" => once(&mut act, c.raw_str().and_then(action)),
        "subject" => {
            if subject_seen {
                return None;
            }
            subject_seen = true;
            c.members(|c, k| match k {
                "apiVersion" => once(&mut api_version, c.raw_str()),
                "kind" => once(&mut kind, c.raw_str()),
                "namespace" => once(&mut namespace, c.raw_str()),
                "name" => once(&mut name, c.raw_str()),
                "uid" => {
                    let v = if c.peek()? == b'n' {
                        c.literal(b"null").map(|_| None)
                    } else {
                        c.raw_str().map(Some)
                    };
                    once(&mut uid, v)
                }
                _ => None,
            })
        }
        "decision" => {
            let start = c.i;
            c.canonical_value(1)?;
            once(&mut decision, c.text.get(start..c.i))
        }
        "inputsDigest" => once(&mut inputs_digest, c.raw_str()),
        "prevHash" => once(&mut prev_hash, c.raw_str()),
        "hash" => once(&mut hash, c.raw_str()),
        "signature" => once(&mut signature, c.raw_str()),
        "keyId" => once(&mut key_id, c.raw_str()),
        "time" => once(&mut time, c.raw_str()),
        "level" => once(&mut lvl, c.raw_str().and_then(level)),
        _ => None,
    })?;
    c.ws();
    if c.i != c.b.len() || !subject_seen {
        return None;
    }
    Some(ReceiptRef {
        sequence: sequence?,
        action: act?,
        api_version: api_version?,
        kind: kind?,
        namespace: namespace.unwrap_or(""),
        name: name?,
        uid: uid.flatten(),
        decision: decision?,
        inputs_digest: inputs_digest?,
        prev_hash: prev_hash?,
        hash: hash?,
        signature: signature?,
        key_id: key_id?,
        time: time?,
        level: lvl?,
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipts::demo::demo_chain;
    use crate::receipts::hash::receipt_hash;
    use crate::receipts::{
        SubjectRef, TrustedKeys, VerifyOptions, parse_json_lines, parse_line, testutil, to_json_lines, verify_chain,
        verify_json_lines,
    };
    use proptest::prelude::*;
    use serde_json::{Number, Value};

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |x| Number::from_f64(x).map(Value::Number)),
            "[a-z0-9 \"\\\\/\u{e9}\u{1f600}\u{7f}\t]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-zA-Z\u{e9}\u{fb01}\u{1f600}]{0,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn receipt() -> impl Strategy<Value = Receipt> {
        (
            any::<u64>(),
            0usize..8,
            json_value(),
            "[a-f0-9]{0,64}",
            "[a-zA-Z0-9\\-\"\u{e9}]{0,10}",
            proptest::option::of("[a-z0-9\\-]{0,12}"),
            0usize..3,
        )
            .prop_map(|(sequence, a, decision, hex, name, uid, l)| Receipt {
                sequence,
                action: [
                    Action::Spawn,
                    Action::Terminate,
                    Action::Scale,
                    Action::Migrate,
                    Action::Evict,
                    Action::Allocate,
                    Action::Configure,
                    Action::Checkpoint,
                ][a],
                subject: SubjectRef {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    namespace: name.to_lowercase(),
                    name,
                    uid,
                },
                decision,
                inputs_digest: hex.clone(),
                prev_hash: hex.chars().rev().collect(),
                hash: hex.clone(),
                signature: hex.repeat(2),
                key_id: hex.chars().take(16).collect(),
                time: "2026-11-26T10:00:00Z".into(),
                level: [Level::None, Level::Sample, Level::FullAudit][l],
            })
    }

    /// The two ways to verify a JSON-lines text.
    fn both(
        text: &str,
        keys: &TrustedKeys,
    ) -> (
        Result<super::super::Report, ReceiptError>,
        Result<super::super::Report, ReceiptError>,
    ) {
        let opts = VerifyOptions::default();
        (
            verify_json_lines(text, keys, &opts),
            parse_json_lines(text).map(|rs| verify_chain(&rs, keys, &opts)),
        )
    }

    #[test]
    fn every_action_reads_back_from_its_own_spelling_on_the_borrowed_path() {
        use crate::receipts::Action as A;
        let all = [
            A::Spawn,
            A::Terminate,
            A::Scale,
            A::Migrate,
            A::Evict,
            A::Allocate,
            A::Configure,
            A::Checkpoint,
            A::Bind,
        ];
        for a in all {
            assert_eq!(action(a.as_str()), Some(a), "{a:?}");
            assert_eq!(serde_json::to_value(a).unwrap(), serde_json::json!(a.as_str()));
        }
        assert_eq!(action("bound"), None);
    }

    #[test]
    fn demo_receipts_are_read_without_copying_and_hash_like_the_parsed_ones() {
        let s = testutil::signer(4);
        let chain = demo_chain(&s, 40, 9).unwrap();
        let mut buf = String::new();
        for (line, r) in to_json_lines(&chain).lines().zip(&chain) {
            let b = parse_receipt_ref(line).expect("MOM's own lines take the borrowed path");
            assert_eq!(b.content_hash(&mut buf), receipt_hash(r).unwrap());
            assert_eq!(&b.to_receipt().unwrap(), r);
            assert_eq!(
                (b.sequence, b.hash, b.uid),
                (r.sequence, r.hash.as_str(), r.subject.uid.as_deref())
            );
        }
    }

    #[test]
    fn lines_outside_the_canonical_shape_are_left_to_serde_json() {
        let s = testutil::signer(4);
        let line = to_json_lines(&testutil::chain(1, 0, &s)).trim().to_string();
        assert!(parse_receipt_ref(&line).is_some());
        let start = line.find("\"decision\":").unwrap() + "\"decision\":".len();
        let end = line.find(",\"inputsDigest\"").unwrap();
        let with_decision = |d: &str| format!("{}{d}{}", &line[..start], &line[end..]);
        for d in [
            "1.5",
            "-1",
            "{\"b\":1,\"a\":2}",
            "{\"a\":1,\"a\":1}",
            "[1, 2]",
            "\"\\n\"",
            "01",
            "{\"\u{e9}\":1}",
        ] {
            assert!(parse_receipt_ref(&with_decision(d)).is_none(), "{d}");
        }
        for d in [
            "[]",
            "{}",
            "[1,true,null,\"x\",{\"a\":[false]}]",
            "18446744073709551615",
        ] {
            let l = with_decision(d);
            let b = parse_receipt_ref(&l).expect(d);
            let r = parse_line(&l, 1).unwrap().unwrap();
            assert_eq!(b.content_hash(&mut String::new()), receipt_hash(&r).unwrap(), "{d}");
        }
        for bad in [
            line.replacen("\"level\"", "\"extra\":1,\"level\"", 1),
            line.replacen("\"sequence\":0", "\"sequence\":0,\"sequence\":0", 1),
            line.replacen("\"sequence\":0,", "", 1),
            format!("{line},"),
        ] {
            assert!(parse_receipt_ref(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_bad_line_is_the_same_error_on_both_paths() {
        let s = testutil::signer(4);
        let mut keys = TrustedKeys::new();
        keys.add(s.public_key());
        let mut text = to_json_lines(&testutil::chain(4, 2, &s));
        text.push_str("{\"sequence\": 4, \"action\": \"spawn\"\n");
        let (a, b) = both(&text, &keys);
        assert!(matches!(a, Err(ReceiptError::Parse { line: 5, .. })), "{a:?}");
        assert_eq!(a, b);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn borrowed_and_parsed_receipts_hash_alike_on_random_receipts(r in receipt()) {
            let line = serde_json::to_string(&r).unwrap();
            let parsed = parse_line(&line, 1).unwrap().unwrap();
            prop_assert_eq!(&parsed, &r);
            if let Some(b) = parse_receipt_ref(&line) {
                prop_assert_eq!(b.content_hash(&mut String::new()), receipt_hash(&parsed).unwrap());
                prop_assert_eq!(b.to_receipt().unwrap(), parsed);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn verifying_from_text_and_from_parsed_receipts_give_the_same_report(
            n in 1usize..30,
            every in 0usize..8,
            edits in proptest::collection::vec((any::<proptest::sample::Index>(), "[ 0-9a-f,:{}\"\\[\\]\\n.]"), 0..3),
            dup in proptest::option::of(any::<proptest::sample::Index>()),
        ) {
            let s = testutil::signer(5);
            let mut keys = TrustedKeys::new();
            keys.add(s.public_key());
            let mut rs = testutil::chain(n, every, &s);
            if let Some(d) = dup {
                let r = rs[d.index(n)].clone();
                rs.push(r);
            }
            let mut text = to_json_lines(&rs);
            for (at, c) in &edits {
                let mut i = at.index(text.len());
                while !text.is_char_boundary(i) {
                    i -= 1;
                }
                let end = (i + 1..=text.len()).find(|&j| text.is_char_boundary(j)).unwrap_or(text.len());
                text.replace_range(i..end, c);
            }
            let (a, b) = both(&text, &keys);
            prop_assert_eq!(a, b);
        }
    }
}
