//! `cargo xtask features`: feature extraction a user can script, and the
//! black-box contract for parity checks: `.npy` in (N×3×H×W float32, already normalised),
//! `.npy` out (the chosen stage's output, float32).

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::{Tensor, TensorData};
use clap::Args;
use relata_backbone::{ResNetConfig, ResNetDepth, import_state_dict};
use relata_metrics::npy::{NpyArray, write_npy};
use relata_train::device::select_device;

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    /// resnet18 | resnet50
    #[arg(long)]
    backbone: ResNetDepth,
    /// PyTorch state dict (`torch.save(model.state_dict())`, .pth/.pt, or .safetensors) in
    /// torchvision's layout; an `fc` head in the file is ignored.
    #[arg(long)]
    weights: PathBuf,
    /// Input images, N×3×H×W float32 (normalised as the weights expect).
    #[arg(long)]
    input: PathBuf,
    /// Output `.npy`.
    #[arg(long)]
    out: PathBuf,
    /// stem | layer1 | layer2 | layer3 | layer4 | pool
    #[arg(long, default_value = "pool")]
    stage: String,
    /// Base width (torchvision: 64).
    #[arg(long, default_value_t = 64)]
    width: usize,
    /// CIFAR stem (3×3 stride-1 conv1, no max pool).
    #[arg(long)]
    cifar_stem: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// flex | wgpu | tch | ... (else BURN_DEVICE, else flex)
    #[arg(long)]
    device: Option<String>,
}

pub fn run(args: FeaturesArgs) -> Result<()> {
    let stages = ["stem", "layer1", "layer2", "layer3", "layer4", "pool"];
    ensure!(
        stages.contains(&args.stage.as_str()),
        "unknown --stage `{}`; known: {}",
        args.stage,
        stages.join(", ")
    );
    ensure!(args.batch > 0, "--batch must be at least 1");
    let (_, device) = select_device(args.device.as_deref())?;
    let input = NpyArray::read(&args.input)?;
    let [n, c, h, w] = match input.shape[..] {
        [n, c, h, w] => [n, c, h, w],
        _ => bail!(
            "{}: shape {:?}, expected N×3×H×W",
            args.input.display(),
            input.shape
        ),
    };
    ensure!(c == 3, "{}: {c} channels, expected 3", args.input.display());
    let data = input.to_f32();
    let mut model = ResNetConfig::new(args.backbone)
        .with_width(args.width)
        .with_cifar_stem(args.cifar_stem)
        .init(&device);
    let report = import_state_dict(&mut model, &args.weights, &["fc."])?;
    eprintln!(
        "loaded {} tensors from {} ({} ignored)",
        report.applied,
        args.weights.display(),
        report.ignored.len()
    );
    let per = 3 * h * w;
    let mut out: Vec<f32> = Vec::new();
    let mut out_shape: Vec<usize> = Vec::new();
    for start in (0..n).step_by(args.batch) {
        let end = (start + args.batch).min(n);
        let x = Tensor::<4>::from_data(
            TensorData::new(
                data[start * per..end * per].to_vec(),
                [end - start, 3, h, w],
            ),
            &device,
        );
        let f = model.features(x);
        let t: Tensor<4> = match args.stage.as_str() {
            "stem" => f.stem,
            "layer1" => f.layer1,
            "layer2" => f.layer2,
            "layer3" => f.layer3,
            "layer4" => f.layer4,
            _ => f.pooled.unsqueeze_dims(&[2, 3]),
        };
        let dims = t.dims();
        out_shape = if args.stage == "pool" {
            vec![n, dims[1]]
        } else {
            vec![n, dims[1], dims[2], dims[3]]
        };
        out.extend(t.into_data().iter::<f32>());
    }
    write_npy(&args.out, &out_shape, &out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote {:?} to {}", out_shape, args.out.display());
    Ok(())
}
