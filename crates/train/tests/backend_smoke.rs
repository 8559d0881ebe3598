//! Backend smoke test: the same backend-erased model code trains on every compiled
//! backend.
//!
//! A tiny conv net (conv → BN → ReLU → 2×2 average pool → linear) is initialised once on `flex`;
//! its weights travel to every other device through a `ModuleRecord` (never by re-seeding, since
//! one seed gives different weights on different backends). Each device then runs 20 SGD steps
//! on one fixed synthetic batch. We assert that the loss falls by at least half and that the
//! first-step loss matches `flex` within 1e-3 relative.
//!
//! Devices: every compiled backend's primary device (`flex`, `ndarray`, `wgpu`, `tch`, ...), or
//! the comma-separated list in `RELATA_SMOKE_DEVICES` (e.g. `wgpu-gl`, `cuda`). `cargo test`
//! runs it on `flex`; `cargo xtask ci` also builds this crate alone with `--features wgpu,tch`.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::store::ModuleRecord;
use burn::tensor::{Device, Int, Tensor, TensorData};
use relata_train::device::{DeviceChoice, compiled_devices};

const BATCH: usize = 16;
const SIDE: usize = 12;
const CLASSES: usize = 4;
const STEPS: usize = 20;
const LR: f64 = 0.05;

#[derive(Module, Debug)]
struct SmokeNet {
    conv: Conv2d,
    bn: BatchNorm,
    relu: Relu,
    pool: AdaptiveAvgPool2d,
    head: Linear,
}

impl SmokeNet {
    fn new(device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([3, 8], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            bn: BatchNormConfig::new(8).init(device),
            relu: Relu::new(),
            pool: AdaptiveAvgPool2dConfig::new([2, 2]).init(),
            head: LinearConfig::new(8 * 2 * 2, CLASSES).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.relu.forward(self.bn.forward(self.conv.forward(x)));
        let x = self.pool.forward(x);
        self.head.forward(x.flatten(1, 3))
    }
}

/// A fixed batch: class `c` lights up quadrant `c` of the image; the rest is low-amplitude
/// deterministic noise, so every backend sees bit-identical inputs.
fn batch() -> (Vec<f32>, Vec<i64>) {
    let mut state: u32 = 0x1234_5678;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state as f32 / u32::MAX as f32) - 0.5
    };
    let mut pixels = Vec::with_capacity(BATCH * 3 * SIDE * SIDE);
    let mut labels = Vec::with_capacity(BATCH);
    for i in 0..BATCH {
        let class = i % CLASSES;
        labels.push(class as i64);
        for ch in 0..3 {
            for y in 0..SIDE {
                for x in 0..SIDE {
                    let quadrant = (y >= SIDE / 2) as usize * 2 + (x >= SIDE / 2) as usize;
                    let signal = if quadrant == class { 1.0 } else { 0.0 };
                    pixels.push(signal * (1.0 + 0.2 * ch as f32) + 0.3 * noise());
                }
            }
        }
    }
    (pixels, labels)
}

/// Trains `STEPS` SGD steps from `record` on `device` and returns the loss of every step.
fn train(device: &Device, record: ModuleRecord) -> Vec<f32> {
    let device = device.clone().autodiff();
    let mut model = SmokeNet::new(&device)
        .try_load_record(record)
        .expect("the flex record applies to the same architecture");
    let mut optim = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new()
                .with_momentum(0.9)
                .with_dampening(0.0)
                .with_nesterov(false),
        ))
        .init();
    let (pixels, labels) = batch();
    let x = Tensor::<4>::from_data(TensorData::new(pixels, [BATCH, 3, SIDE, SIDE]), &device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [BATCH]), &device);
    let ce = CrossEntropyLossConfig::new().init(&device);
    let mut losses = Vec::with_capacity(STEPS);
    for _ in 0..STEPS {
        let loss = ce.forward(model.forward(x.clone()), y.clone());
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(LR, model, grads);
    }
    losses
}

fn devices_under_test() -> Vec<DeviceChoice> {
    match std::env::var("RELATA_SMOKE_DEVICES") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|name| {
                name.parse()
                    .unwrap_or_else(|e| panic!("RELATA_SMOKE_DEVICES: {e}"))
            })
            .collect(),
        // The primary device of each compiled backend that needs no special hardware:
        // `wgpu-gl` is a slow fallback, `vulkan` crashes software lavapipe, CUDA needs a GPU.
        _ => compiled_devices()
            .into_iter()
            .filter(|d| {
                !matches!(
                    d,
                    DeviceChoice::WgpuGl
                        | DeviceChoice::Vulkan
                        | DeviceChoice::Cuda(_)
                        | DeviceChoice::TchCuda(_)
                )
            })
            .collect(),
    }
}

#[test]
fn same_model_trains_on_every_compiled_backend() {
    let flex = DeviceChoice::Flex
        .device()
        .expect("flex is the reference backend and must be compiled in");
    let reference = SmokeNet::new(&flex).into_record();
    let flex_losses = train(&flex, reference.clone());
    let devices = devices_under_test();
    assert!(!devices.is_empty(), "no device to test");
    for choice in devices {
        let device = choice
            .device()
            .unwrap_or_else(|e| panic!("bringing up {choice}: {e}"));
        let losses = if choice == DeviceChoice::Flex {
            flex_losses.clone()
        } else {
            train(&device, reference.clone())
        };
        let (first, last) = (losses[0], losses[STEPS - 1]);
        eprintln!("{choice}: loss {first:.5} -> {last:.5} over {STEPS} steps");
        assert!(
            first.is_finite() && last.is_finite(),
            "{choice}: {losses:?}"
        );
        assert!(
            last <= 0.5 * first,
            "{choice}: loss did not halve in {STEPS} steps: {losses:?}"
        );
        let rel = ((first - flex_losses[0]) / flex_losses[0]).abs();
        assert!(
            rel <= 1e-3,
            "{choice}: first-step loss {first} differs from flex's {} by {rel:.2e} (> 1e-3)",
            flex_losses[0]
        );
    }
}

/// `relata_backbone::ops::conv2d` is relata's own code, not `conv2d`: on flex its
/// im2col and GEMM kernels with their backward, for every kernel size; elsewhere, when training,
/// 1×1 convolutions as reshapes, a subsampling and matrix products, ops that must work on every
/// backend, not only where the path was measured (burn-tch, for one, cannot take the backward of
/// a stepped slice). Output and input/weight/bias gradients match `conv2d` on the same device,
/// for 1×1 kernels at stride 1 and 2 on maps under and over 14×14 (the two layouts of the
/// product), odd sizes included, and for 3×3 kernels at stride 1 and 2.
#[test]
fn convolution_path_matches_conv2d_on_every_compiled_backend() {
    use burn::tensor::Distribution;
    use relata_backbone::ops::conv_path_deviation;
    for choice in devices_under_test() {
        let device = choice
            .device()
            .unwrap_or_else(|e| panic!("bringing up {choice}: {e}"))
            .autodiff();
        for (k, stride, side) in [
            (1, 1usize, 16usize),
            (1, 2, 7),
            (1, 2, 30),
            (1, 1, 5),
            (3, 1, 9),
            (3, 2, 10),
        ] {
            let p = k / 2;
            let conv = Conv2dConfig::new([6, 4], [k, k])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .with_bias(true)
                .init(&device);
            let x =
                Tensor::<4>::random([2, 6, side, side], Distribution::Normal(0.0, 1.0), &device);
            let deviation = conv_path_deviation(&conv, x);
            assert!(
                deviation.input_grad.is_some()
                    && deviation.weight_grad.is_some()
                    && deviation.bias_grad.is_some(),
                "{choice}: missing gradients {deviation:?}"
            );
            assert!(
                deviation.worst() < 1e-4,
                "{choice}, {k}×{k}, stride {stride}, {side}²: {deviation:?}"
            );
            eprintln!("{choice}: {k}×{k} path, stride {stride}, {side}²: matches conv2d");
        }
    }
}
