//! HREM's test rSum above the baseline's (the same encoders with L_tri(v, u) alone) on
//! synth-captions with the seed fixed: issue 8's check. The relation terms need data: on the
//! default reproduction's 1,000 training scenes HREM is 7.0 points behind its baseline over
//! seeds 42, 1 and 2 (the authors' released code 15.8 behind over nine seeds), level at 10,000
//! scenes, and ahead at 30,000 (docs/hrem.md, "Thirty thousand scenes"). So this check trains
//! on 30,000 scenes with 500 dev scenes, the default schedule otherwise — about an hour and a
//! quarter on 2 CPU cores, so not part of the default test run:
//!
//! ```text
//! cargo test -p relata-hrem --test beats_baseline -- --ignored
//! ```
//!
//! The same run from the command line:
//! `cargo xtask reproduce hrem --train-scenes 30000 --dev-scenes 500`.

use burn::tensor::Device;
use relata_hrem::reproduce::{ReproduceOptions, reproduce};
use relata_train::{Preset, RunSettings};

#[test]
#[ignore = "30,000 training scenes: ~75 min on 2 cores"]
fn hrem_rsum_above_the_baseline_on_synth_captions() {
    let root = tempfile::tempdir().unwrap();
    let mut options = ReproduceOptions::new(Preset::Default);
    options.train_scenes = Some(30_000);
    options.dev_scenes = Some(500);
    // Seed 42: `cargo xtask reproduce`'s default, the run the docs report.
    options.settings = RunSettings::lines_in(root.path(), 42);
    let outcome = reproduce(&options, &Device::flex()).unwrap();
    let rsum = |variant: &str| outcome.results.metric(variant, "rsum").unwrap();
    let (baseline, full) = (rsum("baseline"), rsum("full"));
    assert!(
        full > baseline,
        "HREM rSum {full:.1} ≤ baseline {baseline:.1}"
    );
}
