//! The ops a ResNet is made of — convolution, batch normalisation, max pooling, ReLU — on burn
//! modules, by relata's kernels on `flex` (`kernels`) and by burn's ops elsewhere.
//!
//! Each op takes the burn module (`Conv2d`, `BatchNorm`, `MaxPool2d`) so a model keeps burn's
//! parameter names and weight import, and computes what the module's `forward` computes, with
//! one deliberate difference: [`batch_norm`] folds PyTorch's unbiased running variance.
//! Where a kernel does not apply (another backend, dilation, groups, `Same` padding, non-f32)
//! the op falls back to burn's, so a model calls these unconditionally.

use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::Tensor;

/// A convolution's forward: on `flex`, relata's own kernels; elsewhere `conv2d`, with 1×1
/// convolutions computed as matrix products when training.
///
/// Why: on `flex`, burn's `conv2d` runs every kernel size through im2col with a layout copy
/// before the GEMM, and its backward through a transposed convolution (input gradient) and a
/// swapped convolution with `H_out × W_out` kernels (weight gradient; docs/upstream/flex-conv.md).
/// `kernels::conv` does each piece as one GEMM per image on NCHW data, forward and backward
/// (1.5–3× faster on ResNet's layers; docs/notes/2026-11-performance-log.md). On other backends a 1×1 convolution
/// is still cheaper as what it is, `W[C_out × C_in] · X[C_in × HW]` per image, which autodiff
/// differentiates with two more GEMMs (2–3× on tch's 28² maps). ResNet-50 has two 1×1
/// convolutions in each bottleneck and every ResNet has them in `downsample.0`. A stride-s 1×1
/// convolution reads every s-th pixel, so it is a subsampling followed by the product. Same
/// arithmetic, same parameters (the [`Conv2d`] module is kept for its names and weight import).
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    let x = match flex_conv2d(conv, x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    let pointwise = conv.kernel_size == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && matches!(
            conv.padding,
            PaddingConfig2d::Explicit(0, 0, 0, 0) | PaddingConfig2d::Valid
        );
    // Only under autodiff: the gain is in the backward (1.4–4× on forward + backward, 1×1
    // convolutions of ResNet-50), while inference forwards are as fast or faster in `conv2d`
    // (64→256 at 28×28: 6 ms against 20 ms).
    if !pointwise || !x.device().is_autodiff() {
        return conv.forward(x);
    }
    let x = subsample(x, conv.stride);
    let [n, c, h, w] = x.dims();
    let weight = conv.weight.val();
    let cout = weight.dims()[0];
    // Small maps (layer3/layer4 at 7×7 or less): one GEMM over the whole batch, `[C_out × C_in]
    // · [C_in × N·HW]`, beats N GEMMs of ≤ 49 columns each, permutes included (1.5–2× on
    // forward + backward, `--example conv_paths`). From 14×14 up the batched product, which
    // needs no layout copy, is as fast or faster.
    let y = if h * w < 14 * 14 {
        weight
            .reshape([cout, c])
            .matmul(x.permute([1, 0, 2, 3]).reshape([c, n * h * w]))
            .reshape([cout, n, h, w])
            .permute([1, 0, 2, 3])
    } else {
        weight
            .reshape([1, cout, c])
            .matmul(x.reshape([n, c, h * w]))
            .reshape([n, cout, h, w])
    };
    match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, cout, 1, 1]),
        None => y,
    }
}

/// On a `flex` device, the convolution by relata's kernels (`kernels::conv`), every
/// kernel size; `Err(x)` where they do not apply (another backend, groups, dilation, `Same`
/// padding).
#[cfg(feature = "flex")]
#[allow(clippy::result_large_err)] // a `Tensor` is moved in and, unused, handed back.
fn flex_conv2d(conv: &Conv2d, x: Tensor<4>) -> Result<Tensor<4>, Tensor<4>> {
    let Some(geometry) = flex_geometry(conv) else {
        return Err(x);
    };
    let y = crate::kernels::conv::try_conv2d(x, conv.weight.val(), geometry).map_err(|(x, _)| x)?;
    Ok(match &conv.bias {
        Some(bias) => {
            let c_out = bias.dims()[0];
            y + bias.val().reshape([1, c_out, 1, 1])
        }
        None => y,
    })
}

/// The window of a convolution relata's flex kernels take: fixed padding, dilation 1, one
/// group; `None` otherwise.
#[cfg(feature = "flex")]
fn flex_geometry(conv: &Conv2d) -> Option<crate::kernels::WindowGeometry> {
    let padding = explicit_padding(&conv.padding)?;
    (conv.dilation == [1, 1] && conv.groups == 1).then_some(crate::kernels::WindowGeometry {
        kernel: conv.kernel_size,
        stride: conv.stride,
        padding,
    })
}

/// `[top, left, bottom, right]` of a fixed padding; `None` for `Same`, which depends on the
/// input size (the flex kernels leave it to burn).
#[cfg(feature = "flex")]
fn explicit_padding(padding: &PaddingConfig2d) -> Option<[usize; 4]> {
    match *padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => Some([top, left, bottom, right]),
        PaddingConfig2d::Valid => Some([0; 4]),
        PaddingConfig2d::Same => None,
    }
}

/// A max pool's forward: on `flex`, relata's kernel (`kernels::pool`, whose backward is a
/// scatter; burn-flex's took 2.3× PyTorch's time), elsewhere burn's `max_pool2d`.
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    let x = {
        match explicit_padding(&pool.padding).filter(|_| pool.dilation == [1, 1] && !pool.ceil_mode)
        {
            Some(padding) => {
                let geometry = crate::kernels::WindowGeometry {
                    kernel: pool.kernel_size,
                    stride: pool.stride,
                    padding,
                };
                match crate::kernels::pool::try_max_pool2d(x, geometry) {
                    Ok(y) => return y,
                    Err(x) => x,
                }
            }
            None => x,
        }
    };
    pool.forward(x)
}

/// Every `s`-th row and column from the first (what a stride-s 1×1 convolution reads): the
/// map is zero-padded at its end to a multiple of the stride, split into `s × s` cells, and
/// each cell's first pixel kept.
///
/// Why not a stepped slice: burn-tch's `slice_assign` — the slice's backward — fails on a stepped
/// slice ("view size is not compatible with input tensor's size and stride"); reshapes and
/// unit-step slices work on every backend.
fn subsample(x: Tensor<4>, [sh, sw]: [usize; 2]) -> Tensor<4> {
    if sh == 1 && sw == 1 {
        return x;
    }
    let [n, c, h, w] = x.dims();
    let (ho, wo) = (h.div_ceil(sh), w.div_ceil(sw));
    let x = if ho * sh > h || wo * sw > w {
        x.pad([(0, ho * sh - h), (0, wo * sw - w)], 0.0)
    } else {
        x
    };
    x.reshape([n, c, ho, sh, wo, sw])
        .slice([0..n, 0..c, 0..ho, 0..1, 0..wo, 0..1])
        .reshape([n, c, ho, wo])
}

/// How far [`conv2d`]'s matrix-product path is from `conv2d` on one input: the worst
/// relative difference `|a − b| / (1 + |a|)` per quantity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathDeviation {
    /// The convolution's output.
    pub output: f32,
    /// The input gradient (`None` on a device without autodiff, where both paths are `conv2d`).
    pub input_grad: Option<f32>,
    /// The weight gradient.
    pub weight_grad: Option<f32>,
    /// The bias gradient (`None` also when the convolution has no bias).
    pub bias_grad: Option<f32>,
}

impl PathDeviation {
    /// The largest of the four.
    pub fn worst(&self) -> f32 {
        [self.input_grad, self.weight_grad, self.bias_grad]
            .into_iter()
            .flatten()
            .fold(self.output, f32::max)
    }
}

/// Runs `conv` on `x` both ways — [`conv2d`]'s path and `conv2d` — and compares the
/// outputs and the gradients of `Σ y ⊙ probe` (a random probe) w.r.t. input, weight and bias.
///
/// Why it is public: the path is relata's own code on every backend — on `flex` its im2col +
/// GEMM kernels (`kernels::conv`) for every kernel size, elsewhere 1×1 convolutions built
/// from reshapes, slices and matrix products, which each backend implements its own way
/// (burn-tch could not differentiate a stepped slice). CI runs this on flex, wgpu and tch; on a
/// backend it cannot build (CUDA, `cpu`), run it once on the target device before training
/// there. `x` and `conv` live on one device; without autodiff only the output is compared.
pub fn conv_path_deviation(conv: &Conv2d, x: Tensor<4>) -> PathDeviation {
    use burn::tensor::Distribution;
    let out_dims = conv.forward(x.clone()).dims();
    let probe = Tensor::<4>::random(out_dims, Distribution::Normal(0.0, 1.0), &x.device());
    let autodiff = x.device().is_autodiff();
    let run = |path: bool| {
        let x = if autodiff {
            x.clone().require_grad()
        } else {
            x.clone()
        };
        let y = if path {
            conv2d(conv, x.clone())
        } else {
            conv.forward(x.clone())
        };
        if !autodiff {
            return (y.into_data(), None, None, None);
        }
        let grads = (y.clone() * probe.clone()).sum().backward();
        let data = |t: Option<Tensor<4>>| t.map(Tensor::into_data);
        (
            y.inner().into_data(),
            data(x.grad(&grads)),
            conv.weight.grad(&grads).map(Tensor::into_data),
            conv.bias
                .as_ref()
                .and_then(|b| b.grad(&grads))
                .map(Tensor::into_data),
        )
    };
    let (reference, path) = (run(false), run(true));
    let deviation = |a: &burn::tensor::TensorData, b: &burn::tensor::TensorData| {
        a.iter::<f32>()
            .zip(b.iter::<f32>())
            .map(|(p, q)| (p - q).abs() / (1.0 + p.abs()))
            .fold(0.0f32, f32::max)
    };
    let both = |a: &Option<burn::tensor::TensorData>, b: &Option<burn::tensor::TensorData>| {
        a.as_ref().zip(b.as_ref()).map(|(a, b)| deviation(a, b))
    };
    PathDeviation {
        output: if reference.0.shape() == path.0.shape() {
            deviation(&reference.0, &path.0)
        } else {
            f32::INFINITY
        },
        input_grad: both(&reference.1, &path.1),
        weight_grad: both(&reference.2, &path.2),
        bias_grad: both(&reference.3, &path.3),
    }
}

/// BatchNorm forward with PyTorch's running-variance update; on `flex`, by relata's kernels
/// (`kernels::norm`: burn-flex computes batch norm out of layout copies and broadcast
/// element-wise ops).
///
/// In training mode PyTorch folds the *unbiased* batch variance (÷ (n − 1)) into
/// `running_var`, while burn 0.22's `BatchNorm` folds the biased one (÷ n); both normalise the
/// batch with the biased variance. The difference is ×n/(n−1) — 3 % on a 4×4 map with batch 2 —
/// and it shows up in every evaluation after training, so this folds the unbiased one, as
/// PyTorch (with a single value per channel, where it is undefined, the biased one).
/// Training mode is what `BatchNorm::forward` chooses: an autodiff device and a layer whose
/// `training` flag is on.
pub fn batch_norm<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    let training = x.device().is_autodiff() && bn.training.is_enabled();
    if !training {
        #[cfg(feature = "flex")]
        let x = match crate::kernels::norm::try_batch_norm(
            x,
            &bn.gamma.val(),
            &bn.beta.val(),
            &bn.running_mean.value(),
            &bn.running_var.value(),
            bn.epsilon,
        ) {
            Ok(y) => return y,
            Err(x) => x,
        };
        return bn.forward(x);
    }
    // Values per channel: every dimension but the channel one (a bad shape is reported by
    // burn's `batch_norm_train` below).
    let dims = x.dims();
    let n = dims.iter().product::<usize>() / dims.get(1).copied().unwrap_or(1).max(1);
    let (gamma, beta) = (bn.gamma.val(), bn.beta.val());
    let burn_op = |x, gamma, beta| {
        let t = burn::tensor::module::batch_norm_train(x, gamma, beta, bn.epsilon);
        (t.output, t.mean, t.variance)
    };
    #[cfg(feature = "flex")]
    let (output, mean, variance) =
        match crate::kernels::norm::try_batch_norm_train(x, gamma, beta, bn.epsilon) {
            Ok(t) => (t.output, t.mean, t.variance),
            Err((x, gamma, beta)) => burn_op(x, gamma, beta),
        };
    #[cfg(not(feature = "flex"))]
    let (output, mean, variance) = burn_op(x, gamma, beta);
    let unbiased = if n > 1 {
        n as f64 / (n - 1) as f64
    } else {
        1.0
    };
    let device = output.device();
    let momentum = bn.momentum;
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_var = bn.running_var.value_sync().to_device(&device);
    bn.running_mean.update(
        running_mean
            .mul_scalar(1.0 - momentum)
            .add(mean.detach().mul_scalar(momentum))
            .detach(),
    );
    bn.running_var.update(
        running_var
            .mul_scalar(1.0 - momentum)
            .add(variance.detach().mul_scalar(momentum * unbiased))
            .detach(),
    );
    output
}

/// `bn(conv(x))`, then ReLU when `relu`: what every convolution of a ResNet is followed by.
///
/// On a plain `flex` device (inference: batch norm with its running statistics) the batch norm
/// and the ReLU are folded into the convolution's kernel as a per-channel `scale·y + shift`
/// applied to each output row while it is in cache (`kernels::conv::ChannelAffine`),
/// which saves a pass over the activation for each (batch norm's inference pass alone was
/// ~7% of a ResNet-18 forward). Everywhere else, and when training, it is [`conv2d`],
/// [`batch_norm`] and burn's ReLU, one after the other.
pub fn conv_batch_norm(conv: &Conv2d, bn: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    #[cfg(feature = "flex")]
    let x = match fused_conv_bn(conv, bn, x, relu) {
        Ok(y) => return y,
        Err(x) => x,
    };
    let y = batch_norm(bn, conv2d(conv, x));
    if relu { self::relu(y) } else { y }
}

/// ReLU; on `flex` by relata's kernel, split over rayon's threads (burn-flex's element-wise
/// ops run on the calling thread: `kernels::activation`).
pub fn relu(x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    let x = match crate::kernels::activation::try_relu(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::relu(x)
}

/// `relu(out + identity)`, the end of a residual block; on `flex` one parallel pass each way.
pub fn add_relu(out: Tensor<4>, identity: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    let (out, identity) = match crate::kernels::activation::try_add_relu(out, identity) {
        Ok(y) => return y,
        Err(pair) => pair,
    };
    burn::tensor::activation::relu(out + identity)
}

/// [`conv_batch_norm`]'s folded path; `Err(x)` where it does not apply (autodiff, another
/// backend, a convolution relata's kernels leave to burn, mismatched channels).
#[cfg(feature = "flex")]
#[allow(clippy::result_large_err)] // the input is moved in and, unused, handed back.
fn fused_conv_bn(
    conv: &Conv2d,
    bn: &BatchNorm,
    x: Tensor<4>,
    relu: bool,
) -> Result<Tensor<4>, Tensor<4>> {
    use crate::kernels::norm::{channel_scale, inverse_std, plain_values};
    let c_out = conv.weight.dims()[0];
    let inference = !x.device().is_autodiff();
    let (Some(geometry), true, true) = (flex_geometry(conv), inference, bn.gamma.dims() == [c_out])
    else {
        return Err(x);
    };
    // Plain flex tensors only (`None` elsewhere, and the ops run one after the other).
    let (Some(gamma), Some(beta), Some(mean), Some(var)) = (
        plain_values(bn.gamma.val()),
        plain_values(bn.beta.val()),
        plain_values(bn.running_mean.value()),
        plain_values(bn.running_var.value()),
    ) else {
        return Err(x);
    };
    let bias = match &conv.bias {
        Some(b) => match plain_values(b.val()) {
            Some(v) => v,
            None => return Err(x),
        },
        None => vec![0.0; c_out],
    };
    // bn(conv + bias) = conv·s + (bias − mean)·s + β with s = γ/√(var + ε).
    let scale = channel_scale(&gamma, &inverse_std(&var, bn.epsilon));
    let shift = (0..c_out)
        .map(|c| (bias[c] - mean[c]) * scale[c] + beta[c])
        .collect();
    let epilogue = crate::kernels::conv::ChannelAffine { scale, shift, relu };
    crate::kernels::conv::try_conv2d_affine(x, conv.weight.val(), geometry, &epilogue)
        .map_err(|(x, _)| x)
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::BatchNormConfig;
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::pool::MaxPool2dConfig;

    /// `conv2d`'s matrix-product path gives `conv2d`'s output and gradients (input,
    /// weight, bias) for 1×1 convolutions at stride 1 and 2, odd sizes included, on both layouts
    /// (maps under 14×14 and from 14×14 up); on a plain device both sides are `conv2d`.
    #[test]
    fn pointwise_conv_matches_conv2d_with_gradients() {
        use burn::tensor::Distribution;
        let device = burn::tensor::Device::flex().autodiff();
        for (stride, bias, side) in [
            (1, false, 6usize),
            (2, false, 7),
            (2, true, 6),
            (1, true, 5),
            (2, true, 15),
            (1, true, 16),
        ] {
            let conv = Conv2dConfig::new([5, 3], [1, 1])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(0, 0, 0, 0))
                .with_bias(bias)
                .init(&device);
            let x =
                Tensor::<4>::random([2, 5, side, side], Distribution::Normal(0.0, 1.0), &device);
            let d = conv_path_deviation(&conv, x);
            assert!(d.worst() < 1e-4, "stride {stride}, side {side}: {d:?}");
            assert!(d.input_grad.is_some() && d.weight_grad.is_some());
            assert_eq!(d.bias_grad.is_some(), bias);
        }
        let plain = burn::tensor::Device::flex();
        let conv = Conv2dConfig::new([5, 3], [1, 1]).init(&plain);
        let x = Tensor::<4>::random([1, 5, 4, 4], Distribution::Normal(0.0, 1.0), &plain);
        let d = conv_path_deviation(&conv, x);
        assert!(d.output < 1e-5 && d.input_grad.is_none(), "{d:?}");
    }

    /// On flex, `batch_norm` runs relata's batch-norm kernels: in training mode the output,
    /// the input/γ/β gradients and both running statistics equal burn's `batch_norm_train`
    /// with PyTorch's unbiased running-variance update; in inference mode the output equals
    /// burn's `batch_norm` with the running statistics. 4-D (conv maps, as a strided view) and
    /// 2-D (features) inputs.
    #[test]
    fn batch_norm_matches_burn_on_flex() {
        check_batch_norm([4, 3, 5, 6]);
        check_batch_norm([7, 5]);
    }

    fn check_batch_norm<const D: usize>(shape: [usize; D]) {
        use burn::tensor::Distribution;
        let close = |a: Tensor<D>, b: Tensor<D>, what: &str| {
            let (a, b) = (a.into_data(), b.into_data());
            let worst = a
                .iter::<f32>()
                .zip(b.iter::<f32>())
                .map(|(p, q)| (p - q).abs() / (1.0 + q.abs()))
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{shape:?} {what}: {worst:.2e}");
        };
        let device = burn::tensor::Device::flex().autodiff();
        let c = shape[1];
        let numel: usize = shape.iter().product();
        let ramp = |a: f32, b: f32, device: &burn::tensor::Device| {
            let values: Vec<f32> = (0..c).map(|i| a + b * i as f32).collect();
            Tensor::<1>::from_data(burn::tensor::TensorData::new(values, [c]), device)
        };
        // Non-trivial γ, β and running statistics, as after some training.
        let bn = BatchNorm {
            gamma: burn::module::Param::from_tensor(ramp(0.5, 0.25, &device)),
            beta: burn::module::Param::from_tensor(ramp(-0.3, 0.2, &device)),
            ..BatchNormConfig::new(c).init(&device)
        };
        bn.running_mean.update(ramp(0.1, 0.05, &device));
        bn.running_var.update(ramp(0.8, 0.3, &device));
        // 4-D: a strided view (the last two axes swapped), which the kernels copy first.
        let view = |x: Tensor<D>| if D == 4 { x.swap_dims(2, 3) } else { x };
        let mut stored = shape;
        stored.swap(D - 2, D - 1);
        let normal = Distribution::Normal(1.5, 2.0);
        let x = Tensor::<D>::random(if D == 4 { stored } else { shape }, normal, &device);
        let probe = Tensor::<D>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let (gamma, beta) = (bn.gamma.val(), bn.beta.val());
        let taken = crate::kernels::norm::try_batch_norm_train(view(x.clone()), gamma, beta, 1e-5);
        assert!(taken.is_ok(), "the kernels run under autodiff");
        let run = |ours: bool| {
            let x = x.clone().require_grad();
            let (mean0, var0) = (bn.running_mean.value_sync(), bn.running_var.value_sync());
            let y = if ours {
                batch_norm(&bn, view(x.clone()))
            } else {
                let (gamma, beta) = (bn.gamma.val(), bn.beta.val());
                let t = burn::tensor::module::batch_norm_train(view(x.clone()), gamma, beta, 1e-5);
                reference_update(&bn, t.mean, t.variance, numel / c);
                t.output
            };
            let grads = (y.clone() * probe.clone()).sum().backward();
            let stats = (bn.running_mean.value_sync(), bn.running_var.value_sync());
            // Back to the statistics before, for the other side.
            bn.running_mean.update(mean0);
            bn.running_var.update(var0);
            let dx = view(x.grad(&grads).unwrap());
            let (d_gamma, d_beta) = (bn.gamma.grad(&grads), bn.beta.grad(&grads));
            (y.inner(), dx, [d_gamma.unwrap(), d_beta.unwrap()], stats)
        };
        let (ours, reference) = (run(true), run(false));
        close(ours.0, reference.0, "output");
        close(ours.1, reference.1, "dx");
        let as_d = |t: Tensor<1>| t.reshape([c; 1]).unsqueeze::<D>();
        for (i, what) in ["dγ", "dβ"].into_iter().enumerate() {
            close(as_d(ours.2[i].clone()), as_d(reference.2[i].clone()), what);
        }
        close(as_d(ours.3.0.inner()), as_d(reference.3.0.inner()), "mean");
        close(as_d(ours.3.1.inner()), as_d(reference.3.1.inner()), "var");
        // Inference: a plain device, the running statistics.
        let (bn, plain) = (bn.valid(), burn::tensor::Device::flex());
        let x = view(Tensor::<D>::random(
            if D == 4 { stored } else { shape },
            normal,
            &plain,
        ));
        let (gamma, beta) = (bn.gamma.val(), bn.beta.val());
        let (mean, var) = (bn.running_mean.value(), bn.running_var.value());
        let taken =
            crate::kernels::norm::try_batch_norm(x.clone(), &gamma, &beta, &mean, &var, 1e-5);
        assert!(taken.is_ok(), "the kernel runs on a plain device");
        let reference = burn::tensor::module::batch_norm(x.clone(), gamma, beta, mean, var, 1e-5);
        close(batch_norm(&bn, x), reference, "inference output");
    }

    /// On a plain flex device `conv_batch_norm` folds the batch norm (running statistics) and
    /// the ReLU into the convolution's kernel; the result equals the three ops one after the
    /// other, for 3×3 and 1×1 kernels, strides 1 and 2, with and without a conv bias, and with
    /// a NaN in the input (which ReLU keeps).
    #[test]
    fn conv_bn_relu_folded_equals_the_three_ops() {
        use burn::tensor::Distribution;
        let device = burn::tensor::Device::flex();
        let normal = Distribution::Normal(0.0, 1.0);
        // The last two take the direct and the batch-lane 3×3 kernels (with AVX-512), which
        // apply the folded batch norm to each output plane themselves.
        for (k, stride, bias, relu, [n, c_in, h, w], c_out) in [
            (3, 1, false, true, [2, 3, 9, 8], 5),
            (3, 2, true, false, [2, 3, 9, 8], 5),
            (1, 1, false, false, [2, 3, 9, 8], 5),
            (1, 2, true, true, [2, 3, 9, 8], 5),
            (7, 2, false, true, [2, 3, 9, 8], 5),
            (3, 1, true, true, [2, 8, 12, 12], 8),
            (3, 1, false, true, [16, 8, 4, 4], 8),
        ] {
            let conv = Conv2dConfig::new([c_in, c_out], [k, k])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
                .with_bias(bias)
                .init(&device);
            let ramp = |a: f32, b: f32| {
                let values: Vec<f32> = (0..c_out).map(|i| a + b * i as f32).collect();
                Tensor::<1>::from_data(burn::tensor::TensorData::new(values, [c_out]), &device)
            };
            let bn = BatchNorm {
                gamma: burn::module::Param::from_tensor(ramp(0.5, 0.3)),
                beta: burn::module::Param::from_tensor(ramp(-0.2, 0.1)),
                ..BatchNormConfig::new(c_out).init(&device)
            };
            bn.running_mean.update(ramp(0.3, -0.1));
            bn.running_var.update(ramp(0.7, 0.4));
            let mut values = Tensor::<4>::random([n, c_in, h, w], normal, &device)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            values[17] = f32::NAN;
            let x = Tensor::<4>::from_data(
                burn::tensor::TensorData::new(values, [n, c_in, h, w]),
                &device,
            );
            assert!(fused_conv_bn(&conv, &bn, x.clone(), relu).is_ok());
            let separate = batch_norm(&bn, conv2d(&conv, x.clone()));
            let separate = if relu {
                burn::tensor::activation::relu(separate)
            } else {
                separate
            };
            let (ours, want) = (conv_batch_norm(&conv, &bn, x, relu), separate);
            assert_eq!(ours.dims(), want.dims());
            let (ours, want) = (ours.into_data(), want.into_data());
            for (a, b) in ours.iter::<f32>().zip(want.iter::<f32>()) {
                let same = (a - b).abs() <= 1e-5 * (1.0 + b.abs()) || (a.is_nan() && b.is_nan());
                assert!(same, "k{k} s{stride} bias {bias} relu {relu}: {a} vs {b}");
            }
        }
        // Under autodiff (training) the ops run one after the other.
        let ad = burn::tensor::Device::flex().autodiff();
        let conv = Conv2dConfig::new([3, 5], [3, 3]).init(&ad);
        let bn = BatchNormConfig::new(5).init(&ad);
        let x = Tensor::<4>::random([1, 3, 6, 6], normal, &ad);
        assert!(fused_conv_bn(&conv, &bn, x, true).is_err());
    }

    /// PyTorch's running-statistics update, for [`batch_norm_matches_burn_on_flex`]'s
    /// reference side.
    fn reference_update(bn: &BatchNorm, mean: Tensor<1>, variance: Tensor<1>, n: usize) {
        let m = bn.momentum;
        let mean0 = bn.running_mean.value_sync();
        let var0 = bn.running_var.value_sync();
        bn.running_mean
            .update(mean0.mul_scalar(1.0 - m) + mean.detach().mul_scalar(m));
        bn.running_var.update(
            var0.mul_scalar(1.0 - m) + variance.detach().mul_scalar(m * n as f64 / (n - 1) as f64),
        );
    }

    /// On flex every convolution goes through relata's im2col + GEMM kernels: output and
    /// input/weight/bias gradients equal `conv2d`'s for ResNet's kernels (3×3 at stride 1 and 2,
    /// the 7×7/2 stem), odd and even sizes, asymmetric padding, a non-contiguous input, and
    /// without autodiff; an input that needs no gradient still gives the weight its gradient.
    #[test]
    fn every_kernel_matches_conv2d_on_flex() {
        if !crate::paths::avx512_enabled() {
            eprintln!("every_kernel_matches_conv2d_on_flex: no AVX-512 here, portable paths only");
        }
        check_every_kernel();
    }

    /// The same with the AVX-512 kernels switched off: the portable paths every other machine
    /// takes (im2col + GEMM, per-tap products), checked on this one too.
    #[test]
    fn every_kernel_matches_conv2d_on_flex_portable() {
        crate::paths::portable(check_every_kernel);
    }

    fn check_every_kernel() {
        use burn::tensor::Distribution;
        let device = burn::tensor::Device::flex().autodiff();
        let normal = Distribution::Normal(0.0, 1.0);
        for (k, stride, padding, bias, side) in [
            (3, 1, [1; 4], false, 9usize),
            (3, 2, [1; 4], false, 9),
            (3, 2, [1; 4], true, 8),
            (7, 2, [3; 4], false, 17),
            (5, 1, [2, 0, 1, 3], true, 6),
            (3, 3, [0; 4], false, 10),
            (1, 2, [0; 4], true, 7),
        ] {
            let [t, l, b, r] = padding;
            let conv = Conv2dConfig::new([4, 6], [k, k])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(t, l, b, r))
                .with_bias(bias)
                .init(&device);
            let x = Tensor::<4>::random([3, 4, side, side], normal, &device);
            let d = conv_path_deviation(&conv, x.clone());
            assert!(d.worst() < 1e-4, "{k}×{k}/{stride}, {side}²: {d:?}");
            assert!(d.input_grad.is_some() && d.weight_grad.is_some());
            // A permuted (strided) view of the same values.
            let view = x.clone().permute([0, 1, 3, 2]);
            let d = conv_path_deviation(&conv, view);
            assert!(d.worst() < 1e-4, "permuted {k}×{k}/{stride}: {d:?}");
        }
        // Channels in whole tiles of 8 on a 12² map: the direct 3×3 kernel (forward and input
        // gradient) on machines with AVX-512, im2col elsewhere.
        let conv = Conv2dConfig::new([16, 24], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .init(&device);
        let x = Tensor::<4>::random([2, 16, 12, 12], normal, &device);
        let d = conv_path_deviation(&conv, x.clone());
        assert!(d.worst() < 1e-4, "3×3/1, 16 → 24, 12²: {d:?}");
        let d = conv_path_deviation(&conv, x.permute([0, 1, 3, 2]));
        assert!(d.worst() < 1e-4, "permuted 3×3/1, 16 → 24: {d:?}");
        // A block of 16 images on outputs up to 14 rows, at stride 1 and 2: the batch-lane
        // kernels (all three products; at stride 2 from 10 rows only the weight gradient) on
        // machines with AVX-512, per-tap products and im2col elsewhere.
        for (stride, side) in [(1, 5), (2, 7), (1, 13), (2, 26)] {
            let conv = Conv2dConfig::new([16, 8], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(&device);
            let x = Tensor::<4>::random([16, 16, side, side], normal, &device);
            let d = conv_path_deviation(&conv, x.clone());
            assert!(d.worst() < 1e-4, "3×3/{stride}, 16 images, {side}²: {d:?}");
            assert!(d.input_grad.is_some() && d.weight_grad.is_some());
        }
        // The first convolution's input (an image batch) needs no gradient.
        let conv = Conv2dConfig::new([3, 5], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let x = Tensor::<4>::random([2, 3, 6, 6], normal, &device);
        let weight_grad = |y: Tensor<4>| {
            let grads = y.powf_scalar(2.0).sum().backward();
            conv.weight
                .grad(&grads)
                .expect("weight gradient")
                .into_data()
        };
        let (ours, reference) = (
            weight_grad(conv2d(&conv, x.clone())),
            weight_grad(conv.forward(x)),
        );
        // Relative to 1 + |value|, as `conv_path_deviation`: a weight gradient is a sum of
        // ±terms, and where they cancel to ~1e-3 a purely relative 1e-4 failed 2 runs in 80.
        ours.assert_approx_eq::<f32>(&reference, burn::tensor::Tolerance::rel_abs(1e-4, 1e-4));
        // Without autodiff.
        let plain = burn::tensor::Device::flex();
        let conv = Conv2dConfig::new([4, 6], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&plain);
        let x = Tensor::<4>::random([2, 4, 11, 11], normal, &plain);
        let d = conv_path_deviation(&conv, x);
        assert!(d.output < 1e-5 && d.input_grad.is_none(), "{d:?}");
    }

    /// On flex, max pooling goes through relata's kernel: same output and input gradient as
    /// burn's `max_pool2d` (ResNet's 3×3/2 with padding 1, odd and even sizes, a 2×2/2 pool, a
    /// strided view as input), with and without autodiff.
    #[test]
    fn max_pool_matches_burn_on_flex() {
        use burn::tensor::Distribution;
        let normal = Distribution::Normal(0.0, 1.0);
        for (k, stride, pad, side) in [(3, 2, 1, 9usize), (3, 2, 1, 12), (2, 2, 0, 8), (3, 1, 1, 5)]
        {
            let pool = MaxPool2dConfig::new([k, k])
                .with_strides([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .init();
            let device = burn::tensor::Device::flex().autodiff();
            let x = Tensor::<4>::random([2, 3, side, side + 1], normal, &device);
            for x in [x.clone(), x.permute([0, 1, 3, 2])] {
                let probe_dims = pool.forward(x.clone()).dims();
                let probe = Tensor::<4>::random(probe_dims, normal, &device);
                let run = |ours: bool| {
                    let x = x.clone().require_grad();
                    let y = if ours {
                        crate::kernels::pool::try_max_pool2d(
                            x.clone(),
                            crate::kernels::WindowGeometry {
                                kernel: [k, k],
                                stride: [stride, stride],
                                padding: [pad; 4],
                            },
                        )
                        .expect("flex takes the path")
                    } else {
                        pool.forward(x.clone())
                    };
                    let grads = (y.clone() * probe.clone()).sum().backward();
                    (y.inner().into_data(), x.grad(&grads).unwrap().into_data())
                };
                let ((y, dx), (y_ref, dx_ref)) = (run(true), run(false));
                y.assert_eq(&y_ref, true);
                dx.assert_approx_eq::<f32>(&dx_ref, burn::tensor::Tolerance::absolute(1e-6));
            }
            // `max_pool2d` takes the path on a plain device too.
            let plain = burn::tensor::Device::flex();
            let x = Tensor::<4>::random([2, 3, side, side], normal, &plain);
            max_pool2d(&pool, x.clone())
                .into_data()
                .assert_eq(&pool.forward(x).into_data(), true);
        }
    }
}
