//! ISL's weighted-kNN top-1 after the last round against round 0's (instance discrimination
//! alone) on synth-fine: the default reproduction at three seeds, the claim on the mean gain
//! with a margin. About 2.5 minutes a seed on 2 CPU cores, so not part of the default test run:
//!
//! ```text
//! cargo test -p relata-isl --test beats_round0 -- --ignored --nocapture
//! ```
//!
//! 320 test images make one image 0.31 points, and single seeds have moved by several points
//! with the float summation order alone. Even where the claim holds, docs/isl.md shows what the
//! gain is due to: at this budget an instance-discrimination run of the same total epochs does
//! as well, so the gain comes from the second backbone phase, not from the mined positives.

use burn::tensor::Device;
use relata_isl::reproduce::{ReproduceOptions, reproduce};
use relata_train::{Preset, RunSettings, SeedComparison};

/// kNN top-1 points the mean gain must clear.
const MARGIN: f64 = 1.0;

#[test]
#[ignore = "the default reproduction at three seeds: ~7 min on 2 cores"]
fn isl_knn_above_round_0_on_the_mean_of_three_seeds() {
    let mut comparison = SeedComparison::new("knn_top1");
    // 42 is `cargo xtask reproduce`'s default, the run the docs report first.
    for seed in [42u64, 1, 2] {
        let root = tempfile::tempdir().unwrap();
        let mut options = ReproduceOptions::new(Preset::Default);
        options.settings = RunSettings::lines_in(root.path(), seed);
        let outcome = reproduce(&options, &Device::flex()).unwrap();
        let knn = |variant: &str| outcome.results.metric(variant, "knn_top1").unwrap();
        comparison.push(seed, knn("baseline"), knn("full"));
    }
    let summary = comparison.summary(MARGIN);
    eprintln!("{summary}");
    assert!(comparison.holds(MARGIN), "{summary}");
}
