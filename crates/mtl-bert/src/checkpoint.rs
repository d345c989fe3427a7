//! Reading and writing Hugging Face checkpoints (`model.safetensors`, `pytorch_model.bin`).
//!
//! Our module tree follows the checkpoint's key tree; two names differ because Rust cannot
//! spell them as field names. [`MODULE_NAMES`] lists them. Linear weights are stored `[out, in]`
//! by PyTorch and `[in, out]` by Burn, and LayerNorm's `weight`/`bias` are Burn's `gamma`/`beta`;
//! burn-store's PyTorch adapters convert both ways. Every tensor is checked against the model
//! (name, shape, data type) before anything is loaded, and errors use Hugging Face's names and
//! layout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{
    BurnToPyTorchAdapter, FloatCastAdapter, ModuleAdapter, ModuleSnapshot, ModuleStore,
    PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use burn::tensor::DType;

use crate::error::{Error, Result};
use mtl_fs::write_file;

/// `(Hugging Face, ours)` spellings of module names that differ.
pub(crate) const MODULE_NAMES: [(&str, &str); 2] = [
    ("attention.self.", "attention.self_attention."),
    ("LayerNorm.", "layer_norm."),
];

/// The prefix some checkpoints (`BertFor*` models) put before every encoder tensor.
pub(crate) const BERT_PREFIX: &str = "bert.";

/// Tensors a checkpoint may hold that belong to no encoder parameter: the `position_ids`
/// buffer, and the pre-training heads of `BertForPreTraining` / `BertForMaskedLM`.
pub(crate) const IGNORED_PREFIXES: [&str; 2] = ["embeddings.position_ids", "cls."];

/// Our parameter path -> the Hugging Face tensor name.
pub fn hf_name(path: &str) -> String {
    MODULE_NAMES
        .iter()
        .fold(path.to_owned(), |name, (hf, ours)| name.replace(ours, hf))
}

/// The tensors of one checkpoint file, by name, waiting to be loaded into modules.
///
/// Names are as in the file, except that a leading `bert.` is removed. Load with
/// [`Checkpoint::load_into`] (once per module), then call [`Checkpoint::finish`] to reject
/// anything left over.
pub struct Checkpoint {
    path: PathBuf,
    tensors: BTreeMap<String, PackTensor>,
}

impl Checkpoint {
    /// Reads the tensor table of a `.safetensors` file or a PyTorch `.bin` (pickle) file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        let corrupt = |message: String| Error::CorruptCheckpoint {
            path: path.clone(),
            message,
        };
        let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
        let tensors = if is_safetensors {
            let mut store = SafetensorsStore::from_file(&path);
            store
                .get_all_tensors()
                .map_err(|e| corrupt(e.to_string()))?
                .clone()
        } else {
            let mut store = PytorchStore::from_file(&path);
            store
                .get_all_tensors()
                .map_err(|e| corrupt(e.to_string()))?
                .clone()
        };
        let tensors = tensors
            .into_iter()
            .map(|(name, mut tensor)| {
                let name = name.strip_prefix(BERT_PREFIX).unwrap_or(&name).to_owned();
                tensor.name = name.clone();
                (name, tensor)
            })
            .collect();
        Ok(Self { path, tensors })
    }

    /// The file this checkpoint was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the checkpoint has a tensor of this name (after `bert.` removal).
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The shape of a tensor, if the checkpoint has it.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|t| t.shape.to_vec())
    }

    /// Whether any tensor name starts with `prefix`.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.tensors
            .range(prefix.to_owned()..)
            .next()
            .is_some_and(|(name, _)| name.starts_with(prefix))
    }

    /// Loads every parameter of `module` from the tensors named `file_name(path)`, where
    /// `path` is the parameter's path in `module` with PyTorch parameter names (`weight`,
    /// `bias`), and removes them from the checkpoint.
    ///
    /// Checks all of them first: a missing tensor, another shape or a non-float data type is
    /// an error naming the tensor, and `module` is then left as it was. Half-precision
    /// tensors are converted to f32.
    pub fn load_into<M: Module>(
        &mut self,
        mut module: M,
        file_name: impl Fn(&str) -> String,
    ) -> Result<M> {
        let expected = module.collect(None, Some(Box::new(BurnToPyTorchAdapter)), false);
        let mut sources = Vec::with_capacity(expected.len());
        for param in &expected {
            let name = file_name(&param.name);
            let expected_shape = param.shape.to_vec();
            let Some(tensor) = self.tensors.get(&name) else {
                return Err(Error::MissingTensor {
                    path: self.path.clone(),
                    name,
                    expected: expected_shape,
                });
            };
            let found = tensor.shape.to_vec();
            if found != expected_shape {
                return Err(Error::ShapeMismatch {
                    path: self.path.clone(),
                    name,
                    expected: expected_shape,
                    found,
                });
            }
            if !tensor.dtype.is_float() {
                return Err(Error::UnsupportedDtype {
                    path: self.path.clone(),
                    name,
                    dtype: format!("{:?}", tensor.dtype),
                });
            }
            sources.push((name, param.name.clone()));
        }
        let tensors = sources
            .into_iter()
            .map(|(name, path)| {
                let mut tensor = self.tensors.remove(&name).expect("checked above");
                tensor.name = path;
                tensor
            })
            .collect();
        let adapter = FloatCastAdapter::to(DType::F32).chain(PyTorchToBurnAdapter);
        let result = module.apply(tensors, None, Some(Box::new(adapter)), false);
        if !result.errors.is_empty() || !result.missing.is_empty() {
            let mut problems: Vec<String> = result.errors.iter().map(ToString::to_string).collect();
            problems.extend(
                result
                    .missing
                    .iter()
                    .map(|(path, _)| format!("{path} not loaded")),
            );
            return Err(Error::CorruptCheckpoint {
                path: self.path.clone(),
                message: problems.join("; "),
            });
        }
        Ok(module)
    }

    /// Fails with [`Error::UnexpectedTensor`] if a tensor was not loaded into any module and is
    /// under one of the ignored prefixes (`embeddings.position_ids`, `cls.`) or `also_ignored`.
    pub fn finish(self, also_ignored: &[&str]) -> Result<()> {
        let unexpected = self.tensors.into_iter().find(|(name, _)| {
            !IGNORED_PREFIXES
                .iter()
                .chain(also_ignored)
                .any(|prefix| name.starts_with(prefix))
        });
        match unexpected {
            Some((name, tensor)) => Err(Error::UnexpectedTensor {
                path: self.path,
                name,
                shape: tensor.shape.to_vec(),
            }),
            None => Ok(()),
        }
    }
}

/// The parameters of `module` in PyTorch layout, named `file_name(path)`, ready for
/// [`write_safetensors`].
pub fn collect_tensors<M: Module>(
    module: &M,
    file_name: impl Fn(&str) -> String,
) -> Vec<PackTensor> {
    module
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), false)
        .into_iter()
        .map(|mut tensor| {
            tensor.name = file_name(&tensor.name);
            tensor
        })
        .collect()
}

/// Writes `tensors` as a safetensors file that `transformers` loads (metadata `format: pt`).
///
/// The file is written under a temporary name in the same directory and renamed into place,
/// so `path` never holds a partial file.
pub fn write_safetensors(path: &Path, tensors: Vec<PackTensor>) -> Result<()> {
    let io = |e| Error::io(path, e);
    let mut named = Vec::with_capacity(tensors.len());
    for tensor in tensors {
        let (name, dtype, shape, _, bytes) =
            tensor.into_parts().map_err(|e| Error::CorruptCheckpoint {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        named.push((name, safetensors_dtype(dtype, path)?, shape.to_vec(), bytes));
    }
    let views = named
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                .expect("the shape and byte length come from the same tensor");
            (name.as_str(), view)
        })
        .collect::<Vec<_>>();
    let metadata = std::collections::HashMap::from([("format".to_owned(), "pt".to_owned())]);
    let serialized =
        safetensors::serialize(views, Some(metadata)).map_err(|e| Error::CorruptCheckpoint {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    write_file(path, &serialized).map_err(io)
}

fn safetensors_dtype(dtype: DType, path: &Path) -> Result<safetensors::Dtype> {
    Ok(match dtype {
        DType::F32 => safetensors::Dtype::F32,
        DType::F16 => safetensors::Dtype::F16,
        DType::BF16 => safetensors::Dtype::BF16,
        DType::F64 => safetensors::Dtype::F64,
        other => {
            return Err(Error::CorruptCheckpoint {
                path: path.to_path_buf(),
                message: format!("cannot store a {other:?} parameter"),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_hugging_face() {
        assert_eq!(
            hf_name("encoder.layer.3.attention.self_attention.query.weight"),
            "encoder.layer.3.attention.self.query.weight"
        );
        assert_eq!(
            hf_name("encoder.layer.0.attention.output.layer_norm.bias"),
            "encoder.layer.0.attention.output.LayerNorm.bias"
        );
        assert_eq!(
            hf_name("embeddings.layer_norm.weight"),
            "embeddings.LayerNorm.weight"
        );
        assert_eq!(hf_name("pooler.dense.weight"), "pooler.dense.weight");
    }
}
