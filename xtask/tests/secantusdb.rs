//! The local MongoDB is SecantusDB started through xtask/assets/secantusd_launcher.py, which mends
//! two of its faults that made every checkout slow under load (docs/architecture.md §9): its TTL
//! sweeper held a read snapshot for the minute between sweeps, and findAndModify read the whole
//! collection. The launcher's self-test checks both against an in-process server; it fails when
//! either mend is missing (a WiredTiger statistic counts the pinned transactions; a wrapper
//! counts the documents a findAndModify on `_id` reads).

use std::{path::Path, process::Command};

#[test]
fn the_launcher_mends_the_sweepers_snapshot_and_find_and_modifys_scan() {
    let Ok(python) = std::env::var("STOREFRONT_TEST_SECANTUSDB_PYTHON") else {
        panic!(
            "STOREFRONT_TEST_SECANTUSDB_PYTHON is unset: run the tests through `cargo xtask test`"
        );
    };
    let launcher = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/secantusd_launcher.py");
    let output = Command::new(python)
        .arg(&launcher)
        .arg("--self-test")
        .output()
        .expect("run the launcher's self-test");
    assert!(
        output.status.success(),
        "the launcher's self-test failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
