//! HREM's test rSum above the baseline's (the same encoders with L_tri(v, u) alone) on
//! synth-captions with the seed fixed: the default reproduction (about 10 minutes on 2 CPU
//! cores, so not part of the default test run):
//!
//! ```text
//! cargo test -p relata-hrem --test beats_baseline -- --ignored
//! ```
//!
//! docs/hrem.md records the measured rows.

use burn::tensor::Device;
use relata_hrem::reproduce::{ReproduceOptions, reproduce};
use relata_train::{Preset, Verbosity};

#[test]
#[ignore = "the default reproduction: ~10 min on 2 cores"]
fn hrem_rsum_above_the_baseline_on_synth_captions() {
    let root = tempfile::tempdir().unwrap();
    let mut options = ReproduceOptions::new(Preset::Default);
    options.settings.out = root.path().to_path_buf();
    options.settings.seed = 42; // `cargo xtask reproduce`'s default, the run docs report
    options.settings.verbosity = Verbosity::Lines;
    let outcome = reproduce(&options, &Device::flex()).unwrap();
    let rsum = |variant: &str| {
        outcome
            .results
            .rows
            .iter()
            .find(|r| r["variant"] == variant)
            .and_then(|r| r["rsum"].as_f64())
            .unwrap()
    };
    let (baseline, full) = (rsum("baseline"), rsum("full"));
    assert!(
        full > baseline,
        "HREM rSum {full:.1} ≤ baseline {baseline:.1}"
    );
}
