//! HREM's test rSum above the baseline's (the same encoders with L_tri(v, u) alone) on
//! synth-captions with the seed fixed: the default reproduction (about 5 minutes on 2 CPU
//! cores, so not part of the default test run). It is issue 8's check and it fails: with the
//! authors' initialisation HREM is 6.3 points behind at this seed and 7.0 behind over seeds 42,
//! 1 and 2, and the authors' released code on the same data is further behind its own baseline
//! (docs/hrem.md). With burn's initialisation it passed at this seed by luck (level over seeds):
//!
//! ```text
//! cargo test -p relata-hrem --test beats_baseline -- --ignored
//! ```
//!
//! docs/hrem.md records the measured rows.

use burn::tensor::Device;
use relata_hrem::reproduce::{ReproduceOptions, reproduce};
use relata_train::{Preset, RunSettings};

#[test]
#[ignore = "the default reproduction: ~5 min on 2 cores"]
fn hrem_rsum_above_the_baseline_on_synth_captions() {
    let root = tempfile::tempdir().unwrap();
    let mut options = ReproduceOptions::new(Preset::Default);
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
