//! Choosing the compute backend at run time, among those compiled in.
//!
//! Burn 0.22 dispatches on a runtime [`Device`]; each backend is a Cargo feature of this crate
//! (and of every crate above it). [`Backend`] names them, says which are compiled into this
//! build and makes their devices.

use std::fmt;
use std::str::FromStr;

use burn::prelude::Device;

use crate::error::{Error, Result};

/// A Burn backend, selected with `--backend NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Burn's pure-Rust CPU backend with SIMD and threads (feature `flex`, the default).
    Flex,
    /// The ndarray CPU backend (feature `ndarray`).
    Ndarray,
    /// WGPU: Vulkan, Metal, DX12 or WebGPU through CubeCL (feature `wgpu`).
    Wgpu,
    /// libtorch through `tch`: CUDA when the libtorch found has it, else CPU (feature `tch`).
    Tch,
    /// CubeCL's native CUDA backend (feature `cuda`).
    Cuda,
}

impl Backend {
    /// Every backend, in order of preference for [`Backend::default_compiled`].
    pub const ALL: [Backend; 5] = [
        Backend::Flex,
        Backend::Ndarray,
        Backend::Wgpu,
        Backend::Tch,
        Backend::Cuda,
    ];

    /// The name used on the command line, which is also the Cargo feature's name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
            Backend::Tch => "tch",
            Backend::Cuda => "cuda",
        }
    }

    /// Whether this build has the backend's feature.
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::Flex => cfg!(feature = "flex"),
            Backend::Ndarray => cfg!(feature = "ndarray"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Tch => cfg!(feature = "tch"),
            Backend::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The backends compiled into this build.
    pub fn compiled() -> Vec<Backend> {
        Self::ALL.into_iter().filter(|b| b.is_compiled()).collect()
    }

    /// The first compiled backend in [`Backend::ALL`] order (flex in a default build).
    ///
    /// # Panics
    /// If the build has no backend feature at all.
    pub fn default_compiled() -> Backend {
        *Self::compiled()
            .first()
            .expect("built without any backend feature (flex, ndarray, wgpu, tch, cuda)")
    }

    /// The device of this backend; `index` selects a GPU (ignored on CPU backends).
    ///
    /// - `wgpu`: index 0 is the adapter wgpu prefers (a GPU when there is one; Mesa's software
    ///   Vulkan driver on a machine without; `CUBECL_WGPU_DEFAULT_DEVICE` overrides), index N
    ///   the N-th discrete GPU.
    /// - `tch`: CUDA GPU `index` when the libtorch found was built with CUDA and sees a GPU,
    ///   else libtorch's CPU device.
    /// - `cuda`: CUDA GPU `index`.
    ///
    /// Fails with a message naming the Cargo feature to build with when the backend is not
    /// compiled in.
    pub fn device(self, index: usize) -> Result<Device> {
        if !self.is_compiled() {
            return Err(Error::Backend(format!(
                "the {name} backend is not compiled into this build; rebuild with \
                 `--features {name}` (compiled in: {compiled})",
                name = self.name(),
                compiled = names(&Self::compiled()),
            )));
        }
        let _ = index;
        #[allow(unreachable_code, deprecated)]
        let device = match self {
            #[cfg(feature = "flex")]
            Backend::Flex => Device::flex(),
            #[cfg(feature = "ndarray")]
            Backend::Ndarray => Device::ndarray(),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Device::wgpu(match index {
                0 => burn::tensor::DeviceKind::DefaultDevice,
                n => burn::tensor::DeviceKind::DiscreteGpu(n),
            }),
            #[cfg(feature = "tch")]
            Backend::Tch if tch::Cuda::is_available() => Device::libtorch_cuda(index),
            #[cfg(feature = "tch")]
            Backend::Tch => Device::libtorch(),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Device::cuda(index),
            _ => unreachable!("checked by is_compiled"),
        };
        Ok(device)
    }
}

/// How many row groups a batch is split into on `device`, at inference (see
/// [`crate::BertModel::forward`]) and in training (see mtl-train's `row_groups`): the size
/// of the thread pool on the pure-Rust CPU backends (flex, ndarray), whose matrix products use
/// every core but whose element-wise operations (GELU, additions, LayerNorm's neighbours) run
/// on one; 1 on the others, which parallelise every operation themselves.
pub fn row_groups(device: &Device) -> usize {
    let device = device.clone().without_autodiff();
    #[allow(unused_mut)]
    let mut rust_cpu = false;
    #[cfg(feature = "flex")]
    {
        rust_cpu |= device == Device::flex();
    }
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    {
        rust_cpu |= device == Device::ndarray();
    }
    let _ = device;
    if rust_cpu {
        rayon::current_num_threads()
    } else {
        1
    }
}

fn names(backends: &[Backend]) -> String {
    if backends.is_empty() {
        return "none".into();
    }
    backends
        .iter()
        .map(|b| b.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::Backend(format!(
                    "unknown backend {s:?} (known: {}; compiled in: {})",
                    names(&Self::ALL),
                    names(&Self::compiled())
                ))
            })
    }
}

/// Runs `work` on a worker thread of rayon's global pool (the one Burn's CPU backends, and our
/// kernels, run their parallel operations on), waiting for it; at once when already on one.
///
/// A parallel operation started from a thread outside the pool hands its work to the pool and
/// blocks until it is done; one started on a worker runs a share itself and lets the other
/// workers steal the rest. A forward pass is a few hundred such operations, so running it on a
/// worker saves two context switches each.
pub(crate) fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return work();
    }
    rayon::scope(|_| work())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for backend in Backend::ALL {
            assert_eq!(backend.name().parse::<Backend>().unwrap(), backend);
        }
    }

    #[test]
    fn unknown_backend_lists_known_ones() {
        let err = "metal".parse::<Backend>().unwrap_err().to_string();
        assert!(
            err.starts_with("unknown backend \"metal\" (known: flex, ndarray, wgpu, tch, cuda")
        );
    }

    #[test]
    fn missing_backend_names_its_feature() {
        for backend in Backend::ALL.into_iter().filter(|b| !b.is_compiled()) {
            let err = backend.device(0).unwrap_err().to_string();
            assert!(
                err.contains(&format!("--features {}", backend.name())),
                "{err}"
            );
        }
        for backend in Backend::compiled() {
            backend.device(0).unwrap();
        }
    }
}
