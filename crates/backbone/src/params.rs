//! Parameter identity.
//!
//! In burn a parameter is known by its [`ParamId`]: gradients, optimiser state and gradient
//! clipping are all keyed by it. `Module::clone` keeps the ids, so a module built as
//! `b: a.clone()` is not a second set of weights but the same one reached twice — the optimiser
//! updates one of them and the other never moves. [`fresh_params`] makes the copy PyTorch's
//! `copy.deepcopy` makes (same values, its own parameters); [`shared_param_ids`] finds modules
//! that share parameters, and every method's training model is checked with it in its tests.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Bool, Int, Tensor};

/// A copy of `module` with the same values held in new tensors under new [`ParamId`]s: an
/// independent set of parameters, as PyTorch's `copy.deepcopy`.
pub fn fresh_params<M: Module>(module: M) -> M {
    module.map(&mut Fresh)
}

struct Fresh;

impl ModuleMapper for Fresh {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (_, value, mapper) = param.consume();
        // A new leaf: an autodiff tensor shared by two parameters would also share its
        // gradient.
        let require_grad = value.is_require_grad();
        let copy =
            Tensor::from_data(value.to_data(), &value.device()).set_require_grad(require_grad);
        Param::from_mapped_value(ParamId::new(), copy, mapper)
    }

    fn map_int<const D: usize>(&mut self, param: Param<Tensor<D, Int>>) -> Param<Tensor<D, Int>> {
        let (_, value, mapper) = param.consume();
        let copy = Tensor::from_data(value.to_data(), &value.device());
        Param::from_mapped_value(ParamId::new(), copy, mapper)
    }

    fn map_bool<const D: usize>(
        &mut self,
        param: Param<Tensor<D, Bool>>,
    ) -> Param<Tensor<D, Bool>> {
        let (_, value, mapper) = param.consume();
        let copy = Tensor::from_data(value.to_data(), &value.device());
        Param::from_mapped_value(ParamId::new(), copy, mapper)
    }
}

/// Every [`ParamId`] that more than one tensor parameter of `module` carries, with the dotted
/// paths of the parameters that carry it (`relation.t2i.fc1.weight`, …). Empty when each
/// parameter is its own.
pub fn shared_param_ids<M: Module>(module: &M) -> Vec<(ParamId, Vec<String>)> {
    let mut walk = Walk::default();
    module.visit(&mut walk);
    walk.seen
        .into_iter()
        .filter(|(_, paths)| paths.len() > 1)
        .collect()
}

/// `Ok` when no two tensor parameters of `module` share a [`ParamId`]; otherwise a message
/// naming each group of parameters that are one.
pub fn check_own_params<M: Module>(module: &M) -> Result<(), String> {
    let shared = shared_param_ids(module);
    if shared.is_empty() {
        return Ok(());
    }
    let groups: Vec<String> = shared.iter().map(|(_, paths)| paths.join(" = ")).collect();
    Err(format!(
        "{} parameter(s) reached under more than one name, so they train as one (build the \
         second module with `fresh_params`, not `clone`): {}",
        shared.len(),
        groups.join("; ")
    ))
}

#[derive(Default)]
struct Walk {
    path: Vec<String>,
    seen: BTreeMap<ParamId, Vec<String>>,
}

impl Walk {
    fn record(&mut self, id: ParamId) {
        self.seen.entry(id).or_default().push(self.path.join("."));
    }
}

impl ModuleVisitor for Walk {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.record(param.id);
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
        self.record(param.id);
    }

    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
        self.record(param.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    #[derive(Module, Debug)]
    struct Pair {
        a: Linear,
        b: Linear,
    }

    fn values(linear: &Linear) -> Vec<f32> {
        linear.weight.val().into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn a_cloned_module_shares_its_ids_and_a_fresh_copy_does_not() {
        let device = Device::flex().autodiff();
        let a = LinearConfig::new(3, 2).init(&device);
        let tied = Pair {
            b: a.clone(),
            a: a.clone(),
        };
        let shared = shared_param_ids(&tied);
        assert_eq!(shared.len(), 2, "weight and bias are shared: {shared:?}");
        assert_eq!(shared[0].1.len(), 2);
        assert!(
            shared.iter().flat_map(|(_, p)| p).any(|p| p == "b.weight"),
            "{shared:?}"
        );

        let message = check_own_params(&tied).unwrap_err();
        assert!(message.contains("a.weight = b.weight"), "{message}");

        let fresh = Pair {
            b: fresh_params(a.clone()),
            a,
        };
        assert!(shared_param_ids(&fresh).is_empty());
        assert_eq!(check_own_params(&fresh), Ok(()));
        assert_eq!(
            values(&fresh.a),
            values(&fresh.b),
            "deepcopy keeps the values"
        );
    }

    #[test]
    fn a_fresh_copy_gets_its_own_gradient() {
        let device = Device::flex().autodiff();
        let a = LinearConfig::new(2, 1).init(&device);
        let b = fresh_params(a.clone());
        let x = Tensor::<2>::ones([1, 2], &device);
        // Only `b` takes part in the loss: `a`'s weight must get no gradient.
        let grads = b.forward(x).sum().backward();
        assert!(b.weight.val().grad(&grads).is_some());
        assert!(a.weight.val().grad(&grads).is_none());
    }
}
