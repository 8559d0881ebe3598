//! relata-metrics against independent numpy / scikit-learn / scipy results
//! (`fixtures/metrics/make_reference.py`), through the `cargo xtask eval` contract
//! (`relata_metrics::eval`): 12-bit codes with heavy ties and queries without relevant items,
//! 70-bit multi-label codes, packed 48-bit codes, image–text recall with ties (full and 5-fold),
//! weighted kNN and clustering scores.

use std::path::PathBuf;

use relata_metrics::KnnConfig;
use relata_metrics::TopKMode;
use relata_metrics::eval::{MapArgs, eval_cluster, eval_knn, eval_map, eval_recall};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/metrics")
        .join(name)
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("expected.json")).expect("fixtures/metrics");
    serde_json::from_str(&text).expect("expected.json parses")
}

/// Every key of `want` must be present in `got` with the same value (numbers within `tol`).
fn assert_matches(case: &str, got: &Value, want: &Value, tol: f64) {
    match want {
        Value::Object(map) => {
            for (k, v) in map {
                let g = got
                    .get(k)
                    .unwrap_or_else(|| panic!("{case}: missing key {k} in {got}"));
                assert_matches(&format!("{case}.{k}"), g, v, tol);
            }
        }
        Value::Number(n) => {
            let (w, g) = (n.as_f64().unwrap(), got.as_f64().unwrap());
            assert!(
                (w - g).abs() <= tol * w.abs().max(1.0),
                "{case}: got {g}, numpy says {w}"
            );
        }
        other => assert_eq!(got, other, "{case}"),
    }
}

fn map_args(prefix: &str, q: &str, d: &str, topk: Option<usize>) -> MapArgs {
    MapArgs {
        query_codes: fixture(&format!("{prefix}_{q}.npy")),
        db_codes: fixture(&format!("{prefix}_{d}.npy")),
        query_labels: fixture(&format!("{prefix}_ql.npy")),
        db_labels: fixture(&format!("{prefix}_dl.npy")),
        topk,
        topk_mode: TopKMode::Positions,
        radius: 2,
        pr_curve: false,
        packed_bits: None,
    }
}

#[test]
fn map_matches_numpy() {
    let e = expected();
    let cases = [
        ("map12", map_args("map12", "q", "d", None)),
        ("map12_top100", map_args("map12", "q", "d", Some(100))),
        ("map70_multi", map_args("map70", "q", "d", None)),
        ("map70_multi_top50", map_args("map70", "q", "d", Some(50))),
        (
            "map48_packed",
            map_args("map48", "q_packed", "d_packed", None),
        ),
    ];
    for (case, args) in cases {
        let got = eval_map(&args).unwrap_or_else(|err| panic!("{case}: {err}"));
        assert_matches(case, &got, &e[case], 1e-12);
    }
    // The 12-bit case really has ties and unanswerable queries.
    assert!(e["map12"]["no_relevant"].as_u64().unwrap() > 0);
}

#[test]
fn recall_matches_numpy_with_ties() {
    let e = expected();
    let full = eval_recall(&fixture("recall_sims.npy"), 5, None).unwrap();
    assert_matches("recall", &full, &e["recall"], 1e-12);
    let folds = eval_recall(&fixture("recall_sims.npy"), 5, Some(5)).unwrap();
    assert_matches("recall_5fold", &folds, &e["recall_5fold"], 1e-12);
}

#[test]
fn knn_matches_numpy() {
    let e = expected();
    let run = |k, tau| {
        eval_knn(
            &fixture("knn_train_feats.npy"),
            &fixture("knn_train_labels.npy"),
            &fixture("knn_test_feats.npy"),
            &fixture("knn_test_labels.npy"),
            KnnConfig { k, tau },
        )
        .unwrap()
    };
    assert_matches("knn_k200", &run(200, 0.1), &e["knn_k200"], 1e-12);
    assert_matches("knn_k20_tau05", &run(20, 0.5), &e["knn_k20_tau05"], 1e-12);
}

#[test]
fn cluster_matches_sklearn() {
    let e = expected();
    let got = eval_cluster(&fixture("cluster_true.npy"), &fixture("cluster_pred.npy")).unwrap();
    assert_matches("cluster", &got, &e["cluster"], 1e-12);
}

#[test]
fn errors_name_the_file() {
    // Labels of the wrong length for the codes.
    let mut args = map_args("map12", "q", "d", None);
    args.db_labels = fixture("map48_dl.npy");
    let err = eval_map(&args).unwrap_err().to_string();
    assert!(
        err.contains("map48_dl.npy") && err.contains("map12_d.npy"),
        "{err}"
    );
    // Codes of different lengths.
    let mut args = map_args("map12", "q", "d", None);
    args.db_codes = fixture("map70_d.npy");
    let err = eval_map(&args).unwrap_err().to_string();
    assert!(
        err.contains("map70_d.npy") && err.contains("70-bit"),
        "{err}"
    );
    // Not codes at all (features are not ±1/0/1).
    let mut args = map_args("map12", "q", "d", None);
    args.query_codes = fixture("knn_test_feats.npy");
    let err = eval_map(&args).unwrap_err().to_string();
    assert!(err.contains("knn_test_feats.npy"), "{err}");
    // A file that does not exist, and one that is not .npy.
    let err = eval_cluster(&fixture("nope.npy"), &fixture("cluster_pred.npy"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope.npy"), "{err}");
    let err = eval_cluster(&fixture("expected.json"), &fixture("cluster_pred.npy"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected.json"), "{err}");
    // Similarities that are not n × 5n.
    let err = eval_recall(&fixture("knn_train_feats.npy"), 5, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("knn_train_feats.npy"), "{err}");
}
