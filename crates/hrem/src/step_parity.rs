//! Training-step parity with the authors' released code (docs/hrem.md, "Step parity").
//!
//! Three stages share one case directory:
//! 1. [`write_case`] (relata) writes the batches — synth-captions with augmentation and dropout
//!    off, padded exactly as training pads them —, the uniform numbers the distance-weighted
//!    draws consume, the vocabulary and the configuration of each variant (`full`: relations on
//!    from the first step, Fusion, BiGRU, the released code's slots and sampler arithmetic;
//!    `baseline`: L_tri(v, u) alone).
//! 2. `crates/hrem/examples/authors_steps.py` builds the released modules from a checkout of
//!    CrossmodalGroup/HREM, writes their initial weights under relata's names, trains the steps
//!    with `torch.multinomial` replaced by an inverse-CDF draw on the shared numbers, and writes
//!    every loss term of every step and the weights after the first and the last step.
//! 3. [`compare`] (relata) imports those initial weights, trains the same steps through
//!    [`crate::train::step_loss`] and relata's optimiser, and reports the largest relative
//!    difference of every loss term at every step and of every parameter.
//!
//! `fixtures/hrem/steps` holds one such case with the released code's outputs, so
//! `tests/step_parity.rs` guards the comparison without the authors' code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::optim::GradientsParams;
use burn::tensor::Device;
use relata_backbone::{Vocab, import_with_remap};
use relata_dataset::rng::SeededRng;
use relata_metrics::npy::{NpyArray, NpyData, write_npy};
use relata_train::values::{gradient_values, parameter_values};
use relata_train::{Clock, NamedOptimizer, Preset};
use serde::{Deserialize, Serialize};

use crate::config::{FragmentSlots, HremConfig, Interaction, Negatives, RelationConfig};
use crate::data::TextTokenizer;
use crate::error::HremError;
use crate::model::HremModel;
use crate::relation::Connections;
use crate::reproduce::{CaptionData, preset_config, synth_config};
use crate::train::{HremTask, StepInputs, step_loss, trainer_config};

/// Uniform numbers written per step, per caption of the batch: a step draws one per positive
/// pair in each of its eight triplet directions (the batch's captions, plus two per pair of
/// captions of one image). A step that needs more is refused.
const UNIFORMS_PER_CAPTION: usize = 32;

/// What a case is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseSpec {
    /// The preset whose model sizes and batch size the case uses (`smoke` or `default`).
    pub preset: String,
    /// Seed of the data, the batches and the uniform numbers.
    pub seed: u64,
    /// Optimiser steps.
    pub steps: usize,
    /// The configuration of each variant (`full`, `baseline`).
    pub variants: BTreeMap<String, HremConfig>,
    /// Padded widths of every step: `[regions, words]`.
    pub widths: Vec<[usize; 2]>,
    /// Captions per step.
    pub batch: usize,
}

fn io(path: &Path, e: impl std::fmt::Display) -> HremError {
    HremError::Input(format!("{}: {e}", path.display()))
}

/// The configuration of a parity variant: the preset's sizes with the released code's
/// feed-forward width (= the embedding), no dropout or augmentation, relations from the first
/// step, Fusion, and the released code's fragment slots and sampler arithmetic.
pub fn parity_config(preset: Preset, region_dim: usize, relations: bool) -> HremConfig {
    let mut c = preset_config(preset, &CaptionData::SynthCaptions, region_dim, None);
    c.encoder.ff = c.encoder.embed;
    c.encoder.dropout = 0.0;
    c.region_drop = 0.0;
    c.word_augment = 0.0;
    c.warmup_iterations = 0;
    c.relations = relations;
    c.relation = RelationConfig {
        interaction: Interaction::Fusion,
        slots: FragmentSlots::Released,
        ..c.relation
    };
    if let Negatives::DistanceWeighted { n, cutoff } = c.negatives {
        c.negatives = Negatives::DistanceWeightedReleased { n, cutoff };
    }
    c
}

/// Writes a case into `dir`: `case.json`, `vocab.json`, the inputs of every step
/// (`regions.npy`, `region_lengths.npy`, `ids.npy`, `word_lengths.npy`, `images.npy`, padded to
/// the widest step; `case.json` has each step's own width) and `uniforms.npy`.
pub fn write_case(
    dir: &Path,
    preset: Preset,
    seed: u64,
    steps: usize,
) -> Result<CaseSpec, HremError> {
    if steps == 0 {
        return Err(HremError::Config(
            "step parity needs at least one step".into(),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let data = synth_config(preset, seed).write(&dir.join("data"))?;
    let train = data.split("train")?;
    let full = parity_config(preset, train.dim, true);
    let tokenizer = full.tokenizer(train.captions.iter().map(String::as_str))?;
    let TextTokenizer::Vocab(vocab) = &tokenizer else {
        return Err(HremError::Config(
            "step parity runs the BiGRU text encoder".into(),
        ));
    };
    vocab.save(&dir.join("vocab.json"))?;
    let task = HremTask::new(full.clone(), train, None, &tokenizer)?;
    // Batches: consecutive slices of seeded permutations of the captions.
    let mut rng = SeededRng::new(seed);
    let b = full.batch_size;
    let mut order: Vec<usize> = Vec::new();
    let mut inputs = Vec::with_capacity(steps);
    for _ in 0..steps {
        if order.len() < b {
            let mut more: Vec<usize> = (0..train.captions.len()).collect();
            rng.shuffle(&mut more);
            order.extend(more);
        }
        let batch: Vec<usize> = order.drain(..b).collect();
        inputs.push(task.inputs(&batch, &mut rng)?);
    }
    let per_step = UNIFORMS_PER_CAPTION * b;
    // float32, so that both sides read the same numbers from a small file.
    let uniforms: Vec<f32> = (0..steps * per_step)
        .map(|_| rng.next_f64() as f32)
        .collect();
    let widths: Vec<[usize; 2]> = inputs
        .iter()
        .map(|i| [i.regions.1[1], i.ids.1[1]])
        .collect();
    let (lr, lw) = widths
        .iter()
        .fold((0, 0), |(a, b), w| (a.max(w[0]), b.max(w[1])));
    let dim = train.dim;
    let mut regions = vec![0f32; steps * b * lr * dim];
    let mut ids = vec![0i64; steps * b * lw];
    for (s, step) in inputs.iter().enumerate() {
        let [_, l, _] = step.regions.1;
        for (j, row) in step.regions.0.chunks(l * dim).enumerate() {
            let at = (s * b + j) * lr * dim;
            regions[at..at + row.len()].copy_from_slice(row);
        }
        let w = step.ids.1[1];
        for (j, row) in step.ids.0.chunks(w).enumerate() {
            let at = (s * b + j) * lw;
            ids[at..at + w].copy_from_slice(row);
        }
    }
    let lengths = |f: &dyn Fn(&StepInputs) -> &Vec<usize>| -> Vec<i64> {
        inputs
            .iter()
            .flat_map(|i| f(i).iter().map(|&x| x as i64))
            .collect()
    };
    let npy = |name: &str| dir.join(name);
    let write =
        |name: &str, r: Result<(), relata_metrics::MetricsError>| r.map_err(|e| io(&npy(name), e));
    write(
        "regions.npy",
        write_npy(npy("regions.npy"), &[steps, b, lr, dim], &regions),
    )?;
    write("ids.npy", write_npy(npy("ids.npy"), &[steps, b, lw], &ids))?;
    for (name, values) in [
        ("region_lengths.npy", lengths(&|i| &i.regions.2)),
        ("word_lengths.npy", lengths(&|i| &i.ids.2)),
        (
            "images.npy",
            inputs
                .iter()
                .flat_map(|i| i.images.iter().map(|&x| x as i64))
                .collect(),
        ),
    ] {
        write(name, write_npy(npy(name), &[steps, b], &values))?;
    }
    write(
        "uniforms.npy",
        write_npy(npy("uniforms.npy"), &[steps, per_step], &uniforms),
    )?;
    let spec = CaseSpec {
        preset: preset.name().to_string(),
        seed,
        steps,
        variants: BTreeMap::from([
            ("full".to_string(), full),
            ("baseline".to_string(), parity_config(preset, dim, false)),
        ]),
        widths,
        batch: b,
    };
    let json = serde_json::to_vec_pretty(&spec).map_err(|e| io(dir, e))?;
    std::fs::write(dir.join("case.json"), json).map_err(|e| io(&dir.join("case.json"), e))?;
    Ok(spec)
}

/// A case read back.
struct Case {
    spec: CaseSpec,
    vocab: Vocab,
    inputs: Vec<StepInputs>,
    uniforms: Vec<Vec<f64>>,
}

fn read_npy(path: &Path) -> Result<NpyArray, HremError> {
    NpyArray::read(path).map_err(|e| io(path, e))
}

fn read_case(dir: &Path) -> Result<Case, HremError> {
    let path = dir.join("case.json");
    let bytes = std::fs::read(&path).map_err(|e| {
        io(
            &path,
            format!("{e} (write a case with `cargo xtask parity hrem`)"),
        )
    })?;
    let spec: CaseSpec = serde_json::from_slice(&bytes).map_err(|e| io(&path, e))?;
    let vocab = Vocab::load(&dir.join("vocab.json"))?;
    let regions = read_npy(&dir.join("regions.npy"))?;
    let ids = read_npy(&dir.join("ids.npy"))?;
    let ints = |name: &str| -> Result<Vec<usize>, HremError> {
        let p = dir.join(name);
        Ok(read_npy(&p)?
            .to_i64()
            .map_err(|e| io(&p, e))?
            .into_iter()
            .map(|x| x as usize)
            .collect())
    };
    let (region_lengths, word_lengths, images) = (
        ints("region_lengths.npy")?,
        ints("word_lengths.npy")?,
        ints("images.npy")?,
    );
    let uniforms = read_npy(&dir.join("uniforms.npy"))?;
    let (s, b) = (spec.steps, spec.batch);
    let (&[_, _, lr, dim], &[_, _, lw]) = (regions.shape.as_slice(), ids.shape.as_slice()) else {
        return Err(io(
            dir,
            "regions.npy must be [steps, b, l, dim] and ids.npy [steps, b, l]",
        ));
    };
    if regions.shape[..2] != [s, b] || ids.shape[..2] != [s, b] || spec.widths.len() != s {
        return Err(io(
            dir,
            format!("the inputs do not hold {s} steps of {b} captions"),
        ));
    }
    let (regions, ids) = (regions.to_f32(), ids.to_i64().map_err(|e| io(dir, e))?);
    let u: Vec<f64> = match uniforms.data {
        NpyData::F32(v) => v.into_iter().map(f64::from).collect(),
        _ => return Err(io(&dir.join("uniforms.npy"), "expected float32 values")),
    };
    let per = u.len() / s.max(1);
    let inputs = (0..s)
        .map(|step| {
            let [wr, ww] = spec.widths[step];
            let rows = step * b..(step + 1) * b;
            let r: Vec<f32> = rows
                .clone()
                .flat_map(|j| regions[j * lr * dim..(j * lr + wr) * dim].iter().copied())
                .collect();
            let t: Vec<i64> = rows
                .clone()
                .flat_map(|j| ids[j * lw..j * lw + ww].iter().copied())
                .collect();
            StepInputs {
                regions: (r, [b, wr, dim], region_lengths[rows.clone()].to_vec()),
                ids: (t, [b, ww], word_lengths[rows.clone()].to_vec()),
                images: images[rows].to_vec(),
            }
        })
        .collect();
    Ok(Case {
        uniforms: u.chunks(per).map(<[f64]>::to_vec).collect(),
        spec,
        vocab,
        inputs,
    })
}

/// The released code's connections of every step, `[steps, 4, n, n]` (i2i, t2t, i2t, t2i).
struct ReleasedLinks {
    n: usize,
    cells: Vec<bool>,
}

impl ReleasedLinks {
    fn step(&self, step: usize) -> Connections {
        let n = self.n;
        let block = |j: usize| {
            let at = (step * 4 + j) * n * n;
            self.cells[at..at + n * n].to_vec()
        };
        Connections {
            ii: block(0),
            tt: block(1),
            it: block(2),
            ti: block(3),
            n,
        }
    }
}

fn read_links(path: &Path) -> Result<Option<ReleasedLinks>, HremError> {
    if !path.is_file() {
        return Ok(None);
    }
    let array = read_npy(path)?;
    let (NpyData::Bool(cells), &[_, 4, n, m]) = (array.data, array.shape.as_slice()) else {
        return Err(io(path, "expected booleans of shape [steps, 4, n, n]"));
    };
    if n != m {
        return Err(io(path, "expected square connection blocks"));
    }
    Ok(Some(ReleasedLinks { n, cells }))
}

/// What the released code recorded for one variant (`reference/<variant>.json`).
#[derive(Debug, Deserialize)]
struct Reference {
    /// Per step, each loss term (`tri`, `cross`, `reg`, `total`).
    losses: Vec<BTreeMap<String, f64>>,
    /// Per step, how many uniform numbers the draws consumed.
    draws: Vec<usize>,
    /// Per step, how many triplet directions the released sampler scored as zero.
    #[serde(default)]
    dropped: Vec<usize>,
    /// Per step, the middle of each drawn column's share of its row (a fraction of the row's
    /// sum): the numbers relata draws with, so that a draw within float noise of a share's edge
    /// picks the same negative on both sides.
    #[serde(default)]
    middles: Vec<Vec<f64>>,
}

/// Targets: every loss term within this relative difference at the first step …
pub const LOSS_FIRST: f64 = 1e-4;
/// … and at every later step; every parameter after the last step (but [`ZERO_GRADIENT`]).
pub const LOSS_LATER: f64 = 1e-3;
/// See [`LOSS_LATER`].
pub const PARAMS_LAST: f64 = 1e-3;

/// Parameters whose gradient is zero analytically: the bias of the linear map before the
/// region MLP's batch norm (the norm subtracts the batch mean) and every attention key bias
/// (it adds one constant to all of a query's logits). Both implementations get float noise
/// there, which Adam divides by its own size: such a parameter moves by about ±lr per step in a
/// direction neither side can predict. They change no training output and are reported, not
/// held to [`PARAMS_LAST`].
pub const ZERO_GRADIENT: [&str; 2] = ["image.mlp1.bias", "attention.key.bias"];

/// Whether `path` is one of the [`ZERO_GRADIENT`] parameters.
pub fn zero_gradient(path: &str) -> bool {
    ZERO_GRADIENT.iter().any(|z| path.ends_with(z))
}

/// One variant's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct VariantParity {
    /// `full` or `baseline`.
    pub variant: String,
    /// Per step, per loss term: |relata − released| / |released|.
    pub losses: Vec<BTreeMap<String, f64>>,
    /// Per step: (relata's, the released code's) number of uniform draws.
    pub draws: Vec<(usize, usize)>,
    /// Per step: directions the released sampler scored as zero.
    pub dropped: Vec<usize>,
    /// The first step's gradients (before clipping), per parameter: max |Δ| / max |released|.
    pub grads_first: BTreeMap<String, f64>,
    /// After the first step: per parameter (dotted path), max |Δ| / max |released|.
    pub params_first: BTreeMap<String, f64>,
    /// After the last step.
    pub params_last: BTreeMap<String, f64>,
    /// The released code against itself, where `control/` holds a second run of it.
    pub spread: Option<Spread>,
    /// Per step (relations on), how many connection cells relata computed otherwise than the
    /// released code; the released connections are the ones trained with.
    pub links_differ: Vec<usize>,
}

/// How far the released code drifts from itself when only the order of its float sums changes
/// (`control/`: the same case run with one CPU thread instead of two) — the floor under any
/// comparison of two implementations over many steps.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    /// Per step, the largest relative difference over the loss terms.
    pub losses: Vec<f64>,
    /// After the last step, per parameter.
    pub params_last: BTreeMap<String, f64>,
}

/// |got − want| / |want|.
fn relative(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs().max(1e-12)
}

/// Per term of `want`, the relative difference of `got`'s (a term `got` lacks counts as 0).
fn term_differences(
    got: &BTreeMap<String, f64>,
    want: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    want.iter()
        .map(|(term, &w)| {
            (
                term.clone(),
                relative(got.get(term).copied().unwrap_or(0.0), w),
            )
        })
        .collect()
}

/// The largest of `values`.
fn largest<'a>(values: impl IntoIterator<Item = &'a f64>) -> f64 {
    values.into_iter().fold(0.0, |m: f64, &x| m.max(x))
}

/// The largest value of `params` over the parameters held to the target.
fn worst_param(params: &BTreeMap<String, f64>) -> f64 {
    params
        .iter()
        .filter(|(p, _)| !zero_gradient(p))
        .map(|(_, d)| d)
        .fold(0.0, |m: f64, &d| m.max(d))
}

fn read_reference(path: &Path) -> Result<Reference, HremError> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| io(path, e))
}

impl VariantParity {
    /// The largest loss difference over every step after the first, and the largest parameter
    /// difference after the last step (zero-gradient parameters aside).
    pub fn worst(&self) -> (f64, f64) {
        let later = largest(self.losses.iter().skip(1).flat_map(|l| l.values()));
        (later, worst_param(&self.params_last))
    }

    /// The largest loss difference at `step` (0-based) over its terms.
    pub fn loss_at(&self, step: usize) -> f64 {
        largest(self.losses[step].values())
    }

    /// Every target missed, in words; empty when all are met.
    pub fn misses(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (step, _) in self.losses.iter().enumerate() {
            let bound = if step == 0 { LOSS_FIRST } else { LOSS_LATER };
            let d = self.loss_at(step);
            if d.is_nan() || d > bound {
                out.push(format!(
                    "{}: loss at step {} differs by {d:.2e} (target {bound:.0e})",
                    self.variant,
                    step + 1
                ));
            }
        }
        for (path, &d) in &self.params_last {
            if !zero_gradient(path) && (d.is_nan() || d > PARAMS_LAST) {
                out.push(format!(
                    "{}: {path} after the last step differs by {d:.2e} (target {PARAMS_LAST:.0e})",
                    self.variant
                ));
            }
        }
        for (step, (a, b)) in self.draws.iter().enumerate() {
            if a != b {
                out.push(format!(
                    "{}: step {} draws {a} numbers, the released code {b}",
                    self.variant,
                    step + 1
                ));
            }
        }
        out
    }
}

/// Per parameter, max |a − b| / max |b|.
fn param_differences(
    ours: &BTreeMap<String, Vec<f32>>,
    theirs: &BTreeMap<String, Vec<f32>>,
) -> Result<BTreeMap<String, f64>, String> {
    let mut diff = BTreeMap::new();
    for (path, b) in theirs {
        let a = ours.get(path).ok_or_else(|| {
            format!("the released weights have `{path}`, relata's model does not")
        })?;
        if a.len() != b.len() {
            return Err(format!("`{path}`: {} values against {}", a.len(), b.len()));
        }
        let (mut d, mut scale) = (0f64, 0f64);
        for (x, y) in a.iter().zip(b) {
            d = d.max(f64::from((x - y).abs()));
            scale = scale.max(f64::from(y.abs()));
        }
        diff.insert(path.clone(), d / scale.max(1e-12));
    }
    Ok(diff)
}

fn load_weights(skeleton: &HremModel, path: &Path) -> Result<HremModel, HremError> {
    let mut model = skeleton.clone();
    import_with_remap(&mut model, path, &[], &[])?;
    Ok(model)
}

/// Trains each variant of the case in `dir` that has a `reference/` from the released code on
/// `device` (plain; autodiff is added here) and compares it (see the module documentation).
pub fn compare(dir: &Path, device: &Device) -> Result<Vec<VariantParity>, HremError> {
    let case = read_case(dir)?;
    let device = device.clone().autodiff();
    let mut out = Vec::new();
    for (name, config) in &case.spec.variants {
        let reference_dir = dir.join("reference");
        let path = reference_dir.join(format!("{name}.json"));
        if !path.is_file() {
            continue;
        }
        let reference = read_reference(&path)?;
        let weights = |tag: &str| reference_dir.join(format!("{name}_{tag}.pth"));
        let skeleton = skeleton(config, &case.vocab, &device);
        let mut model = load_weights(&skeleton, &weights("init"))?;
        let trainer = trainer_config(config, false);
        let mut optimizer = NamedOptimizer::new(trainer.optimizers[0].clone());
        let steps = case.spec.steps.min(reference.losses.len());
        let mut result = VariantParity {
            variant: name.clone(),
            losses: Vec::new(),
            draws: Vec::new(),
            dropped: reference.dropped.clone(),
            grads_first: BTreeMap::new(),
            params_first: BTreeMap::new(),
            params_last: BTreeMap::new(),
            spread: None,
            links_differ: Vec::new(),
        };
        let released_links = read_links(&reference_dir.join(format!("{name}_links.npy")))?;
        let mut released_last = BTreeMap::new();
        for step in 0..steps {
            // The released draws' middles where recorded, else the case's numbers.
            let middles = reference.middles.get(step).filter(|m| !m.is_empty());
            let pool = middles.unwrap_or(&case.uniforms[step]);
            let mut used = 0;
            let mut draw = || {
                let u = pool.get(used).copied().unwrap_or(f64::NAN);
                used += 1;
                u
            };
            let mut differ = 0;
            let mut links = |ours: Connections| match released_links.as_ref() {
                Some(all) => {
                    let theirs = all.step(step);
                    differ = ours.differing_cells(&theirs);
                    theirs
                }
                None => ours,
            };
            let loss = step_loss(
                config,
                &model,
                &case.inputs[step],
                config.relations,
                &mut draw,
                &mut links,
                &device,
            );
            if config.relations {
                result.links_differ.push(differ);
            }
            let mut terms: BTreeMap<String, f64> = BTreeMap::new();
            for (term, value) in loss.terms() {
                terms.insert(term.clone(), f64::from(value.clone().into_scalar::<f32>()));
            }
            let total = loss.total().expect("the loss has a term");
            terms.insert(
                "total".into(),
                f64::from(total.clone().into_scalar::<f32>()),
            );
            let differences = term_differences(&terms, &reference.losses[step]);
            // (With the released middles, a different count is a miss, reported below.)
            if used > pool.len() && middles.is_none() {
                return Err(io(
                    &dir.join("uniforms.npy"),
                    format!(
                        "step {} draws {used} numbers, the case has {}",
                        step + 1,
                        pool.len()
                    ),
                ));
            }
            result.losses.push(differences);
            result.draws.push((used, reference.draws[step]));
            let mut grads = total.backward();
            let params = GradientsParams::from_module(&mut grads, &model);
            if step == 0 && weights("grads").is_file() {
                let ours = gradient_values(&model, &params);
                let theirs = parameter_values(&load_weights(&skeleton, &weights("grads"))?);
                result.grads_first =
                    param_differences(&ours, &theirs).map_err(|e| io(&weights("grads"), e))?;
            }
            let clock = Clock {
                epoch: 0,
                iteration: step,
                iterations_per_epoch: steps,
                iteration_in_epoch: step,
            };
            model = optimizer.apply(model, params, &clock, 1.0).0;
            // The checked-in fixture keeps the last weights only.
            if step == 0 && weights("first").is_file() {
                let released = parameter_values(&load_weights(&skeleton, &weights("first"))?);
                result.params_first = param_differences(&parameter_values(&model), &released)
                    .map_err(|e| io(&weights("first"), e))?;
            }
            if step + 1 == steps {
                released_last = parameter_values(&load_weights(&skeleton, &weights("last"))?);
                result.params_last = param_differences(&parameter_values(&model), &released_last)
                    .map_err(|e| io(&weights("last"), e))?;
            }
        }
        let control = dir.join("control");
        if control.join(format!("{name}.json")).is_file() {
            let other = read_reference(&control.join(format!("{name}.json")))?;
            let losses = other
                .losses
                .iter()
                .zip(&reference.losses)
                .map(|(got, want)| largest(term_differences(got, want).values()))
                .collect();
            let last = control.join(format!("{name}_last.pth"));
            let params_last = param_differences(
                &parameter_values(&load_weights(&skeleton, &last)?),
                &released_last,
            )
            .map_err(|e| io(&last, e))?;
            result.spread = Some(Spread {
                losses,
                params_last,
            });
        }
        out.push(result);
    }
    if out.is_empty() {
        return Err(io(
            &dir.join("reference"),
            "no variant has the released code's outputs: run crates/hrem/examples/authors_steps.py \
             on this case first",
        ));
    }
    Ok(out)
}

/// An untrained model of `config` for the case's vocabulary.
fn skeleton(config: &HremConfig, vocab: &Vocab, device: &Device) -> HremModel {
    let tokenizer = TextTokenizer::Vocab(vocab.clone());
    config
        .init(&tokenizer, false, device)
        .expect("a BiGRU model builds without files")
}

/// The case directory of the checked-in fixture.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hrem/steps")
}

/// A Markdown table of the comparison: the largest relative difference of each loss term at
/// the first and the last step, and of each parameter after them.
pub fn markdown(results: &[VariantParity]) -> String {
    let mut s = String::new();
    for r in results {
        let last = r.losses.len().saturating_sub(1);
        s.push_str(&format!(
            "### {}\n\n| loss term | step 1 | step {} |\n| --- | --- | --- |\n",
            r.variant,
            last + 1
        ));
        for term in r.losses[0].keys() {
            s.push_str(&format!(
                "| {term} | {:.2e} | {:.2e} |\n",
                r.losses[0][term],
                r.losses[last].get(term).copied().unwrap_or(f64::NAN)
            ));
        }
        s.push_str(&format!(
            "\n| parameter | gradient, step 1 | after step 1 | after step {} |\n\
             | --- | --- | --- | --- |\n",
            last + 1
        ));
        let cell = |m: &BTreeMap<String, f64>, g: &str| {
            m.get(g).map_or("—".to_string(), |x| format!("{x:.2e}"))
        };
        for (g, d) in &r.params_last {
            let first = format!("{} | {}", cell(&r.grads_first, g), cell(&r.params_first, g));
            let mark = if zero_gradient(g) {
                " (zero gradient)"
            } else {
                ""
            };
            s.push_str(&format!("| {g}{mark} | {first} | {d:.2e} |\n"));
        }
        let misses = r.misses();
        if misses.is_empty() {
            s.push_str(&format!(
                "\nEvery target met: losses within {LOSS_FIRST:.0e} at step 1 and {LOSS_LATER:.0e} \
                 after, every parameter within {PARAMS_LAST:.0e} after the last step (the \
                 zero-gradient parameters are not held to it: {}).\n",
                ZERO_GRADIENT.join(", ")
            ));
        } else {
            s.push_str("\n**Targets missed:**\n");
            for m in misses {
                s.push_str(&format!("- {m}\n"));
            }
        }
        if let Some(spread) = &r.spread {
            let (loss, params) = r.worst();
            let own = largest(spread.losses.iter().skip(1));
            s.push_str(&format!(
                "\nrelata against the released code: losses up to {loss:.1e} after step 1, \
                 parameters up to {params:.1e} after the last step. The released code against \
                 itself (one CPU thread instead of two, nothing else changed): losses up to \
                 {own:.1e}, parameters up to {:.1e}.\n",
                worst_param(&spread.params_last)
            ));
        }
        let differ: usize = r.links_differ.iter().sum();
        if differ > 0 {
            let steps: Vec<usize> = (0..r.links_differ.len())
                .filter(|&i| r.links_differ[i] > 0)
                .map(|i| i + 1)
                .collect();
            s.push_str(&format!(
                "\nrelata's own connections differed from the released code's in {differ} \
                 cell(s), at steps {steps:?} (a score within float noise of a row's k-th \
                 largest); both sides trained with the released ones.\n"
            ));
        }
        let dropped: usize = r.dropped.iter().sum();
        if dropped > 0 {
            s.push_str(&format!(
                "\nThe released sampler scored {dropped} triplet direction(s) as zero over the steps.\n"
            ));
        }
        s.push('\n');
    }
    s
}
