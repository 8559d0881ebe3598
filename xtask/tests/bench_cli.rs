//! `cargo xtask bench isl --quick` as a user runs it: the table of host work per step before
//! and after, and its JSON. Timings are not asserted (benchmarks measure, tests do not).

use std::process::Command;

/// Runs `cargo xtask bench NAME --quick --json FILE`; its stdout and the JSON it wrote.
fn quick_bench(name: &str) -> (String, serde_json::Value) {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join(format!("{name}.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["bench", name, "--quick", "--json"])
        .arg(&json)
        .output()
        .expect("xtask runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), value)
}

#[test]
fn bench_isl_writes_the_host_work_table() {
    let (stdout, value) = quick_bench("isl");
    for step in [
        "L1 membership",
        "hard positives",
        "hardest negatives",
        "mining batch",
    ] {
        assert!(stdout.contains(step), "{stdout}");
    }
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

/// `cargo xtask bench art --quick`: one and two threads give the same clusters (the command
/// fails otherwise), the table and the JSON report them.
#[test]
fn bench_art_clusters_alike_on_one_thread_and_many() {
    let (stdout, value) = quick_bench("art");
    assert!(
        stdout.contains("| 1 thread |") && stdout.contains("threads |"),
        "{stdout}"
    );
    assert_eq!(
        (value["n"].as_u64(), value["dim"].as_u64()),
        (Some(5_000), Some(512))
    );
    let clusters = value["clusters"].as_u64().unwrap();
    assert!((1..=5_000).contains(&clusters), "{value}");
    assert!(value["single_image_clusters"].as_u64().unwrap() <= clusters);
    for key in ["seconds_one_thread", "seconds_all_threads"] {
        assert!(value[key].as_f64().unwrap() > 0.0, "{value}");
    }
}
