//! The memory bank (the paper's "Backbone and memory bank"; docs/isl.md): M ∈ R^{N×128},
//! initialised uniform(−s, s) with s = 1/√(d/3) (not normalised at init), the non-parametric
//! softmax over all N instances z_i = f_i Mᵀ / τ, and the momentum update m_i ← normalise(η·m_i +
//! (1−η)·f_i), η = 0.5.

use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};
use relata_dataset::rng::SeededRng;

use crate::error::IslError;

/// The memory bank, a constant (non-trainable) tensor on the training device.
#[derive(Debug, Clone)]
pub struct MemoryBank {
    values: Tensor<2>,
    /// Temperature τ.
    pub temperature: f64,
    /// Momentum η of the update.
    pub momentum: f64,
}

/// Row-wise L2 normalisation (ISL's `Normalize`, no ε; a zero row stays zero).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-30);
    x / norm
}

impl MemoryBank {
    /// N entries of dimension `dim`, uniform(−s, s) with s = 1/√(dim/3), drawn on the host from
    /// `rng`: every backend starts from the same bank (a device generator draws differently on
    /// each backend from the same seed).
    pub fn new(
        n: usize,
        dim: usize,
        temperature: f64,
        momentum: f64,
        rng: &mut SeededRng,
        device: &Device,
    ) -> Self {
        let s = 1.0 / (dim as f64 / 3.0).sqrt();
        let values = (0..n * dim).map(|_| rng.uniform(-s, s) as f32).collect();
        Self {
            values: Tensor::from_data(TensorData::new(values, [n, dim]), device),
            temperature,
            momentum,
        }
    }

    /// A bank holding `values` (`[n, dim]`, row-major).
    pub fn from_values(
        values: Vec<f32>,
        dim: usize,
        temperature: f64,
        momentum: f64,
        device: &Device,
    ) -> Result<Self, IslError> {
        if dim == 0 || values.is_empty() || !values.len().is_multiple_of(dim) {
            return Err(IslError::Input(format!(
                "{} memory values do not form rows of {dim}",
                values.len()
            )));
        }
        let n = values.len() / dim;
        Ok(Self {
            values: Tensor::from_data(TensorData::new(values, [n, dim]), device),
            temperature,
            momentum,
        })
    }

    /// `[n, dim]`.
    pub fn dims(&self) -> [usize; 2] {
        self.values.dims()
    }

    /// The whole bank (constant).
    pub fn values(&self) -> Tensor<2> {
        self.values.clone()
    }

    /// The bank on the host, row-major.
    pub fn to_vec(&self) -> Result<Vec<f32>, IslError> {
        self.values
            .clone()
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| IslError::Input(format!("reading the memory bank: {e:?}")))
    }

    /// Rows `indices`, `[b, dim]` (constant).
    pub fn rows(&self, indices: &[usize]) -> Tensor<2> {
        self.values
            .clone()
            .select(0, index_tensor(indices, &self.values.device()))
    }

    /// z = f Mᵀ / τ, `[b, n]`: the logits of the non-parametric softmax over all instances.
    /// Gradients flow into `f` only.
    pub fn logits(&self, features: Tensor<2>) -> Tensor<2> {
        let device = features.device();
        let m = self.values.clone().to_device(&device);
        features.matmul(m.transpose()).div_scalar(self.temperature)
    }

    /// m_i ← normalise(η·m_i + (1 − η)·f_i) for the batch's `indices` (features detached).
    pub fn update(&mut self, indices: &[usize], features: Tensor<2>) -> Result<(), IslError> {
        let [b, d] = features.dims();
        if b != indices.len() || d != self.dims()[1] {
            return Err(IslError::Input(format!(
                "memory update with {b}×{d} features for {} indices into a bank of width {}",
                indices.len(),
                self.dims()[1]
            )));
        }
        let n = self.dims()[0];
        if let Some(bad) = indices.iter().find(|&&i| i >= n) {
            return Err(IslError::Input(format!(
                "memory index {bad} out of range (bank of {n})"
            )));
        }
        let device = self.values.device();
        let idx = index_tensor(indices, &device);
        let old = self.values.clone().select(0, idx.clone());
        let f = features.detach().to_device(&device);
        let new =
            l2_normalize(old.clone().mul_scalar(self.momentum) + f.mul_scalar(1.0 - self.momentum));
        // Add the difference (portable: not every backend supports `Assign`).
        self.values = self
            .values
            .clone()
            .select_assign(0, idx, new - old, IndexingUpdateOp::Add);
        Ok(())
    }
}

fn index_tensor(indices: &[usize], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(
        TensorData::new(
            indices.iter().map(|&i| i as i64).collect::<Vec<_>>(),
            [indices.len()],
        ),
        device,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device::flex()
    }

    #[test]
    fn init_range_and_shape() {
        let device = device();
        device.seed(1);
        let bank = MemoryBank::new(50, 128, 0.1, 0.5, &mut SeededRng::new(3), &device);
        assert_eq!(bank.dims(), [50, 128]);
        let s = 1.0 / (128f32 / 3.0).sqrt();
        let v = bank.to_vec().unwrap();
        assert!(v.iter().all(|x| x.abs() <= s));
        // Not normalised at init: a row's norm is about s·√(d/3) = 1 only on average.
        assert!(v.iter().any(|x| x.abs() > s * 0.9));
    }

    /// m = (1, 0), f = (0, 1): 0.5·m + 0.5·f = (½, ½) → normalised (1/√2, 1/√2); other rows
    /// untouched.
    #[test]
    fn update_by_hand() {
        let device = device();
        let mut bank =
            MemoryBank::from_values(vec![1.0, 0.0, 3.0, 4.0], 2, 0.1, 0.5, &device).unwrap();
        let f = Tensor::from_data(TensorData::new(vec![0.0f32, 1.0], [1, 2]), &device);
        bank.update(&[0], f).unwrap();
        let v = bank.to_vec().unwrap();
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!((v[0] - h).abs() < 1e-6 && (v[1] - h).abs() < 1e-6, "{v:?}");
        assert_eq!(&v[2..], &[3.0, 4.0]);
        assert!(bank.update(&[5], Tensor::zeros([1, 2], &device)).is_err());
    }

    /// z = f Mᵀ / τ: f = (1, 0), M = [(1, 0), (0, 1)], τ = 0.1 → (10, 0); softmax p_ii =
    /// e¹⁰/(e¹⁰ + 1).
    #[test]
    fn logits_by_hand() {
        let device = device();
        let bank = MemoryBank::from_values(vec![1.0, 0.0, 0.0, 1.0], 2, 0.1, 0.5, &device).unwrap();
        let f = Tensor::from_data(TensorData::new(vec![1.0f32, 0.0], [1, 2]), &device);
        let z: Vec<f32> = bank.logits(f).into_data().iter::<f32>().collect();
        assert!((z[0] - 10.0).abs() < 1e-5 && z[1].abs() < 1e-6);
    }
}
