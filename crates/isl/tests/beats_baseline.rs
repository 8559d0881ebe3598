//! ISL's claim — mined positives beat instance discrimination — on synth-fine: the default
//! reproduction at three seeds, ISL's weighted-kNN top-1 against the equal-budget baseline
//! (instance discrimination alone for as many backbone epochs), the claim on the mean gain with
//! a margin. About 4.5 minutes a seed on 2 CPU cores, so not part of the default test run:
//!
//! ```text
//! cargo test -p relata-isl --test beats_baseline -- --ignored --nocapture
//! ```
//!
//! 320 test images make one image 0.31 points, and single seeds have moved by several points
//! with the float summation order alone. docs/isl.md has the current numbers.

use burn::tensor::Device;
use relata_isl::reproduce::{ReproduceOptions, reproduce};
use relata_train::{Preset, RunSettings, SeedComparison};

/// kNN top-1 points the mean gain must clear.
const MARGIN: f64 = 1.0;

#[test]
#[ignore = "the default reproduction at three seeds: ~14 min on 2 cores"]
fn isl_knn_above_the_equal_budget_baseline_on_the_mean_of_three_seeds() {
    let mut comparison = SeedComparison::new("knn_top1");
    let mut round0 = Vec::new();
    // 42 is `cargo xtask reproduce`'s default, the run the docs report first.
    for seed in [42u64, 1, 2] {
        let root = tempfile::tempdir().unwrap();
        let mut options = ReproduceOptions::new(Preset::Default);
        options.settings = RunSettings::lines_in(root.path(), seed);
        let outcome = reproduce(&options, &Device::flex()).unwrap();
        let knn = |variant: &str| outcome.results.metric(variant, "knn_top1").unwrap();
        comparison.push(seed, knn("baseline"), knn("full"));
        let mining = |k: &str| outcome.results.metric("full", k).unwrap_or(f64::NAN);
        round0.push(format!(
            "seed {seed}: round0 {:.2}, mined {:.2} per instance at precision {:.3} (chance {:.3})",
            knn("round0"),
            mining("mined_per_instance"),
            mining("mining_precision"),
            mining("chance_precision"),
        ));
    }
    let summary = comparison.summary(MARGIN);
    eprintln!("{summary}\n{}", round0.join("\n"));
    assert!(comparison.holds(MARGIN), "{summary}");
}
