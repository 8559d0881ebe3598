//! The network (the paper's "Training stage"; docs/csrms.md): a ResNet backbone with its linear
//! classifier (L_cls, and the top-1/top-5 this crate reports), the 2-layer GCN over the batch
//! sub-graph (F_g = Â·ReLU(Â X W₁)W₂, hidden 256, back to the feature dimension), the cluster- and
//! class-level smoothing (F_u = α_u ⊙ F_g + β_u ⊙ w_c, F_a = α_a ⊙ F_u + β_a ⊙ p_c) and the GCN
//! branch's classifier (L_gcn). A trained model is saved as `model.json` + `model.bpk`, the last
//! relation refresh's prototypes included.
//!
//! The GCN head at test time sees what it was trained on, minus the label: each image wired to
//! n copies of itself as its positives (the training graph's shape and normalisation, the
//! released code's test graph), smoothed with the prototypes expected under the backbone
//! classifier's softmax instead of its label's rows. Training and test run the one
//! [`CsrmsModel::gcn_logits`].

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use relata_backbone::ResNet;

use crate::config::CsrmsConfig;
use crate::error::CsrmsError;
use crate::sampler::batch_adjacency;

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
}

/// The last relation refresh's prototypes, `classes × dim`: constants of the offline stage kept
/// with the model (not trained) so that a saved model can run its GCN head. Zero before the
/// first refresh and in the baseline and control.
#[derive(Module, Debug)]
pub struct Prototypes {
    /// w_c, the dominant-cluster prototype of each class.
    pub cluster: Param<Tensor<2>>,
    /// p_c, the class prototype.
    pub class: Param<Tensor<2>>,
}

impl Prototypes {
    fn new(cluster: Tensor<2>, class: Tensor<2>) -> Self {
        let constant = |t| Param::from_tensor(t).set_require_grad(false);
        Self {
            cluster: constant(cluster),
            class: constant(class),
        }
    }

    fn zeros(classes: usize, dim: usize, device: &Device) -> Self {
        let zeros = || Tensor::zeros([classes, dim], device);
        Self::new(zeros(), zeros())
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
    /// w_c and p_c of the last relation refresh.
    pub prototypes: Prototypes,
    /// n, the positives each anchor is wired to in the batch graph (and the copies of itself
    /// each test image is wired to).
    #[module(skip)]
    pub positives: usize,
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
            prototypes: Prototypes::zeros(self.classes, dim, device),
            positives: self.positives,
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

    /// Replaces the prototypes (`classes × dim` each, row-major), as a relation refresh does.
    pub fn set_prototypes(&mut self, cluster: Vec<f32>, class: Vec<f32>) -> Result<(), CsrmsError> {
        let [classes, dim] = self.prototypes.cluster.dims();
        for (name, v) in [("cluster", &cluster), ("class", &class)] {
            if v.len() != classes * dim {
                return Err(CsrmsError::Input(format!(
                    "{name} prototypes of {} values for a model of {classes} classes × {dim} \
                     features",
                    v.len()
                )));
            }
        }
        let device = self.prototypes.cluster.device();
        let tensor = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [classes, dim]), &device);
        self.prototypes = Prototypes::new(tensor(cluster), tensor(class));
        Ok(())
    }

    /// GCN-head class scores of the first `anchors` nodes of a batch graph: F_g over
    /// `adjacency` (`nodes` = anchors then their positives, batch-major), smoothed with
    /// `weights · w` and `weights · p` (`[anchors, classes]`: one-hot labels in training, the
    /// backbone classifier's softmax at test time).
    pub fn gcn_logits(
        &self,
        adjacency: Tensor<2>,
        nodes: Tensor<2>,
        anchors: usize,
        weights: Tensor<2>,
    ) -> Tensor<2> {
        let f_g = self.gcn.forward(adjacency, nodes).slice(0..anchors);
        let cluster = weights.clone().matmul(self.prototypes.cluster.val());
        let class = weights.matmul(self.prototypes.class.val());
        self.gcn_head
            .forward(self.smoothing.forward(f_g, cluster, class))
    }

    /// Class scores of the GCN head without labels, for pooled `features` `[b, dim]`: each
    /// image wired to `positives` copies of itself (the training graph's shape) and smoothed
    /// with the prototypes expected under the backbone classifier's softmax.
    pub fn classify_gcn(&self, features: Tensor<2>) -> Tensor<2> {
        let [b, dim] = features.dims();
        let n = self.positives;
        let device = features.device();
        let weights = softmax(self.classifier.forward(features.clone()), 1);
        let copies = features
            .clone()
            .unsqueeze_dim::<3>(1)
            .repeat_dim(1, n)
            .reshape([b * n, dim]);
        let nodes = Tensor::cat(vec![features, copies], 0);
        let size = b * (1 + n);
        let adjacency = Tensor::from_data(
            TensorData::new(batch_adjacency(b, n), [size, size]),
            &device,
        );
        self.gcn_logits(adjacency, nodes, b, weights)
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

#[cfg(test)]
mod tests {
    use super::*;
    use relata_backbone::{ResNetConfig, ResNetDepth};

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_into_vec_as::<f32>().unwrap()
    }

    /// When the backbone classifier is sure of the label, the test-time GCN head computes what
    /// training computes for an anchor whose positives are copies of itself: the same graph,
    /// the same prototype rows.
    #[test]
    fn the_test_time_gcn_head_is_the_training_path_without_the_label() {
        let device = Device::flex();
        let (classes, n) = (3, 2);
        let config = CsrmsConfig::new(
            ResNetConfig::new(ResNetDepth::ResNet18).with_width(2),
            classes,
        )
        .with_positives(n)
        .with_gcn_hidden(8)
        .with_learnable_smoothing(false)
        .with_smoothing_init([1.0, 1.0, 0.5, 0.5]);
        let mut model = config.init(&device);
        let dim = model.prototypes.cluster.dims()[1];
        let ramp = |k: usize, scale: f32| {
            (0..k)
                .map(|i| ((i * 7 % 11) as f32 - 5.0) * scale)
                .collect::<Vec<_>>()
        };
        model
            .set_prototypes(ramp(classes * dim, 0.1), ramp(classes * dim, -0.05))
            .unwrap();
        // A classifier that reads nothing and always says class 2, sure of it.
        let mut bias = vec![0f32; classes];
        bias[2] = 60.0;
        model.classifier.weight = Param::from_tensor(Tensor::zeros([dim, classes], &device));
        model.classifier.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [classes]),
            &device,
        )));
        let b = 2;
        let x = Tensor::<2>::from_data(TensorData::new(ramp(b * dim, 0.3), [b, dim]), &device);
        let test = values(model.classify_gcn(x.clone()));

        let copies: Vec<Tensor<2>> = (0..b)
            .flat_map(|i| std::iter::repeat_n(x.clone().slice(i..i + 1), n))
            .collect();
        let nodes = Tensor::cat([vec![x], copies].concat(), 0);
        let size = b * (1 + n);
        let adjacency = Tensor::from_data(
            TensorData::new(batch_adjacency(b, n), [size, size]),
            &device,
        );
        let labels =
            Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(vec![2i64; b], [b]), &device);
        let train =
            values(model.gcn_logits(adjacency, nodes, b, labels.one_hot::<2>(classes).float()));
        for (t, r) in test.iter().zip(&train) {
            assert!((t - r).abs() < 1e-5, "test {test:?} vs training {train:?}");
        }
        // The prototypes matter: without them the scores differ.
        let mut bare = model.clone();
        bare.set_prototypes(vec![0.0; classes * dim], vec![0.0; classes * dim])
            .unwrap();
        let x = Tensor::<2>::from_data(TensorData::new(ramp(b * dim, 0.3), [b, dim]), &device);
        assert_ne!(values(bare.classify_gcn(x)), test);
        let e = bare.set_prototypes(vec![0.0; 3], vec![]).unwrap_err();
        assert!(e.to_string().contains("3 values"), "{e}");
    }
}
