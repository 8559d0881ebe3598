//! `cargo xtask data inspect|synth` and `cargo xtask fixtures` as a user runs them.

use std::path::{Path, PathBuf};
use std::process::Command;

fn datasets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/datasets")
}

fn xtask(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("xtask runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn inspect(format: &str, dir: &Path) -> serde_json::Value {
    let (ok, out, err) = xtask(&["data", "inspect", format, &dir.display().to_string()]);
    assert!(ok, "{format}: {err}");
    assert_eq!(out.trim().lines().count(), 1, "{out}");
    serde_json::from_str(out.trim()).expect("one JSON object")
}

#[test]
fn inspect_every_fixture() {
    for (format, dir, classes, train) in [
        ("cub", "cub", 3, 6),
        ("aircraft", "aircraft", 3, 6),
        ("food101", "food101", 3, 6),
        ("nabirds", "nabirds", 3, 6),
        ("vegfru", "vegfru", 3, 6),
        ("cifar10", "cifar10", 10, 8),
        ("cifar100", "cifar100", 100, 6),
        ("svhn", "svhn", 10, 5),
        ("imagefolder", "imagefolder", 3, 6),
    ] {
        let v = inspect(format, &datasets().join(dir));
        assert_eq!(v["format"], format);
        assert_eq!(v["classes"], classes, "{format}");
        assert_eq!(v["splits"]["train"], train, "{format}");
        assert!(v["splits"]["test"].as_u64().unwrap() > 0);
        assert!(v["image_size"]["min"].is_array(), "{format}: {v}");
        assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{format}");
    }
    let v = inspect("precomp", &datasets().join("precomp"));
    assert_eq!(v["splits"]["train"], 4);
    assert_eq!(v["captions"]["train"], 20);
    assert_eq!(v["image_size"]["regions"], 4);
}

#[test]
fn broken_layouts_exit_non_zero_naming_the_file() {
    // The wrong format for a directory: the missing list file is named.
    let (ok, _, err) = xtask(&[
        "data",
        "inspect",
        "cub",
        &datasets().join("food101").display().to_string(),
    ]);
    assert!(!ok);
    assert!(err.contains("images.txt: missing"), "{err}");
    let (ok, _, err) = xtask(&["data", "inspect", "cifar12", "/tmp"]);
    assert!(!ok && err.contains("unknown format `cifar12`"), "{err}");
}

#[test]
fn synth_exports_read_back_as_real_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let fine = tmp.path().join("fine");
    let (ok, _, err) = xtask(&[
        "data",
        "synth",
        "synth-fine",
        &fine.display().to_string(),
        "--image-size",
        "16",
    ]);
    assert!(ok, "{err}");
    let v = inspect("imagefolder", &fine);
    assert_eq!(v["classes"], 16);
    assert_eq!(v["splits"]["train"], 640);
    assert_eq!(v["image_size"]["max"], serde_json::json!([16, 16]));
    // Refuses to write into a non-empty directory.
    let (ok, _, err) = xtask(&["data", "synth", "synth-fine", &fine.display().to_string()]);
    assert!(!ok && err.contains("not empty"), "{err}");

    let caps = tmp.path().join("caps");
    let (ok, _, err) = xtask(&[
        "data",
        "synth",
        "synth-captions",
        &caps.display().to_string(),
    ]);
    assert!(ok, "{err}");
    let v = inspect("precomp", &caps);
    assert_eq!(v["splits"]["test"], 100);
    assert_eq!(v["captions"]["test"], 500);

    // Split sizes (the default HREM reproduction tests on 1,000 scenes).
    let sized = tmp.path().join("sized");
    let sized_arg = sized.display().to_string();
    let (ok, _, err) = xtask(&[
        "data",
        "synth",
        "synth-captions",
        &sized_arg,
        "--train",
        "30",
        "--dev",
        "7",
        "--test",
        "1000",
    ]);
    assert!(ok, "{err}");
    let v = inspect("precomp", &sized);
    assert_eq!(v["splits"]["train"], 30);
    assert_eq!(v["splits"]["dev"], 7);
    assert_eq!(v["captions"]["test"], 5000);
    // Scene families: each scene an edited copy of one of 3 prototypes, so whole-scene
    // captions ("a picture of …") repeat across the 40 training scenes.
    let families = tmp.path().join("families");
    let families_arg = families.display().to_string();
    let args = [
        "data",
        "synth",
        "synth-captions",
        &families_arg,
        "--train",
        "40",
        "--families",
        "3",
        "--family-edit",
        "0",
    ];
    let (ok, _, err) = xtask(&args);
    assert!(ok, "{err}");
    let captions = std::fs::read_to_string(families.join("train_caps.txt")).unwrap();
    let pictures: std::collections::HashSet<&str> = captions
        .lines()
        .filter(|c| c.starts_with("a picture of"))
        .collect();
    assert!((1..=3).contains(&pictures.len()), "{pictures:?}");
    let wrong = tmp.path().join("wrong").display().to_string();
    let (ok, _, err) = xtask(&["data", "synth", "synth-fine", &wrong, "--test", "5"]);
    assert!(!ok && err.contains("for synth-captions"), "{err}");
    // synth-captions refusals: the extra arguments and what the error must say.
    for (extra, expected) in [
        (&["--family-edit", "0.1"][..], "needs --families"),
        (
            &["--families", "2", "--family-edit", "1.5"],
            "family_edit is a probability",
        ),
        (&["--dev", "0"], "at least 1"),
        (
            &["--image-size", "16"],
            "--image-size and --pretraining-source are for synth-fine",
        ),
    ] {
        let mut args = vec!["data", "synth", "synth-captions", wrong.as_str()];
        args.extend_from_slice(extra);
        let (ok, _, err) = xtask(&args);
        assert!(!ok && err.contains(expected), "{extra:?}: {err}");
    }
}

/// `cargo xtask fixtures` is deterministic and the committed fixtures are what it writes.
#[test]
fn fixtures_regenerate_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("datasets");
    let (ok, _, err) = xtask(&["fixtures", "--out", &out.display().to_string()]);
    assert!(ok, "{err}");
    let mut files = Vec::new();
    collect(&out, &out, &mut files);
    assert!(files.len() > 50);
    for rel in files {
        let fresh = std::fs::read(out.join(&rel)).unwrap();
        let committed = std::fs::read(datasets().join(&rel)).unwrap_or_else(|_| {
            panic!(
                "{} is not committed; run `cargo xtask fixtures`",
                rel.display()
            )
        });
        assert!(
            fresh == committed,
            "{} differs from a fresh `cargo xtask fixtures`",
            rel.display()
        );
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().to_path_buf());
        }
    }
}

/// `cargo xtask features` reproduces the torchvision reference through the CLI contract.
#[test]
fn features_cli_matches_the_pytorch_reference() {
    let case = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/backbone/resnet18");
    let tmp = tempfile::tempdir().unwrap();
    for (stage, reference) in [("layer3", "eval_layer3.npy"), ("pool", "eval_pooled.npy")] {
        let out = tmp.path().join(format!("{stage}.npy"));
        let (ok, _, err) = xtask(&[
            "features",
            "--backbone",
            "resnet18",
            "--width",
            "4",
            "--weights",
            &case.join("weights.pth").display().to_string(),
            "--input",
            &case.join("input.npy").display().to_string(),
            "--out",
            &out.display().to_string(),
            "--stage",
            stage,
            "--batch",
            "1",
        ]);
        assert!(ok, "{err}");
        let ours = relata_metrics::npy::NpyArray::read(&out).unwrap();
        let theirs = relata_metrics::npy::NpyArray::read(case.join(reference)).unwrap();
        assert_eq!(ours.shape, theirs.shape);
        let (a, b) = (ours.to_f32(), theirs.to_f32());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(err / scale < 1e-4, "{stage}: {err} vs {scale}");
    }
    // Wrong architecture: one error listing what does not fit.
    let (ok, _, err) = xtask(&[
        "features",
        "--backbone",
        "resnet50",
        "--width",
        "4",
        "--weights",
        &case.join("weights.pth").display().to_string(),
        "--input",
        &case.join("input.npy").display().to_string(),
        "--out",
        &tmp.path().join("x.npy").display().to_string(),
    ]);
    assert!(!ok && err.contains("do not fit"), "{err}");
}
