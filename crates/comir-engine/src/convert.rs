//! Exact conversion between burn's `DenseUNet` and [`FastDenseUNet`], keyed by burn's
//! parameter paths (weights and batch-norm running statistics).

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use comir_model::{DenseUNet, DenseUNetConfig};

use crate::net::FastDenseUNet;
use crate::Error;

/// Shape and values (or the read error) of one tensor.
type Collected = (Vec<usize>, Result<Vec<f32>, String>);

/// Collects every float tensor of a module under its path.
struct Collect {
    path: Vec<String>,
    out: HashMap<String, Collected>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let data = t
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| format!("{e:?}"));
        self.out.insert(self.path.join("."), (shape, data));
    }
}

/// Replaces every float tensor by the engine's values of the same path.
struct Write<'a> {
    path: Vec<String>,
    values: HashMap<&'a str, (&'a [usize], &'a [f32])>,
    written: usize,
    error: Option<String>,
}

impl ModuleMapper for Write<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.join(".");
        let Some(&(shape, data)) = self.values.get(name.as_str()) else {
            self.error
                .get_or_insert(format!("the engine has no tensor `{name}`"));
            return param;
        };
        let burn_shape = param.lazy_shape().to_vec();
        if burn_shape != shape {
            self.error.get_or_insert(format!(
                "shape of `{name}`: burn {burn_shape:?}, engine {shape:?}"
            ));
            return param;
        }
        self.written += 1;
        let data = TensorData::new(data.to_vec(), shape.to_vec());
        param.map(|t| {
            // Keep the tensor's device and its gradient requirement.
            let require_grad = t.is_require_grad();
            Tensor::<D>::from_data(data, &t.device()).set_require_grad(require_grad)
        })
    }
}

impl FastDenseUNet {
    /// Copies the weights and batch-norm running statistics of a burn network built from
    /// `config` (the configuration is not stored in the burn module, so it is passed along).
    ///
    /// # Errors
    /// [`Error::Convert`] if a tensor is missing or has another shape.
    pub fn from_burn(net: &DenseUNet, config: &DenseUNetConfig) -> Result<Self, Error> {
        let mut engine = Self::zeros(config)?;
        let mut collect = Collect {
            path: Vec::new(),
            out: HashMap::new(),
        };
        // `valid()` syncs the running statistics (burn keeps per-thread pending updates that a
        // plain visit would miss: the values would lag one step behind).
        net.valid().visit(&mut collect);
        let total = engine.specs.len() + engine.running_specs.len();
        if collect.out.len() != total {
            return Err(Error::Convert(format!(
                "burn network has {} tensors, the engine expects {total}",
                collect.out.len()
            )));
        }
        let (specs, running_specs) = (engine.specs.clone(), engine.running_specs.clone());
        for (specs, buf) in [
            (&specs, &mut engine.params),
            (&running_specs, &mut engine.running),
        ] {
            for spec in specs {
                let (shape, data) = collect
                    .out
                    .get(&spec.name)
                    .ok_or_else(|| Error::Convert(format!("burn has no tensor `{}`", spec.name)))?;
                if *shape != spec.shape {
                    return Err(Error::Convert(format!(
                        "shape of `{}`: burn {shape:?}, engine {:?}",
                        spec.name, spec.shape
                    )));
                }
                let data = data
                    .as_ref()
                    .map_err(|e| Error::Convert(format!("reading `{}`: {e}", spec.name)))?;
                buf[spec.range()].copy_from_slice(data);
            }
        }
        Ok(engine)
    }

    /// Writes the weights and running statistics into `net` (a burn network of the same
    /// configuration), keeping its devices and gradient settings.
    ///
    /// # Errors
    /// [`Error::Convert`] if the two networks do not have the same tensors.
    pub fn write_to_burn(&self, net: DenseUNet) -> Result<DenseUNet, Error> {
        let mut values = HashMap::new();
        for (specs, buf) in [
            (&self.specs, &self.params),
            (&self.running_specs, &self.running),
        ] {
            for spec in specs {
                values.insert(
                    spec.name.as_str(),
                    (spec.shape.as_slice(), &buf[spec.range()]),
                );
            }
        }
        let total = values.len();
        let mut write = Write {
            path: Vec::new(),
            values,
            written: 0,
            error: None,
        };
        let net = net.map(&mut write);
        if let Some(e) = write.error {
            return Err(Error::Convert(e));
        }
        if write.written != total {
            return Err(Error::Convert(format!(
                "wrote {} of the engine's {total} tensors",
                write.written
            )));
        }
        Ok(net)
    }

    /// Builds a burn network on `device` with this network's weights and running statistics.
    ///
    /// # Errors
    /// See [`FastDenseUNet::write_to_burn`].
    pub fn to_burn(&self, device: &burn::tensor::Device) -> Result<DenseUNet, Error> {
        let net = self.config.try_init(device)?;
        self.write_to_burn(net)
    }
}
