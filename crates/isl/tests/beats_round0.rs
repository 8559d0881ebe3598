//! ISL's weighted-kNN top-1 after the last round ≥ round 0's (instance discrimination alone) on
//! synth-fine, as a mean over three seeds of the default reproduction (about 2.5 minutes a
//! seed on 2 CPU cores since relata's flex kernels, so not part of the default test run):
//!
//! ```text
//! cargo test -p relata-isl --test beats_round0 -- --ignored
//! ```
//!
//! One seed is not enough: 320 test images make one image 0.31 points, and the backbone's 1×1
//! matrix-product path (which only reorders float sums) moved seed 42 from +5.9 points to −0.9.
//! docs/isl.md records the per-seed rows and what the gain is due to: at this budget an
//! instance-discrimination run of the same total epochs does as well, so the gain comes from
//! the second backbone phase, not from the mined positives.

use burn::tensor::Device;
use relata_isl::reproduce::{ReproduceOptions, reproduce};
use relata_train::{Preset, RunSettings};

#[test]
#[ignore = "the default reproduction at three seeds: ~7 min on 2 cores"]
fn isl_knn_at_least_round_0_on_synth_fine() {
    // 42 is `cargo xtask reproduce`'s default, the run the docs report first.
    let seeds = [42u64, 1, 2];
    let (mut round0, mut last) = (Vec::new(), Vec::new());
    for &seed in &seeds {
        let root = tempfile::tempdir().unwrap();
        let mut options = ReproduceOptions::new(Preset::Default);
        options.settings = RunSettings::lines_in(root.path(), seed);
        let outcome = reproduce(&options, &Device::flex()).unwrap();
        let knn = |variant: &str| outcome.results.metric(variant, "knn_top1").unwrap();
        round0.push(knn("baseline"));
        last.push(knn("full"));
        eprintln!(
            "seed {seed}: round 0 {:.2}%, last round {:.2}%",
            round0.last().unwrap(),
            last.last().unwrap()
        );
    }
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let (round0, last) = (mean(&round0), mean(&last));
    assert!(
        last >= round0,
        "mean ISL kNN top-1 over seeds {seeds:?}: {last:.2}% < round 0's {round0:.2}%"
    );
}
