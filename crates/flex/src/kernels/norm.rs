//! Batch normalisation on the `flex` backend: the training forward (batch statistics), its
//! backward, and the inference forward (running statistics), each a pass or two over the
//! activation (see [`super`]).
//!
//! Why: burn 0.22 has a batch-norm node in autodiff, but burn-flex keeps burn-backend's default
//! kernels, written as tensor ops — a channels-first layout copy (`swap_dims` + `reshape`) for
//! each of the mean, the variance and the two gradient sums, and about ten broadcast
//! element-wise passes between them. On a ResNet-18 training step at 112² those copies alone
//! were 5% of the time, and batch norm's inference forward took 4× PyTorch's
//! (docs/notes/2026-11-performance-log.md). Here, for `x` of shape `[N, C, …]` with `M = N·Π(…)` values per
//! channel:
//!
//! - statistics: one pass per channel, `Σx` and `Σx²` summed in f64 (the f32 values' squares
//!   are exact there, so `Σx²/M − mean²` loses nothing that matters at these sizes);
//! - forward: `y = (x − mean) · γ/√(σ² + ε) + β`, the biased variance, as PyTorch;
//! - backward: per channel `A = Σ dy` and `B = Σ dy·(x − mean)` (f64), then
//!   `dx = γ·s·(dy − A/M − (x − mean)·s²·B/M)` with `s = 1/√(σ² + ε)`, `dγ = B·s`, `dβ = A`
//!   (PyTorch's formula); only the gradients autodiff asks for are computed.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use super::{contiguous, elements, flex_device, par_filled, tensor};

/// `[N, C, …]` seen as `N·C` rows of `spatial` values, row `n·C + c` in channel `c`.
#[derive(Debug, Clone, Copy)]
struct Layout {
    batch: usize,
    channels: usize,
    spatial: usize,
}

impl Layout {
    fn new(shape: &[usize]) -> Option<Self> {
        let (&batch, rest) = shape.split_first()?;
        let (&channels, spatial) = rest.split_first()?;
        let spatial = spatial.iter().product();
        (batch * channels * spatial > 0).then_some(Self {
            batch,
            channels,
            spatial,
        })
    }

    /// Values per channel.
    fn per_channel(&self) -> usize {
        self.batch * self.spatial
    }

    /// Rows per rayon task in the element-wise passes: about 4,096 values each.
    fn rows_per_task(&self) -> usize {
        (4096 / self.spatial).max(1)
    }
}

/// `Σ_i f(a_i, b_i)` in f64 over two equal-length rows, eight lanes at a time (so the sum
/// vectorises without reassociating floating-point additions behind the compiler's back).
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f64, f64) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let (a8, a_rest) = a.as_chunks::<8>();
    let (b8, b_rest) = b.as_chunks::<8>();
    for (a, b) in a8.iter().zip(b8) {
        for l in 0..8 {
            lanes[l] += f(a[l] as f64, b[l] as f64);
        }
    }
    let tail: f64 = a_rest
        .iter()
        .zip(b_rest)
        .map(|(&a, &b)| f(a as f64, b as f64))
        .sum();
    lanes.iter().sum::<f64>() + tail
}

/// Per channel, `(Σ f(x, y), Σ g(x, y))` over the channel's rows of `xs` and `ys` (the same
/// layout), each in f64.
fn channel_sums(
    xs: &[f32],
    ys: &[f32],
    l: &Layout,
    f: impl Fn(f64, f64) -> f64 + Sync,
    g: impl Fn(f64, f64) -> f64 + Sync,
) -> Vec<(f64, f64)> {
    (0..l.channels)
        .into_par_iter()
        .map(|c| {
            (0..l.batch).fold((0.0, 0.0), |(sf, sg), n| {
                let row = (n * l.channels + c) * l.spatial..(n * l.channels + c + 1) * l.spatial;
                let (x, y) = (&xs[row.clone()], &ys[row]);
                (sf + lane_sum(x, y, &f), sg + lane_sum(x, y, &g))
            })
        })
        .collect()
}

/// A tensor of `l`'s size whose row `r` (channel `r % C`) is written by `fill(c, r, row)`;
/// rows in parallel.
fn map_rows(l: &Layout, fill: impl Fn(usize, usize, &mut [f32]) + Sync) -> Vec<f32> {
    let len = l.batch * l.channels * l.spatial;
    par_filled(len, l.spatial, l.rows_per_task(), |r, row| {
        fill(r % l.channels, r, row)
    })
}

/// Batch mean and biased variance per channel.
fn statistics(xs: &[f32], l: &Layout) -> (Vec<f32>, Vec<f32>) {
    let m = l.per_channel() as f64;
    channel_sums(xs, xs, l, |x, _| x, |x, _| x * x)
        .into_iter()
        .map(|(sum, squares)| {
            let mean = sum / m;
            (mean as f32, (squares / m - mean * mean).max(0.0) as f32)
        })
        .unzip()
}

/// `1/√(σ² + ε)` per channel.
pub(crate) fn inverse_std(variance: &[f32], epsilon: f64) -> Vec<f32> {
    variance
        .iter()
        .map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32)
        .collect()
}

/// `γ·inv_std` per channel: what batch norm multiplies `x − mean` by.
pub(crate) fn channel_scale(gamma: &[f32], inv_std: &[f32]) -> Vec<f32> {
    gamma.iter().zip(inv_std).map(|(g, s)| g * s).collect()
}

/// `y = (x − mean)·scale + β` with `scale = γ·inv_std`, per channel.
fn normalise(xs: &[f32], l: &Layout, mean: &[f32], scale: &[f32], beta: &[f32]) -> Vec<f32> {
    map_rows(l, |c, r, out| {
        let x = &xs[r * l.spatial..(r + 1) * l.spatial];
        let (m, s, b) = (mean[c], scale[c], beta[c]);
        for (o, &v) in out.iter_mut().zip(x) {
            *o = (v - m) * s + b;
        }
    })
}

/// What the backward needs besides the output gradient.
#[derive(Debug)]
struct Saved {
    x: FlexTensor,
    gamma: Vec<f32>,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    layout: Layout,
}

/// `(dx, dγ, dβ)`, each only when asked for.
#[allow(clippy::type_complexity)]
fn backward(
    saved: &Saved,
    grad: &FlexTensor,
    [want_x, want_gamma, want_beta]: [bool; 3],
) -> (Option<Vec<f32>>, Option<Vec<f32>>, Option<Vec<f32>>) {
    let (x, grad) = (contiguous(&saved.x), contiguous(grad));
    let (xs, gs, l) = (elements(&x), elements(&grad), &saved.layout);
    let mean = &saved.mean;
    // (A, B) = (Σ dy, Σ dy·(x − mean)) per channel.
    let sums: Vec<(f64, f64)> = (0..l.channels)
        .into_par_iter()
        .map(|c| {
            let m = mean[c] as f64;
            (0..l.batch).fold((0.0, 0.0), |(a, b), n| {
                let row = (n * l.channels + c) * l.spatial..(n * l.channels + c + 1) * l.spatial;
                let (dy, x) = (&gs[row.clone()], &xs[row]);
                (
                    a + lane_sum(dy, x, |dy, _| dy),
                    b + lane_sum(dy, x, |dy, x| dy * (x - m)),
                )
            })
        })
        .collect();
    let m = l.per_channel() as f64;
    let dx = want_x.then(|| {
        // dx = a·dy + b·(x − mean) + c per channel.
        let coefficients: Vec<[f32; 3]> = sums
            .iter()
            .enumerate()
            .map(|(c, &(a_sum, b_sum))| {
                let (gamma, s) = (saved.gamma[c] as f64, saved.inv_std[c] as f64);
                [
                    (gamma * s) as f32,
                    (-gamma * s * s * s * b_sum / m) as f32,
                    (-gamma * s * a_sum / m) as f32,
                ]
            })
            .collect();
        map_rows(l, |c, r, out| {
            let range = r * l.spatial..(r + 1) * l.spatial;
            let (dy, x) = (&gs[range.clone()], &xs[range]);
            let ([a, b, k], mu) = (coefficients[c], mean[c]);
            for ((o, &dy), &x) in out.iter_mut().zip(dy).zip(x) {
                *o = a * dy + b * (x - mu) + k;
            }
        })
    });
    let d_gamma = want_gamma.then(|| {
        sums.iter()
            .zip(&saved.inv_std)
            .map(|(&(_, b), &s)| (b * s as f64) as f32)
            .collect()
    });
    let d_beta = want_beta.then(|| sums.iter().map(|&(a, _)| a as f32).collect());
    (dx, d_gamma, d_beta)
}

/// The batch-norm node in the autodiff graph (parents: input, γ, β).
#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    type State = (Arc<Saved>, Vec<usize>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (saved, shape) = ops.state;
        let wants = [node_x.is_some(), node_gamma.is_some(), node_beta.is_some()];
        let (dx, d_gamma, d_beta) = backward(&saved, &grad, wants);
        let channels = [saved.layout.channels];
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, tensor(dx, shape));
        }
        if let (Some(node), Some(d)) = (node_gamma, d_gamma) {
            grads.register::<Flex>(node.id, tensor(d, channels));
        }
        if let (Some(node), Some(d)) = (node_beta, d_beta) {
            grads.register::<Flex>(node.id, tensor(d, channels));
        }
    }
}

/// The elements of a plain flex `[C]` tensor, or `None` off flex / not f32.
pub(crate) fn plain_values(t: Tensor<1>) -> Option<Vec<f32>> {
    let p = t.try_into_primitive::<Flex>().ok()?;
    Some(elements(&contiguous(&p)).to_vec())
}

/// Output and batch statistics of [`try_batch_norm_train`].
pub struct BatchNormTrained<const D: usize> {
    /// The normalised input.
    pub output: Tensor<D>,
    /// Batch mean per channel (not tracked by autodiff).
    pub mean: Tensor<1>,
    /// Biased batch variance per channel, without ε (not tracked by autodiff).
    pub variance: Tensor<1>,
}

/// Batch normalisation with the batch's own statistics by relata's kernels, what
/// `burn::tensor::module::batch_norm_train` computes, when `x` (`[N, C, …]`), `gamma` and
/// `beta` (`[C]`) are f32 on one `flex` device (plain, or autodiff without checkpointing);
/// otherwise the inputs come back unchanged.
#[allow(clippy::result_large_err, clippy::type_complexity)] // inputs handed back unused
pub fn try_batch_norm_train<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> Result<BatchNormTrained<D>, (Tensor<D>, Tensor<1>, Tensor<1>)> {
    let shape = x.dims().to_vec();
    let (Some(autodiff), Some(layout)) = (flex_device(&x.device()), Layout::new(&shape)) else {
        return Err((x, gamma, beta));
    };
    let same_device = gamma.device() == x.device() && beta.device() == x.device();
    let f32s = [x.dtype(), gamma.dtype(), beta.dtype()] == [DType::F32; 3];
    if !same_device || !f32s || gamma.dims() != [layout.channels] || beta.dims() != gamma.dims() {
        return Err((x, gamma, beta));
    }
    type Ad = Autodiff<Flex, NoCheckpointing>;
    // The three primitives, and (under autodiff) the nodes they hang from.
    let (xp, gp, bp, guards) = if autodiff {
        let (Ok(xa), Ok(ga), Ok(ba)) = (
            x.clone().try_into_primitive::<Ad>(),
            gamma.clone().try_into_primitive::<Ad>(),
            beta.clone().try_into_primitive::<Ad>(),
        ) else {
            return Err((x, gamma, beta));
        };
        let guards = [xa.node(), ga.node(), ba.node()];
        (
            xa.into_primitive(),
            ga.into_primitive(),
            ba.into_primitive(),
            Some(guards),
        )
    } else {
        let (Ok(xp), Ok(gp), Ok(bp)) = (
            x.clone().try_into_primitive::<Flex>(),
            gamma.clone().try_into_primitive::<Flex>(),
            beta.clone().try_into_primitive::<Flex>(),
        ) else {
            return Err((x, gamma, beta));
        };
        (xp, gp, bp, None)
    };
    let xp = contiguous(&xp);
    let gamma_values = elements(&contiguous(&gp)).to_vec();
    let beta_values = elements(&contiguous(&bp)).to_vec();
    let (mean, variance) = statistics(elements(&xp), &layout);
    let inv_std = inverse_std(&variance, epsilon);
    let scale = channel_scale(&gamma_values, &inv_std);
    let y = tensor(
        normalise(elements(&xp), &layout, &mean, &scale, &beta_values),
        shape.clone(),
    );
    // The statistics as constants on the input's device (untracked under autodiff).
    let device = x.device();
    let channels = [layout.channels];
    let constant =
        |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), channels), &device);
    let (mean_t, var_t) = (constant(&mean), constant(&variance));
    let Some(guards) = guards else {
        return Ok(BatchNormTrained {
            output: Tensor::from_primitive::<Flex>(y),
            mean: mean_t,
            variance: var_t,
        });
    };
    let saved = Saved {
        x: xp,
        gamma: gamma_values,
        mean,
        inv_std,
        layout,
    };
    let out = match BatchNormBackward
        .prepare::<NoCheckpointing>(guards)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((Arc::new(saved), shape), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Ok(BatchNormTrained {
        output: Tensor::from_primitive::<Ad>(out),
        mean: mean_t,
        variance: var_t,
    })
}

/// Batch normalisation with given statistics (inference), `y = (x − mean)·γ/√(var + ε) + β` in
/// one pass, when every tensor is f32 on a plain `flex` device; otherwise `x` comes back (and
/// the caller uses `burn::tensor::module::batch_norm`). Autodiff devices are left to burn: in
/// inference mode there they are rare (frozen layers), and burn differentiates them.
#[allow(clippy::result_large_err)] // the input is handed back unused
pub fn try_batch_norm<const D: usize>(
    x: Tensor<D>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    mean: &Tensor<1>,
    variance: &Tensor<1>,
    epsilon: f64,
) -> Result<Tensor<D>, Tensor<D>> {
    let shape = x.dims().to_vec();
    let (Some(false), Some(layout)) = (flex_device(&x.device()), Layout::new(&shape)) else {
        return Err(x);
    };
    if x.dtype() != DType::F32 {
        return Err(x);
    }
    let values = [gamma, beta, mean, variance].map(|t| {
        (t.device() == x.device() && t.dims() == [layout.channels])
            .then(|| plain_values(t.clone()))
            .flatten()
    });
    let [Some(gamma), Some(beta), Some(mean), Some(variance)] = values else {
        return Err(x);
    };
    let Ok(xp) = x.clone().try_into_primitive::<Flex>() else {
        return Err(x);
    };
    let xp = contiguous(&xp);
    let scale = channel_scale(&gamma, &inverse_std(&variance, epsilon));
    let y = normalise(elements(&xp), &layout, &mean, &scale, &beta);
    Ok(Tensor::from_primitive::<Flex>(tensor(y, shape)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Statistics, output and the three gradients against the definition in f64.
    #[test]
    fn kernels_match_the_definition_in_f64() {
        for shape in [
            vec![3, 4, 5, 7],
            vec![2, 3, 17],
            vec![5, 2],
            vec![1, 3, 2, 2],
        ] {
            let l = Layout::new(&shape).unwrap();
            let len = l.batch * l.channels * l.spatial;
            let xs: Vec<f32> = (0..len)
                .map(|i| (i as f32 * 0.731).sin() * 2.0 + 0.5)
                .collect();
            let gs: Vec<f32> = (0..len).map(|i| (i as f32 * 0.191).cos()).collect();
            let gamma: Vec<f32> = (0..l.channels).map(|c| 0.5 + c as f32 * 0.3).collect();
            let beta: Vec<f32> = (0..l.channels).map(|c| c as f32 * 0.1 - 0.2).collect();
            let eps = 1e-5;
            let (mean, variance) = statistics(&xs, &l);
            let inv_std = inverse_std(&variance, eps);
            let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, s)| g * s).collect();
            let y = normalise(&xs, &l, &mean, &scale, &beta);
            let saved = Saved {
                x: tensor(xs.clone(), shape.clone()),
                gamma: gamma.clone(),
                mean: mean.clone(),
                inv_std: inv_std.clone(),
                layout: l,
            };
            let (dx, dg, db) = backward(&saved, &tensor(gs.clone(), shape.clone()), [true; 3]);
            let (dx, dg, db) = (dx.unwrap(), dg.unwrap(), db.unwrap());
            let m = l.per_channel() as f64;
            let close = |a: f32, t: f64, what: &str| {
                assert!(
                    (a as f64 - t).abs() / (1.0 + t.abs()) < 1e-5,
                    "{what} {shape:?}: {a} vs {t}"
                );
            };
            for c in 0..l.channels {
                let rows: Vec<usize> = (0..l.batch)
                    .flat_map(|n| {
                        let start = (n * l.channels + c) * l.spatial;
                        start..start + l.spatial
                    })
                    .collect();
                let mu = rows.iter().map(|&i| xs[i] as f64).sum::<f64>() / m;
                let var = rows
                    .iter()
                    .map(|&i| (xs[i] as f64 - mu).powi(2))
                    .sum::<f64>()
                    / m;
                close(mean[c], mu, "mean");
                close(variance[c], var, "variance");
                let s = 1.0 / (var + eps).sqrt();
                let xhat = |i: usize| (xs[i] as f64 - mu) * s;
                let sum_dy: f64 = rows.iter().map(|&i| gs[i] as f64).sum();
                let sum_dy_xhat: f64 = rows.iter().map(|&i| gs[i] as f64 * xhat(i)).sum();
                close(db[c], sum_dy, "dβ");
                close(dg[c], sum_dy_xhat, "dγ");
                for &i in &rows {
                    let g = gamma[c] as f64;
                    close(y[i], xhat(i) * g + beta[c] as f64, "y");
                    let truth = g * s * (gs[i] as f64 - sum_dy / m - xhat(i) * sum_dy_xhat / m);
                    close(dx[i], truth, "dx");
                }
            }
        }
    }

    #[test]
    fn asks_only_for_what_it_is_given() {
        let shape = [2, 2, 3];
        let l = Layout::new(&shape).unwrap();
        let saved = Saved {
            x: tensor(vec![1.0; 12], shape),
            gamma: vec![1.0; 2],
            mean: vec![1.0; 2],
            inv_std: vec![1.0; 2],
            layout: l,
        };
        let (dx, dg, db) = backward(&saved, &tensor(vec![1.0; 12], shape), [false, true, false]);
        assert!(dx.is_none() && db.is_none());
        assert_eq!(dg.unwrap().len(), 2);
        assert!(Layout::new(&[3]).is_none() && Layout::new(&[0, 2, 2]).is_none());
    }
}
