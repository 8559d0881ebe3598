//! The inference path's cost (issue point 2, paper Table 5): parameters and multiply–
//! accumulates of backbone-to-stage-l + N_sub-l + C + hash head for one image.
//!
//! Counted analytically from the configuration. Table 5's "Params" counts module parameters
//! the way `thop` does, which skips bare `nn.Parameter`s such as C: [`InferenceCost::params`]
//! includes C, [`InferenceCost::params_without_cvectors`] is the comparable figure. MACs count
//! convolutions and fully-connected layers; the paper's FLOPs tool also counts element-wise
//! work (BN, ReLU, pooling: ≈ 0.04 G for ResNet-50 at 224×224, the same gap it shows for FISH).

use crate::config::CmbhConfig;

/// Cost of one image through the inference path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InferenceCost {
    /// All trainable parameters of the inference path.
    pub params: u64,
    /// Without the C-vectors (Table 5's convention).
    pub params_without_cvectors: u64,
    /// Multiply–accumulates.
    pub macs: u64,
}

/// Table 5 (CUB, 200 classes, 224×224): (backbone, bits, params M, GFLOPs).
pub const PAPER_TABLE5: [(&str, usize, f64, f64); 8] = [
    ("resnet50", 12, 14.3219, 4.3492),
    ("resnet50", 24, 14.3267, 4.3492),
    ("resnet50", 32, 14.3299, 4.3492),
    ("resnet50", 48, 14.3363, 4.3492),
    ("resnet18", 12, 4.2330, 1.6696),
    ("resnet18", 24, 4.2378, 1.6696),
    ("resnet18", 32, 4.2410, 1.6696),
    ("resnet18", 48, 4.2474, 1.6696),
];

impl CmbhConfig {
    /// The inference path's cost on a `[3, h, w]` image.
    pub fn inference_cost(&self, input: [usize; 2]) -> InferenceCost {
        let stage = self
            .backbone
            .cost(input, CmbhConfig::layer_of(self.hash_stage));
        let [c, h, w] = stage.output;
        let (hid, d) = (self.sub_hidden as u64, self.dim as u64);
        let (c, hw) = (c as u64, (h * w) as u64);
        // conv 1×1 + BN, conv 3×3 + BN, BN on the pooled vector, FC with bias + BN.
        let sub_params = c * hid + 2 * hid + hid * c * 9 + 2 * c + 2 * c + c * d + d + 2 * d;
        let sub_macs = (c * hid + hid * c * 9) * hw + c * d;
        let yk = (self.classes * self.k) as u64;
        let bits = self.bits as u64;
        let cvectors = yk * d;
        let head = yk * bits;
        let without = stage.params + sub_params + head;
        InferenceCost {
            params: without + cvectors,
            params_without_cvectors: without,
            // Matching: y·k dot products of length d; then the hash projection.
            macs: stage.macs + sub_macs + cvectors + head,
        }
    }
}
