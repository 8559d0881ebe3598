//! `cargo xtask bench isl --quick` as a user runs it: the table of host work per step before
//! and after, and its JSON. Timings are not asserted (benchmarks measure, tests do not).

use std::process::Command;

#[test]
fn bench_isl_writes_the_host_work_table() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("isl.json");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["bench", "isl", "--quick", "--json"])
        .arg(&json)
        .output()
        .expect("xtask runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "L1 membership",
        "hard positives",
        "hardest negatives",
        "mining batch",
    ] {
        assert!(stdout.contains(step), "{stdout}");
    }
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(value["n"], 10_000);
    let rows = value["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        for key in ["host_before_ms", "host_after_ms", "after_total_ms"] {
            let v = row[key].as_f64().unwrap();
            assert!(v.is_finite() && v >= 0.0, "{row}");
        }
    }
}
