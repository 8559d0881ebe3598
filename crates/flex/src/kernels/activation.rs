//! ReLU, and a residual block's `relu(a + b)` as one op, on the `flex` backend (see [`super`]).
//!
//! Why: burn-flex's element-wise kernels run on the calling thread, so in a ResNet training
//! step every ReLU, residual add and ReLU backward is a serial pass over an activation while
//! the other cores wait (1–3% of a ResNet-18 step at 112², docs/notes/2026-11-performance-log.md). Here each
//! is one pass split over rayon's threads, and the block's add and ReLU are one pass forward
//! and one backward (the same gradient goes to both summands). NaN behaves as in burn-flex and
//! PyTorch: `relu(NaN) = NaN`, and its gradient passes where the output is NaN.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

use super::{contiguous, elements, flex_device, tensor};

/// Elements per parallel task (256 KiB of f32).
const CHUNK: usize = 1 << 16;

/// Does ReLU keep this output's gradient? Where the output is positive or NaN.
fn passes(y: f32) -> bool {
    y.is_nan() || y > 0.0
}

/// `f(a[i], b[i])` for every `i`, as a new vector written by rayon's threads (neither a
/// serial copy nor a serial zeroing first).
fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(
        a.len(),
        b.len(),
        "flex::activation: operands of different lengths"
    );
    let mut out = Vec::with_capacity(a.len());
    out.spare_capacity_mut()[..a.len()]
        .par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(out, (a, b))| {
            for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                o.write(f(a, b));
            }
        });
    // SAFETY: the chunks above cover all `a.len()` elements, each written once.
    unsafe { out.set_len(a.len()) };
    out
}

/// ReLU of one value, NaN kept.
fn relu(v: f32) -> f32 {
    if passes(v) { v } else { 0.0 }
}

/// `relu(a + b)`, or `relu(a)` without `b` (`a` then read as both operands).
fn forward(a: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    match b {
        Some(b) => zip_map(a, b, |a, b| relu(a + b)),
        None => zip_map(a, a, |a, _| relu(a)),
    }
}

/// The gradient through the ReLU: `dy` where the output `y` passes, else zero.
fn backward((y, shape): &(FlexTensor, Vec<usize>), grad: &FlexTensor) -> FlexTensor {
    let grad = contiguous(grad);
    let dx = zip_map(elements(y), elements(&grad), |y, dy| {
        if passes(y) { dy } else { 0.0 }
    });
    tensor(dx, shape.clone())
}

/// ReLU's node in the autodiff graph; the state is its output and shape.
#[derive(Debug)]
struct ReluBackward;

impl Backward<Flex, 1> for ReluBackward {
    type State = (FlexTensor, Vec<usize>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node {
            grads.register::<Flex>(node.id, backward(&ops.state, &grad));
        }
    }
}

/// `relu(a + b)`'s node: both summands get the gradient through the ReLU.
#[derive(Debug)]
struct AddReluBackward;

impl Backward<Flex, 2> for AddReluBackward {
    type State = (FlexTensor, Vec<usize>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_a, node_b] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let dx = backward(&ops.state, &grad);
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, dx.clone());
        }
        if let Some(node) = node_a {
            grads.register::<Flex>(node.id, dx);
        }
    }
}

type Ad = Autodiff<Flex, NoCheckpointing>;

/// The contiguous flex primitives of `tensors` and, under autodiff, the nodes they hang from;
/// `None` unless all are f32 tensors on `flex` devices of one kind (all plain, or all autodiff
/// without gradient checkpointing).
fn primitives<const D: usize, const N: usize>(
    tensors: [&Tensor<D>; N],
) -> Option<([FlexTensor; N], Option<[NodeGuard; N]>)> {
    let autodiff = flex_device(&tensors[0].device())?;
    let usable =
        |t: &Tensor<D>| t.dtype() == DType::F32 && flex_device(&t.device()) == Some(autodiff);
    if !tensors.into_iter().all(usable) {
        return None;
    }
    if autodiff {
        let (values, guards): (Vec<_>, Vec<_>) = tensors
            .into_iter()
            .map(|t| {
                let (p, guard) = t.clone().try_into_primitive::<Ad>().ok()?.into_parts();
                Some((contiguous(&p), guard))
            })
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .unzip();
        Some((values.try_into().ok()?, Some(guards.try_into().ok()?)))
    } else {
        let values: Vec<_> = tensors
            .into_iter()
            .map(|t| Some(contiguous(&t.clone().try_into_primitive::<Flex>().ok()?)))
            .collect::<Option<_>>()?;
        Some((values.try_into().ok()?, None))
    }
}

/// `relu(x)` by relata's kernel when `x` is an f32 tensor on a `flex` device (autodiff
/// without gradient checkpointing, or plain); otherwise `x` comes back unchanged.
#[allow(clippy::result_large_err)] // the tensor is moved in and, unused, handed back.
pub fn try_relu<const D: usize>(x: Tensor<D>) -> Result<Tensor<D>, Tensor<D>> {
    let Some(([xp], guards)) = primitives([&x]) else {
        return Err(x);
    };
    let shape = x.dims().to_vec();
    let y = tensor(forward(elements(&xp), None), shape.clone());
    Ok(output(y, shape, guards, ReluBackward))
}

/// `relu(a + b)` for two tensors of one shape, by relata's kernel under the same conditions as
/// [`try_relu`]; otherwise both come back unchanged.
#[allow(clippy::result_large_err, clippy::type_complexity)] // moved in and handed back.
pub fn try_add_relu<const D: usize>(
    a: Tensor<D>,
    b: Tensor<D>,
) -> Result<Tensor<D>, (Tensor<D>, Tensor<D>)> {
    if a.dims() != b.dims() {
        return Err((a, b));
    }
    let Some(([ap, bp], guards)) = primitives([&a, &b]) else {
        return Err((a, b));
    };
    let shape = a.dims().to_vec();
    let y = tensor(forward(elements(&ap), Some(elements(&bp))), shape.clone());
    Ok(output(y, shape, guards, AddReluBackward))
}

/// The op's result `y` (of `shape`) as a tensor: plain without `guards`; under autodiff with
/// `node` hanging from the inputs' guards, its state `y` and `shape` (what
/// [`backward`] reads).
fn output<const D: usize, const N: usize, B>(
    y: FlexTensor,
    shape: Vec<usize>,
    guards: Option<[NodeGuard; N]>,
    node: B,
) -> Tensor<D>
where
    B: Backward<Flex, N, State = (FlexTensor, Vec<usize>)>,
{
    let Some(guards) = guards else {
        return Tensor::from_primitive::<Flex>(y);
    };
    let y = match node
        .prepare::<NoCheckpointing>(guards)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((y.clone(), shape), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive::<Ad>(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// Against burn's own ops on flex (plain and autodiff): outputs and the gradients of both
    /// summands, with NaN, zeros and negative values in the data.
    #[test]
    fn matches_burn_on_flex() {
        let n = 3 * CHUNK / 2 + 5;
        let wave = |f: f32| -> Vec<f32> {
            (0..n)
                .map(|i| match i % 97 {
                    0 => f32::NAN,
                    1 => 0.0,
                    _ => (i as f32 * f).sin(),
                })
                .collect()
        };
        let same = |x: &Tensor<2>, y: &Tensor<2>| {
            let (x, y) = (x.to_data(), y.to_data());
            let (x, y) = (x.as_slice::<f32>().unwrap(), y.as_slice::<f32>().unwrap());
            x.iter()
                .zip(y)
                .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()))
        };
        let shape = [n / 5, 5];
        let (a, b) = (wave(0.37), wave(0.71));
        let (a, b) = (&a[..shape[0] * 5], &b[..shape[0] * 5]);
        for autodiff in [false, true] {
            let device = if autodiff {
                Device::flex().autodiff()
            } else {
                Device::flex()
            };
            let t = |v: &[f32]| {
                let t = Tensor::<2>::from_data(TensorData::new(v.to_vec(), shape), &device);
                if autodiff { t.require_grad() } else { t }
            };
            let (ta, tb) = (t(a), t(b));
            let ours = try_add_relu(ta.clone(), tb.clone()).unwrap();
            let burns = burn::tensor::activation::relu(ta.clone() + tb.clone());
            assert!(same(&ours, &burns), "relu(a + b)");
            let ours_relu = try_relu(ta.clone()).unwrap();
            assert!(same(
                &ours_relu,
                &burn::tensor::activation::relu(ta.clone())
            ));
            if autodiff {
                // A weighted sum, so that each element's gradient differs.
                let weights = Tensor::<2>::from_data(
                    TensorData::new(wave(0.13)[..shape[0] * 5].to_vec(), shape),
                    &device,
                );
                let grads_ours = (ours * weights.clone()).sum().backward();
                let grads_burn = (burns * weights.clone()).sum().backward();
                for x in [&ta, &tb] {
                    let (g1, g2) = (x.grad(&grads_ours).unwrap(), x.grad(&grads_burn).unwrap());
                    assert!(same(&g1, &g2), "gradient of a summand");
                }
                let grads_ours = (ours_relu * weights.clone()).sum().backward();
                let grads_burn = (burn::tensor::activation::relu(ta.clone()) * weights)
                    .sum()
                    .backward();
                let (g1, g2) = (ta.grad(&grads_ours).unwrap(), ta.grad(&grads_burn).unwrap());
                assert!(same(&g1, &g2), "gradient of relu");
            }
        }
    }

    #[test]
    fn other_shapes_and_devices_come_back() {
        let device = Device::flex();
        let a = Tensor::<2>::zeros([2, 3], &device);
        let b = Tensor::<2>::zeros([3, 2], &device);
        assert!(try_add_relu(a, b).is_err());
    }
}
