//! ResNet-18/50 in torchvision's exact layout (`conv1`, `bn1`, `layer1..layer4` of blocks with
//! `conv1/bn1/conv2/bn2[/conv3/bn3]` and `downsample`, `fc`), returning every stage's feature
//! map so methods can tap `layer2/layer3/layer4` (CMBH's cross-layer fusion) or the pooled
//! vector (CSRMS, ISL).
//!
//! Beyond torchvision: a `width` (base channels, 64 in torchvision) so the embedded datasets can
//! train a narrow, fast variant, and a CIFAR stem (3×3 stride-1 conv, no max pool) as CSRMS and
//! ISL use for 32×32 images. The network is input-size agnostic (adaptive average pooling).
//! torchvision's Bottleneck puts the stride on the 3×3 conv ("ResNet v1.5"); so does this one.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d, Relu,
};
use burn::tensor::{Device, Tensor};
use relata_flex::ops::{add_relu, conv_batch_norm, max_pool2d};

/// Which ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResNetDepth {
    /// Basic blocks [2, 2, 2, 2].
    #[serde(rename = "resnet18")]
    ResNet18,
    /// Bottleneck blocks [3, 4, 6, 3].
    #[serde(rename = "resnet50")]
    ResNet50,
}

impl ResNetDepth {
    fn blocks(self) -> [usize; 4] {
        match self {
            ResNetDepth::ResNet18 => [2, 2, 2, 2],
            ResNetDepth::ResNet50 => [3, 4, 6, 3],
        }
    }

    fn bottleneck(self) -> bool {
        self == ResNetDepth::ResNet50
    }
}

impl std::str::FromStr for ResNetDepth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "resnet18" | "18" => Ok(ResNetDepth::ResNet18),
            "resnet50" | "50" => Ok(ResNetDepth::ResNet50),
            other => Err(format!(
                "unknown backbone `{other}`; known: resnet18, resnet50"
            )),
        }
    }
}

/// Configuration of a [`ResNet`].
#[derive(Config, Debug, PartialEq)]
pub struct ResNetConfig {
    /// ResNet-18 or ResNet-50.
    pub depth: ResNetDepth,
    /// Base width (torchvision: 64); stages have width, 2·width, 4·width, 8·width channels
    /// (× 4 at the output of bottleneck blocks).
    #[config(default = 64)]
    pub width: usize,
    /// CIFAR stem: 3×3 stride-1 `conv1`, no max pool.
    #[config(default = false)]
    pub cifar_stem: bool,
    /// Classes of the `fc` head; `None` for a feature extractor without `fc`.
    #[config(default = "None")]
    pub num_classes: Option<usize>,
}

fn conv(cin: usize, cout: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    let pad = k / 2;
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

fn bn(c: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(c).init(device)
}

/// `downsample.0` (1×1 conv) and `downsample.1` (BatchNorm) in torchvision.
#[derive(Module, Debug)]
pub struct Downsample {
    /// 1×1 strided convolution.
    pub conv: Conv2d,
    /// Its batch norm.
    pub bn: BatchNorm,
}

impl Downsample {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_batch_norm(&self.conv, &self.bn, x, false)
    }
}

/// ResNet-18's block: 3×3 → 3×3.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// First 3×3 conv (carries the stride).
    pub conv1: Conv2d,
    /// Its BN.
    pub bn1: BatchNorm,
    /// Second 3×3 conv.
    pub conv2: Conv2d,
    /// Its BN.
    pub bn2: BatchNorm,
    /// Shortcut projection when shape changes.
    pub downsample: Option<Downsample>,
    /// Unused by the forward ([`relata_flex::ops::add_relu`]); kept so that saved records keep their layout.
    relu: Relu,
}

/// ResNet-50's block: 1×1 → 3×3 (stride) → 1×1 (×4).
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// 1×1 reduce.
    pub conv1: Conv2d,
    /// Its BN.
    pub bn1: BatchNorm,
    /// 3×3 (carries the stride).
    pub conv2: Conv2d,
    /// Its BN.
    pub bn2: BatchNorm,
    /// 1×1 expand.
    pub conv3: Conv2d,
    /// Its BN.
    pub bn3: BatchNorm,
    /// Shortcut projection when shape changes.
    pub downsample: Option<Downsample>,
    /// Unused by the forward ([`relata_flex::ops::add_relu`]); kept so that saved records keep their layout.
    relu: Relu,
}

/// A residual block (the enum variant name is skipped when importing PyTorch weights).
// At most 16 blocks per network and never moved in a hot loop: boxing the larger variant would
// buy nothing and burn's `Module` derive does not see through `Box`.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Block {
    /// ResNet-18.
    Basic(BasicBlock),
    /// ResNet-50.
    Bottleneck(Bottleneck),
}

impl Block {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Block::Basic(b) => {
                let identity = match &b.downsample {
                    Some(d) => d.forward(x.clone()),
                    None => x.clone(),
                };
                let out = conv_batch_norm(&b.conv1, &b.bn1, x, true);
                let out = conv_batch_norm(&b.conv2, &b.bn2, out, false);
                add_relu(out, identity)
            }
            Block::Bottleneck(b) => {
                let identity = match &b.downsample {
                    Some(d) => d.forward(x.clone()),
                    None => x.clone(),
                };
                let out = conv_batch_norm(&b.conv1, &b.bn1, x, true);
                let out = conv_batch_norm(&b.conv2, &b.bn2, out, true);
                let out = conv_batch_norm(&b.conv3, &b.bn3, out, false);
                add_relu(out, identity)
            }
        }
    }
}

/// What [`ResNetConfig::cost`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageCost {
    /// Parameters.
    pub params: u64,
    /// Multiply–accumulates for one image.
    pub macs: u64,
    /// Output `[channels, h, w]` of the last stage counted.
    pub output: [usize; 3],
}

/// Every stage's output.
#[derive(Debug, Clone)]
pub struct ResNetFeatures {
    /// After `conv1 → bn1 → relu → maxpool`.
    pub stem: Tensor<4>,
    /// Stage outputs.
    pub layer1: Tensor<4>,
    /// Stage 2.
    pub layer2: Tensor<4>,
    /// Stage 3.
    pub layer3: Tensor<4>,
    /// Stage 4.
    pub layer4: Tensor<4>,
    /// Global average pool of `layer4`, `[n, channels]`.
    pub pooled: Tensor<2>,
}

/// A ResNet (see the module documentation).
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem convolution.
    pub conv1: Conv2d,
    /// Stem BN.
    pub bn1: BatchNorm,
    relu: Relu,
    maxpool: Option<MaxPool2d>,
    /// Stage 1.
    pub layer1: Vec<Block>,
    /// Stage 2.
    pub layer2: Vec<Block>,
    /// Stage 3.
    pub layer3: Vec<Block>,
    /// Stage 4.
    pub layer4: Vec<Block>,
    avgpool: AdaptiveAvgPool2d,
    /// Classifier head (absent for a feature extractor).
    pub fc: Option<Linear>,
}

impl ResNetConfig {
    /// Channels of each stage's output.
    pub fn stage_channels(&self) -> [usize; 4] {
        let e = if self.depth.bottleneck() { 4 } else { 1 };
        [1, 2, 4, 8].map(|m| self.width * m * e)
    }

    /// Channels of the pooled vector.
    pub fn out_channels(&self) -> usize {
        self.stage_channels()[3]
    }

    /// Parameters (conv weights + BN γ/β, as `torch`'s `numel` counts them) and multiply–
    /// accumulates of the stem and `layer1..layer{last}` on one `[3, h, w]` input.
    ///
    /// MACs count convolutions only (what `thop`/`ptflops` report as "FLOPs" for conv nets,
    /// minus their small element-wise terms); torchvision's ResNet-18 to `layer4` at 224×224 is
    /// 1.8136 G, ResNet-50 4.0871 G. Used for the inference-cost reports (CMBH's Table 5).
    pub fn cost(&self, input: [usize; 2], last: usize) -> StageCost {
        let mut params = 0u64;
        let mut macs = 0u64;
        let out_size = |s: usize, k: usize, stride: usize| (s + 2 * (k / 2) - k) / stride + 1;
        let mut conv = |cin: usize, cout: usize, k: usize, stride: usize, hw: [usize; 2]| {
            let [h, w] = hw.map(|s| out_size(s, k, stride));
            let weights = (cin * cout * k * k) as u64;
            params += weights + 2 * cout as u64; // + the following BN's γ and β
            macs += weights * (h * w) as u64;
            [h, w]
        };
        let mut hw = if self.cifar_stem {
            conv(3, self.width, 3, 1, input)
        } else {
            let hw = conv(3, self.width, 7, 2, input);
            hw.map(|s| (s + 2 - 3) / 2 + 1) // max pool 3×3, stride 2, padding 1
        };
        let bottleneck = self.depth.bottleneck();
        let expansion = if bottleneck { 4 } else { 1 };
        let mut inplanes = self.width;
        for (stage, &blocks) in self.depth.blocks().iter().enumerate().take(last.min(4)) {
            let planes = self.width << stage;
            for i in 0..blocks {
                let s = if i == 0 && stage > 0 { 2 } else { 1 };
                if i == 0 && (s != 1 || inplanes != planes * expansion) {
                    conv(inplanes, planes * expansion, 1, s, hw);
                }
                hw = if bottleneck {
                    let a = conv(inplanes, planes, 1, 1, hw);
                    let b = conv(planes, planes, 3, s, a);
                    conv(planes, planes * 4, 1, 1, b)
                } else {
                    let a = conv(inplanes, planes, 3, s, hw);
                    conv(planes, planes, 3, 1, a)
                };
                inplanes = planes * expansion;
            }
        }
        StageCost {
            params,
            macs,
            output: [inplanes, hw[0], hw[1]],
        }
    }

    /// Builds the network on `device`.
    pub fn init(&self, device: &Device) -> ResNet {
        let w = self.width;
        let bottleneck = self.depth.bottleneck();
        let expansion = if bottleneck { 4 } else { 1 };
        let mut inplanes = w;
        let mut stage =
            |planes: usize, blocks: usize, stride: usize| -> Vec<Block> {
                (0..blocks)
                    .map(|i| {
                        let s = if i == 0 { stride } else { 1 };
                        let downsample = (i == 0 && (s != 1 || inplanes != planes * expansion))
                            .then(|| Downsample {
                                conv: conv(inplanes, planes * expansion, 1, s, device),
                                bn: bn(planes * expansion, device),
                            });
                        let block = if bottleneck {
                            Block::Bottleneck(Bottleneck {
                                conv1: conv(inplanes, planes, 1, 1, device),
                                bn1: bn(planes, device),
                                conv2: conv(planes, planes, 3, s, device),
                                bn2: bn(planes, device),
                                conv3: conv(planes, planes * 4, 1, 1, device),
                                bn3: bn(planes * 4, device),
                                downsample,
                                relu: Relu::new(),
                            })
                        } else {
                            Block::Basic(BasicBlock {
                                conv1: conv(inplanes, planes, 3, s, device),
                                bn1: bn(planes, device),
                                conv2: conv(planes, planes, 3, 1, device),
                                bn2: bn(planes, device),
                                downsample,
                                relu: Relu::new(),
                            })
                        };
                        inplanes = planes * expansion;
                        block
                    })
                    .collect()
            };
        let [b1, b2, b3, b4] = self.depth.blocks();
        let layer1 = stage(w, b1, 1);
        let layer2 = stage(2 * w, b2, 2);
        let layer3 = stage(4 * w, b3, 2);
        let layer4 = stage(8 * w, b4, 2);
        let (conv1, maxpool) = if self.cifar_stem {
            (conv(3, w, 3, 1, device), None)
        } else {
            (
                conv(3, w, 7, 2, device),
                Some(
                    MaxPool2dConfig::new([3, 3])
                        .with_strides([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(),
                ),
            )
        };
        ResNet {
            conv1,
            bn1: bn(w, device),
            relu: Relu::new(),
            maxpool,
            layer1,
            layer2,
            layer3,
            layer4,
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: self
                .num_classes
                .map(|n| LinearConfig::new(8 * w * expansion, n).init(device)),
        }
    }
}

fn run(blocks: &[Block], x: Tensor<4>) -> Tensor<4> {
    blocks.iter().fold(x, |x, b| b.forward(x))
}

impl ResNet {
    /// All stage outputs for `x` (`[n, 3, h, w]`, normalised).
    pub fn features(&self, x: Tensor<4>) -> ResNetFeatures {
        let x = conv_batch_norm(&self.conv1, &self.bn1, x, true);
        let stem = match &self.maxpool {
            Some(p) => max_pool2d(p, x),
            None => x,
        };
        let layer1 = run(&self.layer1, stem.clone());
        let layer2 = run(&self.layer2, layer1.clone());
        let layer3 = run(&self.layer3, layer2.clone());
        let layer4 = run(&self.layer4, layer3.clone());
        let pooled = self.avgpool.forward(layer4.clone()).flatten(1, 3);
        ResNetFeatures {
            stem,
            layer1,
            layer2,
            layer3,
            layer4,
            pooled,
        }
    }

    /// The outputs of `layer1..layer{last}` only (`last` in 1..=4), skipping the deeper stages:
    /// an inference path that stops at `layer3` (CMBH's hash path) costs nothing for `layer4`.
    pub fn stages(&self, x: Tensor<4>, last: usize) -> Vec<Tensor<4>> {
        let x = conv_batch_norm(&self.conv1, &self.bn1, x, true);
        let mut x = match &self.maxpool {
            Some(p) => max_pool2d(p, x),
            None => x,
        };
        let layers = [&self.layer1, &self.layer2, &self.layer3, &self.layer4];
        let mut out = Vec::with_capacity(last.min(4));
        for blocks in layers.into_iter().take(last.min(4)) {
            x = run(blocks, x);
            out.push(x.clone());
        }
        out
    }

    /// The pooled feature vector, `[n, channels]`.
    pub fn pooled(&self, x: Tensor<4>) -> Tensor<2> {
        self.features(x).pooled
    }

    /// Logits through `fc`, or the pooled vector when there is no head.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let pooled = self.pooled(x);
        match &self.fc {
            Some(fc) => fc.forward(pooled),
            None => pooled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// torchvision's counts (parameters by `numel`, conv MACs by forward hooks) at 224×224.
    #[test]
    fn cost_matches_torchvision_counts() {
        let r18 = ResNetConfig::new(ResNetDepth::ResNet18);
        let r50 = ResNetConfig::new(ResNetDepth::ResNet50);
        let c = r18.cost([224, 224], 3);
        assert_eq!(
            (c.params, c.macs, c.output),
            (2_782_784, 1_402_519_552, [256, 14, 14])
        );
        let c = r18.cost([224, 224], 4);
        assert_eq!(
            (c.params, c.macs, c.output),
            (11_176_512, 1_813_561_344, [512, 7, 7])
        );
        let c = r50.cost([224, 224], 3);
        assert_eq!(
            (c.params, c.macs, c.output),
            (8_543_296, 3_277_897_728, [1024, 14, 14])
        );
        let c = r50.cost([224, 224], 4);
        assert_eq!((c.params, c.macs), (23_508_032, 4_087_136_256));
    }

    #[test]
    fn cost_params_agree_with_the_module() {
        let device = burn::tensor::Device::flex();
        let cfg = ResNetConfig::new(ResNetDepth::ResNet18).with_width(8);
        let net = cfg.init(&device);
        // burn's `num_params` also counts BN's running mean and variance (600 channels of BN in
        // a width-8 ResNet-18); `cost` counts trainable parameters only, as torch does.
        assert_eq!(
            cfg.cost([32, 32], 4).params as usize + 2 * 600,
            net.num_params()
        );
    }
}
