//! `cargo xtask reproduce cmbh` and `cargo xtask search cmbh` as a user runs them.

use std::path::PathBuf;
use std::process::Command;

fn xtask(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env_remove("BURN_DEVICE")
        .output()
        .expect("xtask runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/datasets")
}

fn run_dir(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run directory: "))
        .unwrap_or_else(|| panic!("no run directory in:\n{stdout}"));
    PathBuf::from(line.trim())
}

#[test]
fn report_cost_prints_table5_beside_ours() {
    let (ok, out, err) = xtask(&["reproduce", "cmbh", "--report-cost"]);
    assert!(ok, "{err}");
    // Ours equals the paper's parameter count for every row.
    assert!(
        out.contains("| resnet50 | 12 | 14.3219 [14.5267] | 14.3219 |"),
        "{out}"
    );
    assert!(
        out.contains("| resnet18 | 48 | 4.2474 [4.4522] | 4.2474 |"),
        "{out}"
    );
}

#[test]
fn smoke_on_synth_fine_then_search() {
    let out_root = tempfile::tempdir().unwrap();
    let root = out_root.path().display().to_string();
    let (ok, out, err) = xtask(&[
        "reproduce",
        "cmbh",
        "--preset",
        "smoke",
        "--bits",
        "8",
        "--out",
        &root,
        "--quiet",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("| variant | bits | map |"), "{out}");
    assert!(out.contains("| full | 8 |"), "{out}");
    let dir = run_dir(&out);
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["method"], "cmbh");
    assert_eq!(metrics["preset"], "smoke");
    assert_eq!(metrics["rows"][0]["bits"], 8);

    // Query with a CUB fixture image (any image file works).
    let query =
        fixtures().join("cub/CUB_200_2011/images/002.Laysan_Albatross/Laysan_Albatross_0104_0.jpg");
    let (ok, out, err) = xtask(&[
        "search",
        "cmbh",
        "--run",
        &dir.display().to_string(),
        "--image",
        &query.display().to_string(),
        "--k",
        "3",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("3 nearest of 32 database images"), "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| rank") && !l.starts_with("| ---"))
            .count(),
        3,
        "{out}"
    );

    // A run directory without runs is a clear error.
    let (ok, _, err) = xtask(&[
        "search",
        "cmbh",
        "--run",
        &root,
        "--image",
        &query.display().to_string(),
    ]);
    assert!(!ok);
    assert!(err.contains("no finished CMBH run"), "{err}");
}

#[test]
fn real_dataset_prints_the_papers_numbers_beside() {
    let out_root = tempfile::tempdir().unwrap();
    let root = out_root.path().display().to_string();
    let cub = fixtures().join("cub").display().to_string();
    let (ok, out, err) = xtask(&[
        "reproduce",
        "cmbh",
        "--dataset",
        "cub",
        "--data-dir",
        &cub,
        "--preset",
        "smoke",
        "--bits",
        "12",
        "--out",
        &root,
        "--quiet",
        "--epochs",
        "1",
    ]);
    assert!(ok, "{err}");
    // The paper's CUB 12-bit mAP (84.07 %) is printed beside the measured one.
    assert!(out.contains("0.8407"), "{out}");

    let (ok, _, err) = xtask(&["reproduce", "cmbh", "--dataset", "cub", "--out", &root]);
    assert!(!ok);
    assert!(err.contains("--data-dir"), "{err}");
    let (ok, _, err) = xtask(&["reproduce", "cmbh", "--dataset", "mnist", "--out", &root]);
    assert!(!ok);
    assert!(err.contains("unknown --dataset `mnist`"), "{err}");
    let (ok, _, err) = xtask(&["reproduce", "cmbh", "--preset", "huge", "--out", &root]);
    assert!(!ok);
    assert!(err.contains("unknown preset"), "{err}");
}
