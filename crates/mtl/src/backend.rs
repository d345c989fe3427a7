//! `--backend` and `--device`, shared by every command that runs a model.

use anyhow::Result;
use burn::prelude::Device;
use clap::Args;
use mtl_bert::Backend;

/// Which Burn backend and device run the model.
#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    /// Compute backend: flex (CPU, default), ndarray (CPU), wgpu (Vulkan/Metal/DX12 GPUs),
    /// tch (libtorch, CUDA when available) or cuda. Only backends compiled into this binary
    /// work; the others say which Cargo feature to build with.
    #[arg(long, default_value = "flex", env = "MTL_BACKEND")]
    pub backend: String,
    /// GPU index for GPU backends (ignored on CPU backends).
    #[arg(long, default_value_t = 0)]
    pub device: usize,
}

impl BackendArgs {
    /// Parses the backend, makes its device and prints which one is in use (on stderr).
    pub fn device(&self) -> Result<Device> {
        let backend: Backend = self.backend.parse()?;
        let device = backend.device(self.device)?;
        eprintln!("backend: {backend}, device: {device:?}");
        Ok(device)
    }
}
