//! `mom verify` and `mom receipts demo-chain` end to end, through the binary.

use std::path::PathBuf;
use std::process::Command;

fn mom(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mom")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mom-receipts-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn demo(count: &str) -> (PathBuf, PathBuf) {
    let (chain, key) = (tmp(&format!("chain{count}.jsonl")), tmp(&format!("key{count}.pub")));
    let (code, _, err) = mom(&[
        "receipts",
        "demo-chain",
        "--count",
        count,
        "--checkpoint-every",
        "10",
        "--out",
        chain.to_str().unwrap(),
        "--public-out",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    (chain, key)
}

#[test]
fn a_demo_chain_verifies_offline_and_replays_with_exit_code_zero() {
    let (chain, key) = demo("40");
    let (code, out, err) = mom(&[
        "verify",
        "--file",
        chain.to_str().unwrap(),
        "--public-key",
        key.to_str().unwrap(),
        "--replay",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("result       OK"), "{out}");
}

#[test]
fn an_edited_receipt_fails_verification_naming_its_sequence_and_kind_in_json() {
    let (chain, key) = demo("30");
    let text = std::fs::read_to_string(&chain).unwrap();
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 13 {
                l.replacen("svc-13", "svc-99", 1)
            } else {
                l.to_string()
            }
        })
        .collect();
    let tampered = tmp("tampered.jsonl");
    std::fs::write(&tampered, lines.join("\n")).unwrap();
    let (code, out, _) = mom(&[
        "verify",
        "--file",
        tampered.to_str().unwrap(),
        "--public-key",
        key.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["report"]["problems"][0]["sequence"], 13);
    assert_eq!(v["report"]["problems"][0]["kind"], "edited");
}

#[test]
fn a_malformed_line_is_an_error_naming_the_line_number() {
    let (chain, key) = demo("12");
    let text = std::fs::read_to_string(&chain).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[5] = "{\"sequence\": 5,";
    let bad = tmp("bad.jsonl");
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let (code, _, err) = mom(&[
        "verify",
        "--file",
        bad.to_str().unwrap(),
        "--public-key",
        key.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("line 6"), "{err}");
}

#[test]
fn verify_without_a_trusted_key_is_refused() {
    let (chain, _) = demo("3");
    let (code, _, err) = mom(&["verify", "--file", chain.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("--public-key"), "{err}");
}
