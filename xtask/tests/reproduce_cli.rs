//! `cargo xtask reproduce` and `cargo xtask search` for the four methods, as a user runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `xtask ARGS` as these tests run it: the device from the arguments alone (no `BURN_DEVICE`),
/// errors without backtraces.
fn xtask_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env_remove("BURN_DEVICE");
    command
}

fn xtask(args: &[&str]) -> (bool, String, String) {
    let out = xtask_command(args).output().expect("xtask runs");
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

/// `xtask reproduce METHOD --preset smoke ARGS… --out ROOT --quiet`, which must succeed: its
/// stdout, its stderr (the per-epoch lines) and the run directory it names.
fn smoke(method: &str, args: &[&str], root: &Path) -> (String, String, PathBuf) {
    let root = root.display().to_string();
    let mut all = vec!["reproduce", method, "--preset", "smoke"];
    all.extend_from_slice(args);
    all.extend(["--out", root.as_str(), "--quiet"]);
    let (ok, out, err) = xtask(&all);
    assert!(ok, "{err}");
    let dir = run_dir(&out);
    // One-epoch runs (`--epochs 1`, on the format fixtures) have no curve to check.
    if !args.windows(2).any(|w| w == ["--epochs", "1"]) {
        assert_losses_fall(&dir);
    }
    (out, err, dir)
}

/// Every training run under `dir` learned: in each phase of two or more epochs, the epoch mean
/// of its objective — `total`, or the one term of a single-term phase (`cls`, `tri`) — is lower
/// at the phase's last epoch than at its first. Adversarial (GAN) and mining phases, which have
/// no objective that must fall, are not checked. Asserts that at least one phase was.
fn assert_losses_fall(dir: &Path) {
    let mut checked = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.file_name().is_none_or(|n| n != "metrics.jsonl") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let records: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let mut phases: Vec<(String, Vec<&serde_json::Value>)> = Vec::new();
            for r in &records {
                let phase = r["phase"].as_str().unwrap().to_string();
                match phases.last_mut() {
                    Some((p, rs)) if *p == phase => rs.push(&r["loss"]),
                    _ => phases.push((phase, vec![&r["loss"]])),
                }
            }
            for (phase, losses) in phases {
                let Some(key) = ["total", "cls", "tri"]
                    .into_iter()
                    .find(|k| losses.iter().all(|l| l.get(*k).is_some()))
                else {
                    continue;
                };
                if losses.len() < 2 {
                    continue;
                }
                let value = |l: &serde_json::Value| l[key].as_f64().unwrap();
                let (first, last) = (value(losses[0]), value(losses[losses.len() - 1]));
                assert!(
                    last < first,
                    "{}: phase {phase}: {key} {first} → {last} did not fall",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked > 0,
        "no phase of two epochs or more under {}",
        dir.display()
    );
}

/// `search cmbh --run RUN --image IMAGE --k K` with `extra` arguments.
fn search_cmbh(run: &Path, image: &Path, k: usize, extra: &[&str]) -> (bool, String, String) {
    let (run, image, k) = (
        run.display().to_string(),
        image.display().to_string(),
        k.to_string(),
    );
    let mut args = vec![
        "search", "cmbh", "--run", &run, "--image", &image, "--k", &k,
    ];
    args.extend_from_slice(extra);
    xtask(&args)
}

/// Copies the directory tree `from` to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// A run directory's `metrics.json`.
/// `reproduce METHOD ARGS --out ROOT --quiet`, which must succeed: its run directory and
/// `config.json`.
fn reproduce_in(method: &str, args: &[&str], root: &str) -> (PathBuf, serde_json::Value) {
    let mut all = vec!["reproduce", method, "--out", root, "--quiet"];
    all.extend_from_slice(args);
    let (ok, out, err) = xtask(&all);
    assert!(ok, "{err}");
    let dir = run_dir(&out);
    let config = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    (dir, config)
}

fn read_metrics(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap()
}

/// How many results a `search` table lists (its header and rule not counted).
fn result_rows(out: &str) -> usize {
    out.lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| rank") && !l.starts_with("| ---"))
        .count()
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

/// `--validation N --score-on-validation` scores on N training images per class held out (no
/// paper rows beside a validation score), `--reduction mean` is recorded with the run, and the
/// ablation's ranking and the code lengths get their notes; scoring on a validation split
/// without one, and an unknown reduction, are refused by name.
#[test]
fn cmbh_validation_reduction_and_ablation_notes() {
    let out_root = tempfile::tempdir().unwrap();
    let args = [
        "--bits",
        "8,16",
        "--ablation",
        "--validation",
        "2",
        "--score-on-validation",
        "--reduction",
        "mean",
        // Reports are checked here, not learning (one epoch: no falling-loss check).
        "--epochs",
        "1",
    ];
    let (out, _, dir) = smoke("cmbh", &args, out_root.path());
    let metrics = read_metrics(&dir);
    assert_eq!(metrics["dataset"], "synth-fine, scored on validation");
    assert_eq!(metrics["paper"], serde_json::json!([]));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        (config["reduction"].as_str(), config["validation"].as_u64()),
        (Some("mean"), Some(2))
    );
    assert_eq!(config["scored_on"], "validation");
    assert!(
        out.contains("16-bit codes are not worse than 8-bit ones"),
        "{out}"
    );
    assert!(
        out.contains("Table 4's ranking B < B+L < B+L+T < full at 8 bits"),
        "{out}"
    );
    // The validation mAP after every epoch of every run: a curve in the reproduction's report.
    assert!(dir.join("curves/val_map.png").is_file());
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("curves/val_map.png"), "{report}");
    let run_report = std::fs::read_to_string(dir.join("full-8bits/report.md")).unwrap();
    assert!(run_report.contains("val map"), "{run_report}");
    let (ok, _, err) = xtask(&["reproduce", "cmbh", "--reduction", "sum"]);
    assert!(!ok && err.contains("known: paper, mean"), "{err}");
    let (ok, _, err) = xtask(&[
        "reproduce",
        "cmbh",
        "--preset",
        "smoke",
        "--score-on-validation",
    ]);
    assert!(!ok && err.contains("--validation N"), "{err}");
}

/// The default preset fine-tunes the shipped synth-pretrained backbone on a validation split
/// it holds out, keeps the best epoch and reports the test split; `--from-scratch` leaves the
/// backbone random.
#[test]
fn cmbh_default_preset_starts_pretrained_and_selects_on_validation() {
    let out_root = tempfile::tempdir().unwrap();
    let root = out_root.path().display().to_string();
    let run = |extra: &[&str]| {
        let args = [&["--bits", "8", "--epochs", "2"][..], extra].concat();
        reproduce_in("cmbh", &args, &root)
    };
    let (dir, config) = run(&[]);
    assert_eq!(config["weights"], "synth-pretrained-resnet18-w8.pth");
    assert_eq!(config["from_scratch"], false);
    assert_eq!(
        (config["validation"].as_u64(), config["scored_on"].as_str()),
        (Some(8), Some("test"))
    );
    assert!(dir.join("synth-pretrained-resnet18-w8.pth").is_file());
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("full-8bits/result.json")).unwrap())
            .unwrap();
    assert_eq!(result["scored_on"], "test");
    let share = result["region_share"]
        .as_f64()
        .expect("the region term's share");
    assert!(share > 0.0 && share < 1.0, "{result}");
    let kept = result["kept_epoch"].as_u64().expect("a kept epoch");
    assert!((1..=2).contains(&kept), "{result}");
    // The test split is searched against the whole training split: 16 classes × 40 images.
    let database: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("full-8bits/database.json")).unwrap())
            .unwrap();
    assert_eq!(database.as_array().unwrap().len(), 640);
    let metrics = read_metrics(&dir);
    assert_eq!(metrics["dataset"], "synth-fine");

    let (_, config) = run(&["--from-scratch"]);
    assert!(config["weights"].is_null());
    assert_eq!(config["from_scratch"], true);

    // A folder whose classes are too small for the validation split is refused before
    // training, naming the option.
    let folder = fixtures().join("imagefolder").display().to_string();
    let (ok, _, err) = xtask(&[
        "reproduce",
        "cmbh",
        "--dataset",
        "imagefolder",
        "--data-dir",
        &folder,
        "--out",
        &root,
    ]);
    assert!(!ok && err.contains("--validation N"), "{err}");
}

/// `--seeds` runs one reproduction per seed and reports the mean, the spread and every seed,
/// with the claims judged over the seeds; one seed in `--seeds` is refused.
#[test]
fn cmbh_seeds_report_mean_spread_and_claims() {
    let out_root = tempfile::tempdir().unwrap();
    let args = [
        "--bits",
        "8,16",
        "--seeds",
        "1,2",
        "--validation",
        "2",
        "--epochs",
        "1",
    ];
    let (out, _, dir) = smoke("cmbh", &args, out_root.path());
    assert!(dir.join("curves/val_map.png").is_file());
    assert!(dir.join("seed-1/full-8bits/result.json").is_file());
    assert!(dir.join("seed-2/full-16bits/result.json").is_file());
    let metrics = read_metrics(&dir);
    assert_eq!(metrics["dataset"], "synth-fine, 2 seeds");
    let row = &metrics["rows"][0];
    let (a, b) = (
        row["seed 1"].as_f64().unwrap(),
        row["seed 2"].as_f64().unwrap(),
    );
    assert!(
        (row["map"].as_f64().unwrap() - (a + b) / 2.0).abs() < 1e-12,
        "{row}"
    );
    assert!(row["sd"].as_f64().unwrap() >= 0.0);
    assert!(
        out.contains("| variant | bits | map | sd | seed 1 | seed 2 |"),
        "{out}"
    );
    assert!(out.contains("over 2 seeds"), "{out}");
    let (ok, _, err) = xtask(&["reproduce", "cmbh", "--seeds", "3"]);
    assert!(!ok && err.contains("two or more seeds"), "{err}");
}

/// `reproduce cmbh` (smoke preset, 8 bits, one epoch) on the image folder `data`, a test image
/// held out per class, under `root`.
fn cmbh_on_folder(data: &str, root: &str, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "reproduce",
        "cmbh",
        "--preset",
        "smoke",
        "--dataset",
        "imagefolder",
        "--data-dir",
        data,
        "--holdout",
        "1",
        "--bits",
        "8",
        "--epochs",
        "1",
        "--out",
        root,
        "--quiet",
    ];
    args.extend_from_slice(extra);
    xtask(&args)
}

/// Training on a folder with an undecodable image stops before training, naming the file and
/// `--skip-bad-images`; with the flag the image is skipped, listed in config.json and counted
/// under the table.
#[test]
fn cmbh_training_skips_bad_images_only_when_asked() {
    let out_root = tempfile::tempdir().unwrap();
    let root = out_root.path().display().to_string();
    let classes = out_root.path().join("classes");
    copy_tree(&fixtures().join("imagefolder/train"), &classes);
    std::fs::write(classes.join("cat/broken.jpg"), b"not a jpeg").unwrap();
    let data = classes.display().to_string();
    let args = |extra: &[&str]| cmbh_on_folder(&data, &root, extra);
    let (ok, _, err) = args(&[]);
    assert!(
        !ok && err.contains("broken.jpg") && err.contains("--skip-bad-images"),
        "{err}"
    );
    assert!(!out_root.path().join("cmbh").exists(), "nothing written");
    let (ok, out, err) = args(&["--skip-bad-images"]);
    assert!(ok, "{err}");
    assert!(out.contains("1 unreadable image was skipped"), "{out}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir(&out).join("config.json")).unwrap()).unwrap();
    let skipped = config["skipped_images"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].as_str().unwrap().contains("broken.jpg"));
}

#[test]
fn smoke_on_synth_fine_then_search() {
    let out_root = tempfile::tempdir().unwrap();
    let root = out_root.path().display().to_string();
    let (out, _, dir) = smoke("cmbh", &["--bits", "8"], out_root.path());
    assert!(out.contains("| variant | bits | map |"), "{out}");
    assert!(out.contains("| full | 8 |"), "{out}");
    let metrics = read_metrics(&dir);
    assert_eq!(metrics["method"], "cmbh");
    assert_eq!(metrics["preset"], "smoke");
    assert_eq!(metrics["rows"][0]["bits"], 8);

    // Query with a CUB fixture image (any image file works).
    let query =
        fixtures().join("cub/CUB_200_2011/images/002.Laysan_Albatross/Laysan_Albatross_0104_0.jpg");
    let (ok, out, err) = search_cmbh(&dir, &query, 3, &[]);
    assert!(ok, "{err}");
    assert!(out.contains("3 nearest of 32 database images"), "{out}");
    assert_eq!(result_rows(&out), 3, "{out}");

    // Your own labelled folder without train/ and test/: class directories only, a test
    // split held out per class (seeded); a folder with one class is refused by name.
    let classes = out_root.path().join("classes");
    copy_tree(&fixtures().join("imagefolder/train"), &classes);
    let (ok, out, err) = cmbh_on_folder(&classes.display().to_string(), &root, &[]);
    assert!(ok, "{err}");
    let own = read_metrics(&run_dir(&out));
    assert_eq!(own["dataset"], "imagefolder");
    let lonely = out_root.path().join("lonely");
    copy_tree(
        &fixtures().join("imagefolder/train/cat"),
        &lonely.join("cat"),
    );
    let (ok, _, err) = xtask(&[
        "reproduce",
        "cmbh",
        "--preset",
        "smoke",
        "--dataset",
        "imagefolder",
        "--data-dir",
        &lonely.display().to_string(),
        "--out",
        &root,
    ]);
    assert!(!ok && err.contains("at least two"), "{err}");

    // Any folder of images, indexed with the run's encoder and searched: a copy of the
    // image-folder fixture with one undecodable file.
    let folder = out_root.path().join("folder");
    copy_tree(&fixtures().join("imagefolder"), &folder);
    std::fs::write(folder.join("train/cat/broken.jpg"), b"not a jpeg").unwrap();
    let idx = out_root.path().join("idx");
    let index_args = |extra: &[&str]| -> (bool, String, String) {
        let (run, images, out) = (
            dir.display().to_string(),
            folder.display().to_string(),
            idx.display().to_string(),
        );
        let mut a = vec![
            "index", "cmbh", "--run", &run, "--images", &images, "--out", &out,
        ];
        a.extend_from_slice(extra);
        xtask(&a)
    };
    let (ok, _, err) = index_args(&[]);
    assert!(
        !ok && err.contains("broken.jpg") && err.contains("--skip-bad-images"),
        "{err}"
    );
    let (ok, out, err) = index_args(&["--skip-bad-images"]);
    assert!(ok, "{err}");
    assert!(out.contains("9 images (9 added, 1 skipped)"), "{out}");
    assert!(
        err.contains("skipped (unreadable)") && err.contains("images/s"),
        "{err}"
    );
    let (ok, _, err) = index_args(&["--skip-bad-images"]);
    assert!(!ok && err.contains("--append"), "{err}");
    // A pass that did not finish (files.json says so) is resumed without --append, and skips
    // what it already indexed or found unreadable.
    let list = idx.join("files.json");
    let text = std::fs::read_to_string(&list).unwrap();
    std::fs::write(
        &list,
        text.replace("\"complete\": true", "\"complete\": false"),
    )
    .unwrap();
    let (ok, out, err) = index_args(&["--skip-bad-images"]);
    assert!(
        ok && out.contains("9 images (0 added, 0 skipped)"),
        "{out}{err}"
    );
    std::fs::copy(
        folder.join("test/fox/fox_2.jpg"),
        folder.join("test/fox/fox_9.jpg"),
    )
    .unwrap();
    let (ok, out, err) = index_args(&["--append", "--skip-bad-images"]);
    assert!(
        ok && out.contains("10 images (1 added, 0 skipped)"),
        "{out}{err}"
    );
    let idx_arg = idx.display().to_string();
    let fox = folder.join("test/fox/fox_2.jpg");
    let (ok, out, err) = search_cmbh(&dir, &fox, 10, &["--index", &idx_arg]);
    assert!(ok, "{err}");
    // Every indexed image, the appended copy among them, listed with its folder as class; the
    // query's own file is at distance 0 (the smoke model's 8-bit codes tie a lot).
    assert!(out.contains("10 nearest of 10 database images"), "{out}");
    assert!(
        out.contains("fox_9.jpg") && out.contains("| fox |"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("| 0 |") && l.ends_with("test/fox/fox_2.jpg |")),
        "{out}"
    );

    // The run's index as a FAISS IndexBinaryFlat file, and read back to the same index.
    let index = dir.join("full-8bits/index.bin");
    let faiss = out_root.path().join("codes.faiss");
    let back = out_root.path().join("back.bin");
    let s = |p: &Path| p.display().to_string();
    let (ok, _, err) = xtask(&["export", "--index", &s(&index), "--out", &s(&faiss)]);
    assert!(ok && err.contains("wrote 32 8-bit codes"), "{err}");
    assert_eq!(&std::fs::read(&faiss).unwrap()[..4], b"IBxF");
    let (ok, _, err) = xtask(&["export", "--from-faiss", &s(&faiss), "--index", &s(&back)]);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(&index).unwrap()
    );
    let (ok, _, err) = xtask(&["export", "--index", &s(&faiss), "--out", &s(&back)]);
    assert!(!ok && err.contains("codes.faiss"), "{err}");

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
    let args = [
        "--dataset",
        "cub",
        "--data-dir",
        &cub,
        "--bits",
        "12,16",
        "--epochs",
        "1",
    ];
    let (out, _, _) = smoke("cmbh", &args, out_root.path());
    // The smoke preset's backbone is a ResNet-18: Table 3's CUB 16-bit mAP (82.10 %) is
    // printed beside the measured one, and not Table 2's ResNet-50 numbers (84.07 % at 12).
    assert!(out.contains("0.8210") && !out.contains("0.8407"), "{out}");

    let (ok, _, err) = xtask(&["reproduce", "cmbh", "--dataset", "cub", "--out", &root]);
    assert!(!ok);
    assert!(err.contains("--data-dir"), "{err}");
    let (ok, _, err) = xtask(&["reproduce", "cmbh", "--dataset", "mnist", "--out", &root]);
    assert!(!ok);
    assert!(err.contains("unknown --dataset `mnist`"), "{err}");
    let (ok, _, err) = xtask(&["reproduce", "cmbh", "--preset", "huge", "--out", &root]);
    assert!(!ok);
    assert!(err.contains("unknown preset"), "{err}");
    // The paper's preset does not silently train from scratch.
    let (ok, _, err) = xtask(&["reproduce", "cmbh", "--preset", "paper", "--out", &root]);
    assert!(!ok);
    assert!(
        err.contains("--weights") && err.contains("--from-scratch"),
        "{err}"
    );
}

#[test]
fn isl_smoke_on_synth_fine_and_a_cifar_directory() {
    let out_root = tempfile::tempdir().unwrap();
    let (out, err, dir) = smoke("isl", &[], out_root.path());
    // Under the table: which way this run went against the equal-budget baseline, and what
    // the baseline is.
    assert!(
        out.contains("on this run") && out.contains("instance discrimination alone"),
        "{out}"
    );
    assert!(
        out.contains("| baseline |") && out.contains("| round0 |") && out.contains("| full |"),
        "{out}"
    );
    let metrics = read_metrics(&dir);
    assert_eq!(metrics["method"], "isl");
    assert_eq!(metrics["dataset"], "synth-fine");
    assert_eq!(metrics["rows"][2]["variant"], "full");
    assert!(metrics["rows"][2]["mined_per_instance"].is_number());
    assert!(metrics["rows"][2]["chance_precision"].is_number());
    assert!(dir.join("full/encoder/encoder.bpk").is_file());
    assert!(dir.join("baseline/encoder/encoder.bpk").is_file());
    // Progress is one line per epoch, naming the phase.
    assert!(
        err.contains("[backbone-0]") && err.contains("[gan-0]"),
        "{err}"
    );

    // A real dataset's directory (the CIFAR-10 binary fixture).
    let cifar = fixtures().join("cifar10").display().to_string();
    let args = ["--dataset", "cifar10", "--data-dir", &cifar];
    let (out, _, dir) = smoke("isl", &args, out_root.path());
    assert!(
        dir.starts_with(out_root.path().join("isl/cifar10")),
        "{out}"
    );
}

#[test]
fn isl_bad_arguments_say_what_to_do() {
    let (ok, _, err) = xtask(&["reproduce", "isl", "--dataset", "cifar10"]);
    assert!(!ok && err.contains("--data-dir"), "{err}");
    let (ok, _, err) = xtask(&["reproduce", "isl", "--dataset", "imagenet"]);
    assert!(!ok && err.contains("known: synth-fine"), "{err}");
    let (ok, _, err) = xtask(&["reproduce", "isl", "--preset", "huge"]);
    assert!(!ok && err.contains("smoke, default, paper"), "{err}");
    let missing = tempfile::tempdir().unwrap();
    let (ok, _, err) = xtask(&[
        "reproduce",
        "isl",
        "--dataset",
        "cifar10",
        "--data-dir",
        &missing.path().join("nope").display().to_string(),
    ]);
    assert!(!ok && err.contains("nope"), "{err}");
}

#[test]
fn csrms_smoke_on_synth_fine_then_resume_and_a_cifar_directory() {
    let out_root = tempfile::tempdir().unwrap();
    let (out, err, dir) = smoke("csrms", &[], out_root.path());
    // Under the table: which way this run went, and where several seeds are compared.
    assert!(
        out.contains("on this run") && out.contains("docs/csrms.md"),
        "{out}"
    );
    assert!(
        out.contains("| baseline |") && out.contains("| control |") && out.contains("| full |"),
        "{out}"
    );
    // The equal-compute control is compared under the table too, and the last relation
    // refresh's clustering is reported there (also in report.md).
    assert!(out.contains("equal-compute control"), "{out}");
    assert!(
        out.contains("Last relation refresh:") && out.contains("% of them a single image"),
        "{out}"
    );
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("Last relation refresh:"), "{report}");
    let metrics = read_metrics(&dir);
    assert_eq!(metrics["method"], "csrms");
    assert_eq!(metrics["dataset"], "synth-fine");
    assert_eq!(metrics["rows"][0]["variant"], "baseline");
    assert_eq!(metrics["rows"][1]["variant"], "control");
    assert_eq!(metrics["rows"][2]["variant"], "full");
    for row in 0..3 {
        for key in ["top1", "top5"] {
            assert!(metrics["rows"][row][key].is_number(), "{metrics}");
        }
    }
    for key in ["gcn_top1", "gcn_top5"] {
        assert!(metrics["rows"][2][key].is_number(), "{metrics}");
    }
    for variant in ["full", "control", "baseline"] {
        assert!(dir.join(variant).join("model/model.bpk").is_file());
    }
    // The control trains on the sampled images with cross-entropy alone: its epochs log
    // the relation phase but no GCN or relation loss.
    let control = std::fs::read_to_string(dir.join("control/metrics.jsonl")).unwrap();
    assert!(control.contains("\"relation\""), "{control}");
    assert!(
        !control.contains("\"inter\"") && !control.contains("\"gcn\""),
        "{control}"
    );
    assert!(dir.join("report.md").is_file());
    // One line per epoch, naming the phases; the relation refresh is in the epoch records.
    assert!(
        err.contains("[warmup]") && err.contains("[relation]") && err.contains("[train]"),
        "{err}"
    );
    let records = std::fs::read_to_string(dir.join("full/metrics.jsonl")).unwrap();
    assert!(
        records.contains("r_is_pairs") && records.contains("clusters"),
        "{records}"
    );

    // --resume of a finished reproduction reuses both results.
    let (again, _, again_dir) = smoke("csrms", &["--resume"], out_root.path());
    assert_eq!(again_dir, dir);
    let table = |s: &str| {
        s.lines()
            .filter(|l| l.starts_with("| "))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(table(&again), table(&out));

    // A real dataset's directory (the CIFAR-10 binary fixture), with k-means.
    let cifar = fixtures().join("cifar10").display().to_string();
    let args = [
        "--dataset",
        "cifar10",
        "--data-dir",
        &cifar,
        "--clustering",
        "kmeans:4",
    ];
    let (out, _, dir) = smoke("csrms", &args, out_root.path());
    assert!(
        dir.starts_with(out_root.path().join("csrms/cifar10")),
        "{out}"
    );
    let records = std::fs::read_to_string(dir.join("full/metrics.jsonl")).unwrap();
    assert!(records.contains("\"clusters\":4.0"), "{records}");

    // --validation scores on images held out of the training split, and says so.
    let val = out_root.path().join("val");
    let args = ["--epochs", "2", "--validation", "4"];
    let (_, err, dir) = smoke("csrms", &args, &val);
    assert!(
        err.contains("on validation (4 per class held out of train)"),
        "{err}"
    );
    assert_eq!(
        read_metrics(&dir)["dataset"],
        "synth-fine, scored on validation (4 per class held out of train)"
    );
    let (ok, _, err) = xtask(&[
        "reproduce",
        "csrms",
        "--preset",
        "smoke",
        "--validation",
        "12",
        "--out",
        &val.display().to_string(),
    ]);
    assert!(!ok && err.contains("would leave none to train on"), "{err}");
}

/// The default preset starts from the shipped synth-pretrained backbone and `--from-scratch`
/// opts out: two epochs apart, every row is far above the from-scratch run's (measured 81–89 %
/// against 8–14 % top-1).
#[test]
fn csrms_default_preset_starts_pretrained_unless_from_scratch() {
    let out_root = tempfile::tempdir().unwrap();
    let root = out_root.path().display().to_string();
    let run = |extra: &[&str]| {
        let args = [&["--epochs", "2"][..], extra].concat();
        let (dir, config) = reproduce_in("csrms", &args, &root);
        let top1: Vec<f64> = read_metrics(&dir)["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["top1"].as_f64().unwrap())
            .collect();
        (dir, config, top1)
    };
    let (dir, config, pretrained) = run(&[]);
    assert_eq!(config["weights"], "synth-pretrained-resnet18-w8.pth");
    assert!(dir.join("synth-pretrained-resnet18-w8.pth").is_file());
    let (_, config, scratch) = run(&["--from-scratch"]);
    assert!(config["weights"].is_null(), "{config}");
    let (worst, best) = (
        pretrained.iter().copied().fold(f64::MAX, f64::min),
        scratch.iter().copied().fold(f64::MIN, f64::max),
    );
    assert!(
        worst > best + 30.0,
        "pretrained {pretrained:?} vs scratch {scratch:?}"
    );
}

#[test]
fn csrms_bad_arguments_say_what_to_do() {
    let (ok, _, err) = xtask(&["reproduce", "csrms", "--dataset", "cifar100"]);
    assert!(!ok && err.contains("--data-dir"), "{err}");
    let (ok, _, err) = xtask(&["reproduce", "csrms", "--dataset", "imagenet"]);
    assert!(!ok && err.contains("known: synth-fine"), "{err}");
    let (ok, _, err) = xtask(&["reproduce", "csrms", "--clustering", "dbscan"]);
    assert!(!ok && err.contains("art, kmeans or kmeans:K"), "{err}");
    let (ok, _, err) = xtask(&["reproduce", "csrms", "--clustering", "kmeans:many"]);
    assert!(!ok && err.contains("whole number"), "{err}");
    let (ok, _, err) = xtask(&["reproduce", "csrms", "--epochs", "0", "--preset", "smoke"]);
    assert!(!ok && err.contains("epochs"), "{err}");
}

#[test]
fn hrem_smoke_then_search_both_ways() {
    let out_root = tempfile::tempdir().unwrap();
    // Scene counts other than the smoke preset's 60 and 20; HREM alone first.
    let sized = ["--train-scenes", "70", "--dev-scenes", "12"];
    let full_only = [&sized[..], &["--variant", "full"]].concat();
    let (out, _, dir) = smoke("hrem", &full_only, out_root.path());
    assert!(
        out.contains("| full |") && !out.contains("| baseline |"),
        "{out}"
    );
    assert!(!dir.join("baseline").exists());
    let full_row = read_metrics(&dir)["rows"][0].clone();
    // Resuming with both variants trains the baseline and keeps HREM's result.
    let both = [&sized[..], &["--resume"]].concat();
    let (out, err, resumed) = smoke("hrem", &both, out_root.path());
    assert_eq!(resumed, dir);
    assert!(
        out.contains("| baseline |") && out.contains("| full |"),
        "{out}"
    );
    let metrics = read_metrics(&dir);
    assert_eq!(metrics["rows"][1], full_row);
    // HREM trained alone is HREM trained after the baseline (a reproduction trains the two one
    // after the other in one process: nothing of the first may leak into the second).
    let after_baseline = tempfile::tempdir().unwrap();
    let (_, _, plain) = smoke("hrem", &sized, after_baseline.path());
    assert_eq!(read_metrics(&plain)["rows"], metrics["rows"]);
    assert_eq!(metrics["method"], "hrem");
    assert_eq!(metrics["dataset"], "synth-captions");
    for row in 0..2 {
        for key in [
            "i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum",
        ] {
            assert!(metrics["rows"][row][key].is_number(), "{key}: {metrics}");
        }
    }
    // The generated data is in the SCAN precomp layout, with the scene counts asked for (five
    // captions a scene).
    assert!(dir.join("data/train_ims.npy").is_file() && dir.join("data/test_caps.txt").is_file());
    let captions = |split: &str| {
        let path = dir.join(format!("data/{split}_caps.txt"));
        std::fs::read_to_string(path).unwrap().lines().count()
    };
    assert_eq!((captions("train"), captions("dev")), (350, 60));
    assert!(
        dir.join("full/model/model.bpk").is_file() && dir.join("full/model/vocab.json").is_file()
    );
    // Dev selection ran every epoch.
    assert!(err.contains("val rsum"), "{err}");

    // A real precomp directory (the fixture, in Flickr30K's role): the released checkpoints'
    // numbers are printed beside the measured ones.
    let precomp = fixtures().join("precomp").display().to_string();
    let args = ["--dataset", "f30k", "--data-dir", &precomp, "--epochs", "1"];
    let (real, _, real_dir) = smoke("hrem", &args, out_root.path());
    assert!(
        real_dir.starts_with(out_root.path().join("hrem/f30k")),
        "{real}"
    );
    assert!(
        real.contains("i2t_r1 (paper)") && real.contains("84.4"),
        "{real}"
    );

    let run = dir.display().to_string();
    let (ok, out, err) = xtask(&[
        "search",
        "hrem",
        "--run",
        &run,
        "--text",
        "a red cube above a blue ball",
        "--k",
        "3",
    ]);
    assert!(ok, "{err}");
    assert_eq!(result_rows(&out), 3, "{out}");
    assert!(out.contains("nearest images"), "{out}");
    let (ok, out, err) = xtask(&["search", "hrem", "--run", &run, "--image", "0", "--k", "4"]);
    assert!(ok, "{err}");
    assert!(out.contains("nearest captions"), "{out}");
    let (ok, _, err) = xtask(&["search", "hrem", "--run", &run, "--image", "999"]);
    assert!(!ok && err.contains("999"), "{err}");
    let (ok, _, err) = xtask(&["search", "hrem", "--run", &run]);
    assert!(!ok && err.contains("--text"), "{err}");
}

/// HREM's test rSum above the baseline's (the same encoders with L_tri(v, u) alone) on a large
/// synth-captions, on the mean of three seeds with a margin. The relation terms need data: on
/// the default reproduction's 1,000 training scenes HREM is behind its baseline (docs/hrem.md,
/// "Results"). This trains on 30,000 scenes with 500 dev scenes, the default schedule
/// otherwise, each seed's two variants as two processes side by side (a training keeps little
/// more than one core busy): about 70 minutes a seed on 2 AVX-512 cores, 137 on 2 AVX2-only
/// ones. Seed 42 alone was ahead there before the 2026-12-07 training fixes (468.5 against
/// 459.9; docs/notes/hrem-results-log.md); three seeds with today's code have not been run.
/// The epochs print as they end:
///
/// ```text
/// cargo test -p xtask --test reproduce_cli hrem_rsum_above -- --ignored --nocapture
/// ```
#[test]
#[ignore = "30,000 training scenes at three seeds: 3.5 to 7 hours on 2 cores"]
fn hrem_rsum_above_the_baseline_on_30000_synth_scenes() {
    /// rSum points the mean gain must clear (the default reproduction's seeds spread by ±6).
    const MARGIN: f64 = 2.0;
    let mut comparison = relata_train::SeedComparison::new("rsum");
    for seed in [42u64, 1, 2] {
        let [baseline, full] = hrem_30000_scenes(seed);
        comparison.push(seed, baseline, full);
    }
    let summary = comparison.summary(MARGIN);
    eprintln!("{summary}");
    assert!(comparison.holds(MARGIN), "{summary}");
}

/// Test rSum of the baseline and of HREM on 30,000 synth-captions training scenes at `seed`.
fn hrem_30000_scenes(seed: u64) -> [f64; 2] {
    let root = tempfile::tempdir().unwrap();
    let seed = seed.to_string();
    let runs = ["baseline", "full"].map(|variant| {
        let out = root.path().join(variant).display().to_string();
        let child = xtask_command(&[
            "reproduce",
            "hrem",
            "--train-scenes",
            "30000",
            "--dev-scenes",
            "500",
            "--seed",
            &seed,
            "--variant",
            variant,
            "--quiet",
            "--out",
            &out,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("xtask runs");
        (variant, child)
    });
    // Both are waited for before either is judged, so a failure leaves no run behind (their
    // errors print on stderr as they happen).
    let outputs = runs.map(|(variant, child)| (variant, child.wait_with_output()));
    outputs.map(|(variant, out)| {
        let out = out.expect("xtask runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{variant}: {stdout}");
        let metrics = read_metrics(&run_dir(&stdout));
        metrics["rows"][0]["rsum"].as_f64().expect("an rSum")
    })
}

/// `reproduce hrem --dataset f30k --data-dir DATA_DIR` with `extra` arguments.
fn reproduce_f30k(data_dir: &str, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "reproduce",
        "hrem",
        "--dataset",
        "f30k",
        "--data-dir",
        data_dir,
    ];
    args.extend_from_slice(extra);
    xtask(&args)
}

#[test]
fn hrem_bad_arguments_say_what_to_do() {
    let (ok, _, err) = xtask(&["reproduce", "hrem", "--dataset", "f30k"]);
    assert!(!ok && err.contains("--data-dir"), "{err}");
    let precomp = fixtures().join("precomp").display().to_string();
    let (ok, _, err) = reproduce_f30k(&precomp, &["--train-scenes", "30000"]);
    assert!(!ok && err.contains("--train-scenes"), "{err}");
    let (ok, _, err) = xtask(&["reproduce", "hrem", "--variant", "hrem"]);
    assert!(!ok && err.contains("known: baseline, full"), "{err}");
    let (ok, _, err) = xtask(&["reproduce", "hrem", "--dataset", "cc3m"]);
    assert!(
        !ok && err.contains("known: synth-captions, f30k, coco"),
        "{err}"
    );
    let missing = tempfile::tempdir().unwrap();
    let nope = missing.path().join("nope").display().to_string();
    let (ok, _, err) = xtask(&["reproduce", "hrem", "--bert", &nope]);
    assert!(!ok && err.contains("config.json"), "{err}");
    let out = missing.path().display().to_string();
    let (ok, _, err) = reproduce_f30k(&nope, &["--out", &out]);
    assert!(!ok && err.contains("nope"), "{err}");
    // Nothing is written for a run whose data cannot be opened.
    assert!(!missing.path().join("hrem").exists());
    let (ok, _, err) = xtask(&["search", "hrem", "--run", &nope, "--text", "a cube"]);
    assert!(!ok && err.contains("config.json"), "{err}");
}

/// Copies the directory `from` (files and sub-directories) into `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `parity hrem --compare-only` on a copy of the checked-in step-parity case prints the
/// comparison and writes `report.md` / `report.json`; without `--authors-code` (and without
/// `--compare-only`) it says what to pass, and a checkout without `graph_lib.py` is refused.
#[test]
fn parity_hrem_compares_a_case_and_names_what_is_missing() {
    let root = tempfile::tempdir().unwrap();
    let case = root.path().join("case");
    copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/hrem/steps"),
        &case,
    );
    let case_arg = case.display().to_string();
    let (ok, out, err) = xtask(&["parity", "hrem", "--compare-only", "--out", &case_arg]);
    assert!(ok, "{err}");
    assert!(
        out.contains("### full") && out.contains("Every target met"),
        "{out}"
    );
    assert!(case.join("report.md").is_file() && case.join("report.json").is_file());

    let (ok, _, err) = xtask(&["parity", "hrem", "--out", &case_arg]);
    assert!(!ok && err.contains("--authors-code"), "{err}");
    let nowhere = root.path().display().to_string();
    let (ok, _, err) = xtask(&[
        "parity",
        "hrem",
        "--authors-code",
        &nowhere,
        "--out",
        &case_arg,
    ]);
    assert!(!ok && err.contains("graph_lib.py"), "{err}");
}
