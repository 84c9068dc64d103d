//! Weights of the official PyTorch CoMIR: a DenseUNet `state_dict` saved as safetensors
//! (`safetensors.torch.save_file(net.state_dict(), path)`) becomes a [`DenseUNet`], from which
//! `comir import-torch` writes an ordinary comir model folder.
//!
//! The reference network (`models/tiramisu.py` of the CoMIR repository, reproduced by
//! `bench/pytorch_train_step.py`) and comir's DenseUNet have the same layers in the same order;
//! only the names differ:
//!
//! | PyTorch                                      | comir                          |
//! |----------------------------------------------|--------------------------------|
//! | `conv_init`                                  | `conv_init`                    |
//! | `layers_down.i.layers.j.{batchnorm,conv}`    | `down.i.layers.j.{norm,conv}`  |
//! | `transitions_down.i.{batchnorm,conv}`        | `trans_down.i.{norm,conv}`     |
//! | `bottleneck.layers.j.*`                      | `bottleneck.layers.j.*`        |
//! | `transitions_up.i.upsampling_layer.1`        | `trans_up.i.conv`              |
//! | `layers_up.i.layers.j.*`                     | `up.i.layers.j.*`              |
//! | `final_conv`                                 | `head`                         |
//! | batch norm `weight`, `bias`                  | `gamma`, `beta`                |
//!
//! `num_batches_tracked` is not needed (comir's batch norms use a fixed momentum, as the
//! reference's default). Weights in f32, f64, f16 or bf16 are read as f32.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::{DenseUNet, DenseUNetConfig, ModelError};

/// Why weights could not be imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file is not a `state_dict` of this configuration (the message names the tensor).
    #[error("conversion: {0}")]
    Convert(String),
    /// The configuration is invalid.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// comir's name for a PyTorch `state_dict` key; `None` for keys comir does not use.
pub fn comir_name(torch_key: &str) -> Option<String> {
    if torch_key.ends_with("num_batches_tracked") {
        return None;
    }
    let mut k = torch_key.to_string();
    for (from, to) in [
        ("layers_down.", "down."),
        ("transitions_down.", "trans_down."),
        ("layers_up.", "up."),
        ("final_conv.", "head."),
    ] {
        if let Some(rest) = k.strip_prefix(from) {
            k = format!("{to}{rest}");
        }
    }
    if let Some(rest) = k.strip_prefix("transitions_up.") {
        // transitions_up.i.upsampling_layer.1.weight → trans_up.i.conv.weight
        let mut parts = rest.splitn(2, '.');
        let (i, tail) = (parts.next()?, parts.next()?);
        let tail = tail.strip_prefix("upsampling_layer.1.")?;
        k = format!("trans_up.{i}.conv.{tail}");
    }
    let k = k
        .replace(".batchnorm.weight", ".norm.gamma")
        .replace(".batchnorm.bias", ".norm.beta")
        .replace(".batchnorm.", ".norm.");
    Some(k)
}

fn to_f32(dtype: Dtype, bytes: &[u8], name: &str) -> Result<Vec<f32>, ImportError> {
    // safetensors has checked that the byte count matches the shape and type.
    let f16 = |b: u16| -> f32 {
        // IEEE half → single, exactly (subnormals included).
        let sign = if b & 0x8000 != 0 { -1.0 } else { 1.0 };
        let exp = i32::from((b >> 10) & 0x1f);
        let frac = f32::from(b & 0x3ff);
        sign * match exp {
            0 => frac * 2f32.powi(-24),
            31 if frac == 0.0 => f32::INFINITY,
            31 => f32::NAN,
            e => (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
        }
    };
    Ok(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                f64::from_le_bytes(a) as f32
            })
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
            .collect(),
        other => {
            return Err(ImportError::Convert(format!(
                "`{name}`: tensors of type {other:?} are not weights (expected a float type)"
            )))
        }
    })
}

/// The input and output channel counts of a reference `state_dict` (from `conv_init` and
/// `final_conv`), to build the matching configuration.
///
/// # Errors
/// [`ImportError::Convert`] when the bytes are not safetensors or lack those tensors.
pub fn torch_channels(bytes: &[u8]) -> Result<(usize, usize), ImportError> {
    let st = deserialize(bytes)?;
    let dim = |key: &str, axis: usize| -> Result<usize, ImportError> {
        let t = st.tensor(key).map_err(|_| {
            ImportError::Convert(format!("no `{key}`: not a CoMIR DenseUNet state_dict"))
        })?;
        t.shape()
            .get(axis)
            .copied()
            .ok_or_else(|| ImportError::Convert(format!("`{key}` has shape {:?}", t.shape())))
    };
    Ok((dim("conv_init.weight", 1)?, dim("final_conv.weight", 0)?))
}

/// Shape of every float tensor of a module, under its parameter path, in visiting order.
struct Shapes {
    path: Vec<String>,
    out: Vec<(String, Vec<usize>)>,
}

impl ModuleVisitor for Shapes {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.out
            .push((self.path.join("."), param.lazy_shape().to_vec()));
    }
}

/// Replaces every float tensor by the imported values of the same path (all present: checked
/// before).
struct Write {
    path: Vec<String>,
    values: HashMap<String, Vec<f32>>,
}

impl ModuleMapper for Write {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(data) = self.values.remove(&self.path.join(".")) else {
            return param;
        };
        let shape = param.lazy_shape().to_vec();
        param.map(|t| {
            // Keep the tensor's device and its gradient requirement.
            let require_grad = t.is_require_grad();
            Tensor::<D>::from_data(TensorData::new(data, shape), &t.device())
                .set_require_grad(require_grad)
        })
    }
}

/// The network of `config` on `device` with the weights and batch-norm statistics of a
/// reference PyTorch `state_dict` (safetensors bytes). Every tensor of the network must be
/// present with its shape; keys comir does not know are refused (they mean another
/// architecture).
///
/// # Errors
/// [`ImportError::Convert`] naming the first missing, unexpected or mis-shaped tensor;
/// [`ImportError::Model`] for an invalid configuration.
pub fn dense_unet_from_torch(
    bytes: &[u8],
    config: &DenseUNetConfig,
    device: &Device,
) -> Result<DenseUNet, ImportError> {
    let st = deserialize(bytes)?;
    // The configuration is validated (limits and memory budget included) and its shapes
    // checked against the file's before any tensor is converted.
    let net = config.try_init(device)?;
    let mut shapes = Shapes {
        path: Vec::new(),
        out: Vec::new(),
    };
    net.visit(&mut shapes);
    let mut by_name: HashMap<String, String> = HashMap::new();
    let mut keys: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    keys.sort();
    for key in keys {
        if let Some(name) = comir_name(&key) {
            by_name.insert(name, key);
        }
    }
    let mut values = HashMap::new();
    for (name, needed) in shapes.out {
        let key = by_name.remove(&name).ok_or_else(|| {
            ImportError::Convert(format!(
                "the state_dict has no tensor for comir's `{name}`: is it a DenseUNet of \
                 this configuration (init {}, blocks {:?}, growth {})?",
                config.init_filters, config.down_blocks, config.growth_rate
            ))
        })?;
        let t = st
            .tensor(&key)
            .map_err(|e| ImportError::Convert(format!("`{key}`: {e}")))?;
        if t.shape() != needed.as_slice() {
            return Err(ImportError::Convert(format!(
                "`{key}` has shape {:?}; this configuration needs {needed:?}",
                t.shape()
            )));
        }
        values.insert(name, key);
    }
    if let Some(key) = by_name.values().min() {
        return Err(ImportError::Convert(format!(
            "the state_dict has `{key}`, which this configuration does not (another \
             architecture or more blocks)"
        )));
    }
    let mut data = HashMap::with_capacity(values.len());
    for (name, key) in values {
        let t = st
            .tensor(&key)
            .map_err(|e| ImportError::Convert(format!("`{key}`: {e}")))?;
        let v = to_f32(t.dtype(), t.data(), &key)?;
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(ImportError::Convert(format!(
                "`{key}` holds a NaN or infinite value (element {i})"
            )));
        }
        data.insert(name, v);
    }
    Ok(net.map(&mut Write {
        path: Vec::new(),
        values: data,
    }))
}

/// The safetensors view of `bytes` (no copy), with a plain message for a header that claims
/// more than the file holds.
fn deserialize(bytes: &[u8]) -> Result<SafeTensors<'_>, ImportError> {
    if let Some(len) = bytes.get(..8) {
        let mut n = [0u8; 8];
        n.copy_from_slice(len);
        let claimed = u64::from_le_bytes(n);
        let available = bytes.len() as u64 - 8;
        if claimed > available {
            return Err(ImportError::Convert(format!(
                "not a safetensors file: its header claims {claimed} bytes, the file holds {available} after the length"
            )));
        }
    }
    SafeTensors::deserialize(bytes)
        .map_err(|e| ImportError::Convert(format!("not a safetensors file: {e}")))
}

/// Largest safetensors file `comir import-torch` reads: the memory budget of a model
/// ([`crate::limits::max_model_bytes`]) for the f32 weights, times two for f64 files, plus
/// room for the header.
pub fn max_file_bytes() -> u64 {
    crate::limits::max_model_bytes()
        .saturating_mul(2)
        .saturating_add(100 << 20)
}

/// [`dense_unet_from_torch`] on a file.
///
/// # Errors
/// As there, with the file named; or the file cannot be read.
pub fn dense_unet_from_torch_file(
    path: &Path,
    config: &DenseUNetConfig,
    device: &Device,
) -> Result<DenseUNet, ImportError> {
    let bytes = read_limited(path)?;
    dense_unet_from_torch(&bytes, config, device).map_err(|e| match e {
        ImportError::Convert(m) => ImportError::Convert(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// The bytes of a safetensors file, refused unread when it is larger than [`max_file_bytes`].
///
/// # Errors
/// [`ImportError::Convert`] naming the file.
pub fn read_limited(path: &Path) -> Result<Vec<u8>, ImportError> {
    let fail = |m: String| ImportError::Convert(format!("{}: {m}", path.display()));
    let size = std::fs::metadata(path)
        .map_err(|e| fail(e.to_string()))?
        .len();
    let most = max_file_bytes();
    if size > most {
        return Err(fail(format!(
            "the file is {}, more than the {} of weights comir reads (raise COMIR_MAX_MODEL_MIB to allow it)",
            crate::limits::mib(size),
            crate::limits::mib(most)
        )));
    }
    std::fs::read(path).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_keys_map_to_comir_names() {
        for (torch, comir) in [
            ("conv_init.weight", "conv_init.weight"),
            (
                "layers_down.2.layers.1.batchnorm.weight",
                "down.2.layers.1.norm.gamma",
            ),
            (
                "layers_down.0.layers.0.batchnorm.running_var",
                "down.0.layers.0.norm.running_var",
            ),
            (
                "transitions_down.1.batchnorm.bias",
                "trans_down.1.norm.beta",
            ),
            ("transitions_down.1.conv.bias", "trans_down.1.conv.bias"),
            (
                "transitions_up.3.upsampling_layer.1.weight",
                "trans_up.3.conv.weight",
            ),
            (
                "layers_up.0.layers.2.conv.weight",
                "up.0.layers.2.conv.weight",
            ),
            (
                "bottleneck.layers.0.conv.bias",
                "bottleneck.layers.0.conv.bias",
            ),
            ("final_conv.weight", "head.weight"),
        ] {
            assert_eq!(comir_name(torch).as_deref(), Some(comir), "{torch}");
        }
        assert_eq!(
            comir_name("layers_down.0.layers.0.batchnorm.num_batches_tracked"),
            None
        );
    }

    #[test]
    fn half_precision_is_read_exactly() {
        // 1.0, -2.0, 0.5, the smallest subnormal, 65504 (largest half)
        let halves: [u16; 5] = [0x3c00, 0xc000, 0x3800, 0x0001, 0x7bff];
        let bytes: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
        let v = to_f32(Dtype::F16, &bytes, "t").expect("f16");
        assert_eq!(v, vec![1.0, -2.0, 0.5, 2f32.powi(-24), 65504.0]);
        let bf: Vec<u8> = [0x3f80u16, 0xc040]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        assert_eq!(
            to_f32(Dtype::BF16, &bf, "t").expect("bf16"),
            vec![1.0, -3.0]
        );
    }
}
