//! `cargo xtask eval` as a user runs it: the binary, `.npy` fixtures in, one JSON object out,
//! and a non-zero exit with the offending file named on bad input (docs/design.md, Evaluation contract).

use std::path::PathBuf;
use std::process::Command;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/metrics")
        .join(name)
        .display()
        .to_string()
}

fn xtask(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("xtask runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `xtask args`, asserts success and exactly one JSON line on stdout, returns it parsed.
fn eval_json(args: &[&str]) -> serde_json::Value {
    let (ok, out, err) = xtask(args);
    assert!(ok, "{err}");
    assert_eq!(out.trim().lines().count(), 1, "{out}");
    serde_json::from_str(out.trim()).expect("stdout is one JSON object")
}

fn expected(case: &str, key: &str) -> f64 {
    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[case][key].as_f64().unwrap()
}

#[test]
fn map_prints_one_json_object() {
    let v = eval_json(&[
        "eval",
        "map",
        "--query-codes",
        &fixture("map12_q.npy"),
        "--db-codes",
        &fixture("map12_d.npy"),
        "--query-labels",
        &fixture("map12_ql.npy"),
        "--db-labels",
        &fixture("map12_dl.npy"),
        "--topk",
        "100",
    ]);
    assert!((v["map"].as_f64().unwrap() - expected("map12_top100", "map")).abs() < 1e-12);
    assert!((v["map_all"].as_f64().unwrap() - expected("map12", "map")).abs() < 1e-12);
}

#[test]
fn recall_knn_cluster_contract_keys() {
    let v = eval_json(&["eval", "recall", "--sims", &fixture("recall_sims.npy")]);
    for dir in ["i2t", "t2i"] {
        for k in ["r1", "r5", "r10", "medr"] {
            assert!(v[dir][k].is_number(), "{dir}.{k} missing in {v}");
        }
    }
    assert!((v["rsum"].as_f64().unwrap() - expected("recall", "rsum")).abs() < 1e-9);

    let v = eval_json(&[
        "eval",
        "knn",
        "--train-feats",
        &fixture("knn_train_feats.npy"),
        "--train-labels",
        &fixture("knn_train_labels.npy"),
        "--test-feats",
        &fixture("knn_test_feats.npy"),
        "--test-labels",
        &fixture("knn_test_labels.npy"),
    ]);
    assert!((v["top1"].as_f64().unwrap() - expected("knn_k200", "top1")).abs() < 1e-9);
    assert!(v["top5"].is_number());

    let v = eval_json(&[
        "eval",
        "cluster",
        "--labels-true",
        &fixture("cluster_true.npy"),
        "--labels-pred",
        &fixture("cluster_pred.npy"),
    ]);
    for k in ["acc", "nmi", "ari"] {
        assert!(
            (v[k].as_f64().unwrap() - expected("cluster", k)).abs() < 1e-12,
            "{k}"
        );
    }
}

#[test]
fn bad_input_fails_naming_the_file() {
    let (ok, out, err) = xtask(&[
        "eval",
        "cluster",
        "--labels-true",
        &fixture("cluster_true.npy"),
        "--labels-pred",
        &fixture("map12_dl.npy"),
    ]);
    assert!(!ok, "{out}");
    assert!(err.contains("map12_dl.npy"), "{err}");
    assert!(out.is_empty(), "no JSON on failure: {out}");
}
