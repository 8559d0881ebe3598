//! CMBH's network (the paper's "Modules"; docs/cmbh.md): backbone stages F^1..F^L (Eq. 1), the
//! sub-networks N_sub-j (Eq. 2), cosine matching with the C-vectors (Eq. 3, 9), class scores ŷ (Eq.
//! 10, 13), the hash head (Eq. 4 / Eq. 12) with its tanh relaxation, early fusion N_con (Eq. 8) and
//! the stage classifiers N_cls-j.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::activation::{elu, softmax};
use burn::tensor::{Device, Distribution, Tensor};
use relata_backbone::ResNet;
use relata_backbone::ops::{batch_norm, conv2d};

use crate::config::{CmbhConfig, STAGES};

/// N_sub-j: 1×1 conv (c → hidden) → 3×3 conv (hidden → c), each with BN + ReLU, global max
/// pool, BN → FC (c → d) → BN → ELU.
///
/// The paper says "two convolutions, a global max pool and an FC"; these shapes (those of the
/// PMG conv block and classifier the FGIR methods share) are the ones that reproduce Table 5's
/// parameter counts to the last digit for both ResNet-18 and ResNet-50 (docs/cmbh.md).
#[derive(Module, Debug)]
pub struct SubNetwork {
    /// 1×1 conv, c → hidden.
    pub conv1: Conv2d,
    /// Its BN.
    pub bn1: BatchNorm,
    /// 3×3 conv, hidden → c.
    pub conv2: Conv2d,
    /// Its BN.
    pub bn2: BatchNorm,
    /// BN on the pooled vector.
    pub bn_pool: BatchNorm,
    /// FC c → d.
    pub fc: Linear,
    /// BN on f^j.
    pub bn_out: BatchNorm,
    relu: Relu,
}

impl SubNetwork {
    fn new(channels: usize, hidden: usize, dim: usize, device: &Device) -> Self {
        let conv = |cin, cout, k: usize| {
            let p = k / 2;
            Conv2dConfig::new([cin, cout], [k, k])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .with_bias(false)
                .init(device)
        };
        Self {
            conv1: conv(channels, hidden, 1),
            bn1: BatchNormConfig::new(hidden).init(device),
            conv2: conv(hidden, channels, 3),
            bn2: BatchNormConfig::new(channels).init(device),
            bn_pool: BatchNormConfig::new(channels).init(device),
            fc: LinearConfig::new(channels, dim).init(device),
            bn_out: BatchNormConfig::new(dim).init(device),
            relu: Relu::new(),
        }
    }

    /// f^j = N_sub-j(F^j), `[n, d]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self
            .relu
            .forward(batch_norm(&self.bn1, conv2d(&self.conv1, x)));
        let x = self
            .relu
            .forward(batch_norm(&self.bn2, conv2d(&self.conv2, x)));
        let [n, c, _, _] = x.dims();
        let pooled = x.flatten::<3>(2, 3).max_dim(2).reshape([n, c]);
        let f = self.fc.forward(batch_norm(&self.bn_pool, pooled));
        elu(batch_norm(&self.bn_out, f), 1.0)
    }
}

/// How the k matching scores of a class become its class score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// ŷ = α Σ_b M (Eq. 10).
    Sum,
    /// ŷ = α max_b M (Eq. 13, the region branch).
    Max,
}

/// Everything one forward pass of the training network produces.
#[derive(Debug, Clone)]
pub struct CmbhOutput {
    /// F^1..F^L (only the stages the configuration needs; empty entries are never read).
    pub maps: Vec<Tensor<4>>,
    /// M, `[n, y, k]` (Eq. 3).
    pub matching: Tensor<3>,
    /// ŷ^l, `[n, y]`.
    pub logits_hash: Tensor<2>,
    /// u = tanh(W_h vec(·)), `[n, bits]` (Eq. 12 relaxed).
    pub u: Tensor<2>,
    /// ŷ^0 from early fusion (with +L).
    pub logits_fused: Option<Tensor<2>>,
    /// ŷ^j = N_cls-j(f^j) for the stages j ≠ l (with +L).
    pub logits_stages: Vec<Tensor<2>>,
}

impl CmbhOutput {
    /// Σ_{j=0..L} ŷ^j, the transfer loss's teacher (Eq. 11); `None` without +L.
    pub fn ensemble(&self) -> Option<Tensor<2>> {
        let fused = self.logits_fused.clone()?;
        Some(
            self.logits_stages
                .iter()
                .fold(fused + self.logits_hash.clone(), |acc, y| acc + y.clone()),
        )
    }

    /// Every class-score vector ŷ^0, ŷ^l, ŷ^j (the L_cls terms).
    pub fn all_logits(&self) -> Vec<Tensor<2>> {
        let mut v: Vec<Tensor<2>> = self.logits_fused.iter().cloned().collect();
        v.push(self.logits_hash.clone());
        v.extend(self.logits_stages.iter().cloned());
        v
    }
}

/// The training network. [`CmbhModel::into_encoder`] keeps only the inference path.
#[derive(Module, Debug)]
pub struct CmbhModel {
    /// Backbone N (torchvision layout; `fc` absent).
    pub backbone: ResNet,
    /// N_sub-1..N_sub-L (one per tapped stage).
    pub subnets: Vec<SubNetwork>,
    /// C ∈ R^{y×k×d}.
    pub cvectors: Param<Tensor<3>>,
    /// W_h ∈ R^{b×yk}, no bias.
    pub hash: Linear,
    /// N_con: FC (L·d → d) (with +L).
    pub fusion: Option<Linear>,
    /// N_cls-j (d → y) for the stages j ≠ l, in stage order (with +L).
    pub classifiers: Vec<Linear>,
    /// α.
    pub alpha: f64,
    /// l (1-based).
    pub hash_stage: usize,
    /// Eq. 12's softmax weighting (with +T); Eq. 4 otherwise.
    pub weighted_hash: bool,
    /// Whether all L stages run (with +L or +R); otherwise only up to l.
    pub all_stages: bool,
}

impl CmbhConfig {
    /// Builds the training network on `device` (call [`CmbhConfig::check`] first).
    pub fn init(&self, device: &Device) -> CmbhModel {
        let backbone = self.backbone.clone().with_num_classes(None).init(device);
        let channels = self.stage_channels();
        let a = self.ablation;
        let all_stages = a.cross_layer || a.regions;
        let subnets = (1..=STAGES)
            .filter(|&j| all_stages || j == self.hash_stage)
            .map(|j| SubNetwork::new(channels[j - 1], self.sub_hidden, self.dim, device))
            .collect();
        let cvectors = Tensor::random(
            [self.classes, self.k, self.dim],
            Distribution::Normal(0.0, 1.0),
            device,
        );
        CmbhModel {
            backbone,
            subnets,
            cvectors: Param::from_tensor(cvectors),
            hash: LinearConfig::new(self.classes * self.k, self.bits)
                .with_bias(false)
                .init(device),
            fusion: a
                .cross_layer
                .then(|| LinearConfig::new(STAGES * self.dim, self.dim).init(device)),
            classifiers: if a.cross_layer {
                (1..=STAGES)
                    .filter(|&j| j != self.hash_stage)
                    .map(|_| LinearConfig::new(self.dim, self.classes).init(device))
                    .collect()
            } else {
                Vec::new()
            },
            alpha: self.alpha,
            hash_stage: self.hash_stage,
            weighted_hash: a.transfer,
            all_stages,
        }
    }
}

/// Row-wise L2 normalisation (PyTorch's `F.normalize`, ε = 1e-12).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// M = cos(C, f) for C `[y, k, d]` and f `[n, d]` → `[n, y, k]`, and ŷ = α·reduce_b M `[n, y]`.
pub fn cosine_match(
    cvectors: Tensor<3>,
    f: Tensor<2>,
    alpha: f64,
    reduce: Reduce,
) -> (Tensor<3>, Tensor<2>) {
    let [y, k, d] = cvectors.dims();
    let n = f.dims()[0];
    let c = l2_normalize(cvectors.reshape([y * k, d]));
    let m = l2_normalize(f).matmul(c.transpose()).reshape([n, y, k]);
    let scores = match reduce {
        Reduce::Sum => m.clone().sum_dim(2),
        Reduce::Max => m.clone().max_dim(2),
    }
    .reshape([n, y])
    .mul_scalar(alpha);
    (m, scores)
}

/// W_h vec(softmax(ŷ^l) ⊙ M) (Eq. 12, `weighted`) or W_h vec(M) (Eq. 4), before tanh/sign.
pub fn hash_head(
    hash: &Linear,
    matching: Tensor<3>,
    scores: Tensor<2>,
    weighted: bool,
) -> Tensor<2> {
    let [n, y, k] = matching.dims();
    let m = if weighted {
        matching * softmax(scores, 1).reshape([n, y, 1])
    } else {
        matching
    };
    hash.forward(m.reshape([n, y * k]))
}

impl CmbhModel {
    /// Classes y.
    pub fn classes(&self) -> usize {
        self.cvectors.dims()[0]
    }

    /// C-vectors per class k.
    pub fn k(&self) -> usize {
        self.cvectors.dims()[1]
    }

    /// Code length b.
    pub fn bits(&self) -> usize {
        self.hash.weight.dims()[1]
    }

    /// The stage maps F^j the configuration needs, as `Some` at index j − 1.
    pub fn stage_maps(&self, images: Tensor<4>) -> Vec<Option<Tensor<4>>> {
        let last = if self.all_stages {
            STAGES
        } else {
            self.hash_stage
        };
        let layers = self.backbone.stages(images, CmbhConfig::layer_of(last));
        // layers[0] is layer1, which CMBH does not tap.
        (1..=STAGES)
            .map(|j| {
                let needed = self.all_stages || j == self.hash_stage;
                (needed && j <= last).then(|| layers[CmbhConfig::layer_of(j) - 1].clone())
            })
            .collect()
    }

    /// M = cos(C, f) (Eq. 3 / 9), `[n, y, k]`, and the class scores ŷ (Eq. 10 / 13).
    pub fn match_cvectors(&self, f: Tensor<2>, reduce: Reduce) -> (Tensor<3>, Tensor<2>) {
        cosine_match(self.cvectors.val(), f, self.alpha, reduce)
    }

    /// The hash head before the sign: W_h vec(softmax(ŷ^l) ⊙ M) (Eq. 12) or W_h vec(M) (Eq. 4).
    pub fn hash_logits(&self, matching: Tensor<3>, logits_hash: Tensor<2>) -> Tensor<2> {
        hash_head(&self.hash, matching, logits_hash, self.weighted_hash)
    }

    /// The full training forward pass on `[n, 3, h, w]` images.
    pub fn forward(&self, images: Tensor<4>) -> CmbhOutput {
        self.forward_with(images, Reduce::Sum)
    }

    /// The forward pass with class scores reduced by `reduce` (Sum for whole images, Max for
    /// region crops, Eq. 13).
    pub fn forward_with(&self, images: Tensor<4>, reduce: Reduce) -> CmbhOutput {
        let maps = self.stage_maps(images);
        let l = self.hash_stage;
        let feats: Vec<Option<Tensor<2>>> = if self.all_stages {
            maps.iter()
                .zip(&self.subnets)
                .map(|(m, s)| m.clone().map(|m| s.forward(m)))
                .collect()
        } else {
            (1..=STAGES)
                .map(|j| {
                    (j == l).then(|| {
                        self.subnets[0].forward(maps[j - 1].clone().expect("stage l is computed"))
                    })
                })
                .collect()
        };
        let f_l = feats[l - 1].clone().expect("stage l is computed");
        let (matching, logits_hash) = self.match_cvectors(f_l, reduce);
        let u = self
            .hash_logits(matching.clone(), logits_hash.clone())
            .tanh();
        let (logits_fused, logits_stages) = match &self.fusion {
            Some(fusion) => {
                let all: Vec<Tensor<2>> = feats.iter().flatten().cloned().collect();
                let f0 = fusion.forward(Tensor::cat(all, 1));
                let (_, y0) = self.match_cvectors(f0, reduce);
                let stages = (1..=STAGES)
                    .filter(|&j| j != l)
                    .zip(&self.classifiers)
                    .map(|(j, cls)| cls.forward(feats[j - 1].clone().expect("all stages run")))
                    .collect();
                (Some(y0), stages)
            }
            None => (None, Vec::new()),
        };
        CmbhOutput {
            maps: maps.into_iter().flatten().collect(),
            matching,
            logits_hash,
            u,
            logits_fused,
            logits_stages,
        }
    }
}
