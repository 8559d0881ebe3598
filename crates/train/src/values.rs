//! A module's trained parameters, or their gradients, as host vectors by dotted path: what
//! step-by-step comparisons between backends or implementations read.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// Values by dotted parameter path (`backbone.layer1.0.Basic.conv1.weight`).
pub type ParamValues = BTreeMap<String, Vec<f32>>;

/// Every float parameter of `module` by path. Batch-norm running statistics are left out: they
/// are buffers, not what an optimiser moves (and move by their momentum whatever the learning
/// rate).
pub fn parameter_values<M: Module>(module: &M) -> ParamValues {
    let mut v = Values::default();
    module.visit(&mut v);
    v.out
}

/// The gradient `grads` holds for each of `module`'s parameters, by path as
/// [`parameter_values`] (zeros where it holds none).
pub fn gradient_values<M: Module>(module: &M, grads: &GradientsParams) -> ParamValues {
    let mut v = Values {
        grads: Some(grads),
        ..Values::default()
    };
    module.visit(&mut v);
    v.out
}

#[derive(Default)]
struct Values<'a> {
    path: Vec<String>,
    out: ParamValues,
    grads: Option<&'a GradientsParams>,
}

impl ModuleVisitor for Values<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let path = self.path.join(".");
        if path.contains(".running_") || path.starts_with("running_") {
            return;
        }
        let value = param.val();
        let v = match self.grads {
            Some(grads) => grads
                .get::<D>(param.id)
                .unwrap_or_else(|| value.zeros_like().inner()),
            None => value.inner(),
        };
        self.out.insert(path, v.into_data().iter::<f32>().collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{BatchNormConfig, LinearConfig};
    use burn::tensor::Device;

    #[derive(Module, Debug)]
    struct Net {
        fc: burn::nn::Linear,
        bn: burn::nn::BatchNorm,
    }

    #[test]
    fn parameters_by_path_without_running_statistics() {
        let device = Device::flex().autodiff();
        let net = Net {
            fc: LinearConfig::new(2, 3).init(&device),
            bn: BatchNormConfig::new(3).init(&device),
        };
        let values = parameter_values(&net);
        let keys: Vec<&str> = values.keys().map(String::as_str).collect();
        assert_eq!(keys, ["bn.beta", "bn.gamma", "fc.bias", "fc.weight"]);
        assert_eq!(values["fc.weight"].len(), 6);
        let x = Tensor::<2>::ones([4, 2], &device);
        let loss = net.fc.forward(x).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        let g = gradient_values(&net, &grads);
        assert_eq!(g["fc.bias"], vec![4.0; 3]);
        assert_eq!(g["bn.gamma"], vec![0.0; 3]);
    }
}
