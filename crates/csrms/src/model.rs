//! The network (the paper's "Training stage"; docs/csrms.md): a ResNet backbone with its linear
//! classifier (L_cls, and the top-1/top-5 this crate reports), the 2-layer GCN over the batch
//! sub-graph (F_g = Â·ReLU(Â X W₁)W₂, hidden 256, back to the feature dimension), the cluster- and
//! class-level smoothing (F_u = α_u ⊙ F_g + β_u ⊙ w_c, F_a = α_a ⊙ F_u + β_a ⊙ p_c) and the GCN
//! branch's classifier (L_gcn). A trained model is saved as `model.json` + `model.bpk`.

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use relata_backbone::ResNet;

use crate::config::CsrmsConfig;
use crate::error::CsrmsError;
use crate::sampler::identity_adjacency;

/// Two graph-convolution layers. Each multiplies by Â before its linear map, so the bias is
/// added after the propagation (Z = Â H W + b), as in the authors' `GraphConvolution`.
#[derive(Module, Debug)]
pub struct Gcn {
    /// W₁ (feature dim → hidden).
    pub w1: Linear,
    /// W₂ (hidden → feature dim).
    pub w2: Linear,
}

impl Gcn {
    /// Â·ReLU(Â X W₁ + b₁)W₂ + b₂ for node features `x` (`[nodes, dim]`) and `adjacency`
    /// (`[nodes, nodes]`).
    pub fn forward(&self, adjacency: Tensor<2>, x: Tensor<2>) -> Tensor<2> {
        let h = relu(self.w1.forward(adjacency.clone().matmul(x)));
        self.w2.forward(adjacency.matmul(h))
    }
}

/// α_u, β_u, α_a, β_a: per-dimension vectors. Learnable (initialised to the configured
/// values, 1, 0, 1, 0 by default) or fixed at those values.
#[derive(Module, Debug)]
pub struct Smoothing {
    /// α_u.
    pub alpha_u: Param<Tensor<1>>,
    /// β_u.
    pub beta_u: Param<Tensor<1>>,
    /// α_a.
    pub alpha_a: Param<Tensor<1>>,
    /// β_a.
    pub beta_a: Param<Tensor<1>>,
    /// Whether the four vectors are trained.
    #[module(skip)]
    pub learnable: bool,
}

impl Smoothing {
    fn coefficient(&self, p: &Param<Tensor<1>>) -> Tensor<2> {
        let v = p.val();
        let v = if self.learnable { v } else { v.detach() };
        v.unsqueeze_dim(0)
    }

    /// F_a = α_a ⊙ (α_u ⊙ F_g + β_u ⊙ w_c) + β_a ⊙ p_c, rows of `cluster` / `class` being the
    /// prototypes of each node's label.
    pub fn forward(&self, f_g: Tensor<2>, cluster: Tensor<2>, class: Tensor<2>) -> Tensor<2> {
        let f_u = f_g * self.coefficient(&self.alpha_u) + cluster * self.coefficient(&self.beta_u);
        f_u * self.coefficient(&self.alpha_a) + class * self.coefficient(&self.beta_a)
    }

    /// Without labels (test time) the prototype terms drop out: α_a ⊙ α_u ⊙ F_g.
    pub fn forward_unlabelled(&self, f_g: Tensor<2>) -> Tensor<2> {
        f_g * self.coefficient(&self.alpha_u) * self.coefficient(&self.alpha_a)
    }
}

/// Backbone, classifier, GCN, smoothing, GCN classifier.
#[derive(Module, Debug)]
pub struct CsrmsModel {
    /// ResNet without its `fc`.
    pub backbone: ResNet,
    /// The backbone's linear classifier (L_cls; the reported accuracy).
    pub classifier: Linear,
    /// Graph smoothing.
    pub gcn: Gcn,
    /// Cluster- and class-level smoothing coefficients.
    pub smoothing: Smoothing,
    /// Classifier of F_a (L_gcn).
    pub gcn_head: Linear,
}

impl CsrmsConfig {
    /// Builds the network.
    pub fn init(&self, device: &Device) -> CsrmsModel {
        let backbone = self.backbone.clone().with_num_classes(None);
        let dim = backbone.out_channels();
        let vector = |v: f64| Param::from_tensor(Tensor::<1>::ones([dim], device).mul_scalar(v));
        let [alpha_u, beta_u, alpha_a, beta_a] = self.smoothing_init;
        CsrmsModel {
            backbone: backbone.init(device),
            classifier: LinearConfig::new(dim, self.classes).init(device),
            gcn: Gcn {
                w1: LinearConfig::new(dim, self.gcn_hidden).init(device),
                w2: LinearConfig::new(self.gcn_hidden, dim).init(device),
            },
            smoothing: Smoothing {
                alpha_u: vector(alpha_u),
                beta_u: vector(beta_u),
                alpha_a: vector(alpha_a),
                beta_a: vector(beta_a),
                learnable: self.learnable_smoothing,
            },
            gcn_head: LinearConfig::new(dim, self.classes).init(device),
        }
    }
}

/// `model.json` + `model.bpk`.
const STEM: &str = "model";

impl CsrmsModel {
    /// Pooled backbone features `[n, dim]` of normalised images.
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        self.backbone.pooled(images)
    }

    /// Class scores of the backbone classifier `[n, classes]`.
    pub fn classify(&self, images: Tensor<4>) -> Tensor<2> {
        self.classifier.forward(self.features(images))
    }

    /// Class scores of the GCN branch without labels: each image is its own graph (Â = I) and
    /// the prototype terms drop out.
    pub fn classify_gcn(&self, features: Tensor<2>) -> Tensor<2> {
        let [n, _] = features.dims();
        let device = features.device();
        let adjacency = Tensor::from_data(TensorData::new(identity_adjacency(n), [n, n]), &device);
        let f_g = self.gcn.forward(adjacency, features);
        self.gcn_head
            .forward(self.smoothing.forward_unlabelled(f_g))
    }

    /// Writes `model.json` + `model.bpk` into `dir`.
    pub fn save(&self, config: &CsrmsConfig, dir: &Path) -> Result<(), CsrmsError> {
        Ok(relata_train::export::save_module(self, config, dir, STEM)?)
    }

    /// Loads a model saved by [`CsrmsModel::save`], with its configuration.
    pub fn load(dir: &Path, device: &Device) -> Result<(Self, CsrmsConfig), CsrmsError> {
        let config: CsrmsConfig =
            relata_train::export::load_config(dir, STEM, "a CSRMS run's `model` directory")?;
        config.check()?;
        let model = relata_train::export::load_module(config.init(device), dir, STEM)?;
        Ok((model, config))
    }
}
