//! `cargo xtask bench ops` ("profile by op"): the layers a ResNet-18 training
//! step is made of, one at a time, at the shapes of a 112×112 batch of 16 — convolutions of the
//! stem and of each stage, batch norm (inference mode forward, training mode forward +
//! backward), max pool, ReLU — forward and forward +
//! backward (gradients for the input and the parameters), on every CPU backend of this build
//! beside PyTorch. Where a whole-network ratio hides its cause, this table shows which op loses.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{BatchNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Distribution, Tensor};

/// The cases, named as the Python reference parses them: `conv-cin-cout-k-stride-hw`,
/// `bn-c-hw`, `maxpool-c-hw`, `relu-c-hw`.
const LAYERS: [&str; 10] = [
    "conv-3-64-7-2-112",
    "conv-64-64-3-1-28",
    "conv-128-128-3-1-14",
    "conv-256-256-3-1-7",
    "conv-512-512-3-1-4",
    "conv-64-128-3-2-28",
    "conv-256-512-3-2-7",
    "bn-64-28",
    "maxpool-64-56",
    "relu-64-28",
];

fn dims(spec: &str) -> Result<(String, Vec<usize>)> {
    let mut parts = spec.split('-');
    let kind = parts.next().context("empty case")?.to_string();
    let d = parts
        .map(str::parse)
        .collect::<Result<Vec<usize>, _>>()
        .with_context(|| format!("bad case {spec}"))?;
    Ok((kind, d))
}

/// Best of `reps` after one warm-up.
fn time_layer(spec: &str, backward: bool, device: &Device, reps: usize) -> Result<f64> {
    let device = if backward {
        device.clone().autodiff()
    } else {
        device.clone()
    };
    let (kind, d) = dims(spec)?;
    let (channels, hw) = match (kind.as_str(), d.as_slice()) {
        ("conv", [cin, _, _, _, hw]) => (*cin, *hw),
        ("bn" | "maxpool" | "relu", [c, hw]) => (*c, *hw),
        _ => bail!("unknown case {spec}"),
    };
    let forward: Box<dyn Fn(Tensor<4>) -> Tensor<4>> = match (kind.as_str(), d.as_slice()) {
        ("conv", [cin, cout, k, s, _]) => {
            let p = k / 2;
            let conv = Conv2dConfig::new([*cin, *cout], [*k, *k])
                .with_stride([*s, *s])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .with_bias(false)
                .init(&device);
            // What relata's ResNets call: on flex, relata's own kernels (`flex::conv`).
            Box::new(move |x| relata_backbone::ops::conv2d(&conv, x))
        }
        ("bn", [c, _]) => {
            let bn = BatchNormConfig::new(*c).init(&device);
            // What relata's ResNets call: on flex, relata's own kernels (`flex::norm`).
            Box::new(move |x| relata_backbone::ops::batch_norm(&bn, x))
        }
        ("maxpool", _) => {
            let pool = MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init();
            // What relata's ResNets call: on flex, relata's own kernel (`flex::pool`).
            Box::new(move |x| relata_backbone::ops::max_pool2d(&pool, x))
        }
        // What relata's ResNets call: on flex, relata's own kernel (`flex::activation`).
        _ => Box::new(relata_backbone::ops::relu),
    };
    let x = Tensor::<4>::random(
        [16, channels, hw, hw],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let mut best = f64::INFINITY;
    for i in 0..=reps {
        let x = if backward {
            x.clone().require_grad()
        } else {
            x.clone()
        };
        let t = Instant::now();
        let y = forward(x);
        if backward {
            drop(y.sum().backward());
        } else {
            let _ = y.into_data();
        }
        if i > 0 {
            best = best.min(t.elapsed().as_secs_f64());
        }
    }
    Ok(best)
}

pub fn run(python: &str, quick: bool, json_out: &Path, root: &Path) -> Result<()> {
    let threads = rayon::current_num_threads();
    let reps = if quick { 3 } else { 10 };
    let devices = crate::bench_backbone::cpu_devices()?;
    let cases: Vec<(String, &str, bool)> = LAYERS
        .iter()
        .flat_map(|&l| {
            [("fwd", false), ("fwdbwd", true)]
                .into_iter()
                .map(move |(m, b)| (format!("{l}:{m}"), l, b))
        })
        .collect();
    let names: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    let rounds = if quick { 1 } else { 3 };
    let (reference, timings) = crate::bench_backbone::best_over_rounds(rounds, || {
        let reference = crate::bench_backbone::pytorch_reference(
            python,
            &root.join("benches/python/ops_reference.py"),
            threads,
            reps,
            &names,
            "torch==2.9.0",
        )?;
        // Device-major, as in `bench backbone` (libtorch's spinning OpenMP workers).
        let timings = devices
            .iter()
            .map(|(_, d)| {
                cases
                    .iter()
                    .map(|(_, layer, backward)| time_layer(layer, *backward, d, reps))
                    .collect::<Result<Vec<f64>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((reference, timings))
    })?;
    crate::bench_backbone::report(&names, &devices, &timings, &reference, threads, json_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case builds and runs both ways (one untimed pass each); a bad name is an error.
    #[test]
    fn every_case_runs() {
        let device = Device::flex();
        for layer in LAYERS {
            for backward in [false, true] {
                let t = time_layer(layer, backward, &device, 1).unwrap();
                assert!(t.is_finite() && t > 0.0, "{layer}");
            }
        }
        assert!(time_layer("conv-1-2", false, &device, 1).is_err());
        assert!(time_layer("pool-3-4", false, &device, 1).is_err());
    }
}
