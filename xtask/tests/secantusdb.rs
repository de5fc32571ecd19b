//! The local MongoDB is SecantusDB started through xtask/assets/secantusd_launcher.py, which mends
//! six of its faults that made every checkout slower under load (docs/architecture.md §9): its
//! TTL sweeper held a read snapshot for the minute between sweeps and read every document of a
//! TTL-indexed collection at each sweep, findAndModify read the whole collection, every command
//! read the profiler's settings from storage, every step of a command read the collection's
//! index specifications and options again, and every transaction opened a WiredTiger session
//! that was never freed. The launcher's self-test checks each against an in-process server and
//! fails when its mend is missing (a WiredTiger statistic counts the pinned transactions;
//! wrappers count the documents a findAndModify on `_id` and a sweep read, the reads of the
//! profiler's settings and of the index catalog; a census counts the WiredTiger sessions 100
//! transactions leave behind). It also checks that what is kept of the catalog never hides a
//! change (a unique index another connection made, indexes made a command earlier, an index
//! another connection dropped while a delete ran, a multikey mark an aborted transaction took
//! back, a collection made inside one) and that transactions reusing sessions on four threads
//! lose no write.

use std::{path::Path, process::Command};

#[test]
fn the_launcher_mends_secantusdbs_sweeper_find_and_modify_profiler_catalog_and_sessions() {
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
