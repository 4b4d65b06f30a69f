//! What the tests that run `mom` without a cluster share: where the shared data is, and one
//! run of the binary.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// `../shared/data`, or `$MOM_DATA_DIR` when set.
pub fn data_dir() -> PathBuf {
    std::env::var("MOM_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data")))
}

/// `mom ARGS…`: (exit code, stdout, stderr).
pub fn mom(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mom")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}
