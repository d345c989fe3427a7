//! `--backend` and `--device`, shared by every command that runs a model.

use anyhow::Result;
use burn::prelude::Device;
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use mtl_bert::{Backend, Precision};

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

/// `--quantize`, shared by the commands that run a model for inference.
#[derive(Debug, Clone, Args)]
pub struct PrecisionArgs {
    /// Precision of the encoder: fp32, or int8 (its linear layers quantised as the model loads:
    /// weights per output column, activations per token, integer products; 1.2-2.0x the
    /// texts/s of fp32 on a CPU, most with AVX-512 VNNI, at a cosine similarity of 0.99 or more
    /// to fp32's embeddings; flex backend only). The model's files are not changed.
    #[arg(long, default_value = "fp32", value_name = "fp32|int8",
        value_parser = PossibleValuesParser::new(Precision::ALL.map(Precision::name))
            .try_map(|s| s.parse::<Precision>()))]
    pub quantize: Precision,
}

impl PrecisionArgs {
    /// Prints the precision in use (on stderr) and returns it.
    pub fn precision(&self) -> Precision {
        if self.quantize != Precision::Fp32 {
            eprintln!("precision: {}", self.quantize.describe());
        }
        self.quantize
    }
}
