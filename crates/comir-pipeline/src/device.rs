//! The compute device, chosen by name: the library crates take a burn `Device` and run
//! unchanged on the CPU (`flex`, always built) or a GPU (`wgpu`, `cuda`: cargo features of this
//! crate, which the `comir` binary forwards, e.g. `cargo build --release --features cuda`).

use anyhow::{bail, Result};
use burn::tensor::Device;

/// The names `--device` accepts.
pub const DEVICES: &str = "cpu, wgpu, cuda";

/// The device called `name`.
pub fn select(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::flex()),
        "wgpu" => wgpu(),
        "cuda" => cuda(),
        other => bail!("unknown device '{other}'; valid: {DEVICES}"),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu() -> Result<Device> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Result<Device> {
    bail!("this comir was built without GPU support; rebuild with `cargo build --release --features wgpu`")
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Device> {
    Ok(Device::cuda(0usize))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device> {
    bail!("this comir was built without CUDA support; rebuild with `cargo build --release --features cuda`")
}
