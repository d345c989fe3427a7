//! A [`LoraAdapter`] in Hugging Face PEFT's format: a directory with `adapter_config.json`
//! (PEFT's `LoraConfig`) and `adapter_model.safetensors`, which
//! `peft.PeftModel.from_pretrained(transformers.BertModel.from_pretrained(base), dir)` loads.
//!
//! Tensors are named as PEFT names those of a wrapped `BertModel`:
//! `base_model.model.encoder.layer.N.attention.self.query.lora_A.weight` (`[r, in]`) and
//! `...lora_B.weight` (`[out, r]`). `target_modules` is a regular expression that PEFT matches
//! against whole module names, naming exactly the adapted layers (a plain `dense` would also
//! catch the pooler's).

use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{LoraAdapter, LoraConfig, LoraTargets};
use crate::checkpoint::{Checkpoint, collect_tensors, write_safetensors};
use crate::config::BertConfig;
use crate::error::{Error, Result};

/// PEFT's adapter configuration file.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// PEFT's adapter weights file.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// The prefix PEFT puts before the wrapped model's module names.
const PREFIX: &str = "base_model.model.";

/// A target's module path in a `BertModel` (Hugging Face's names).
fn module_path(target: &str) -> &'static str {
    match target {
        "query" => "attention.self.query",
        "key" => "attention.self.key",
        "value" => "attention.self.value",
        "attention_output" => "attention.output.dense",
        "intermediate" => "intermediate.dense",
        "output" => "output.dense",
        other => unreachable!("not a LoRA target: {other}"),
    }
}

/// PEFT's `target_modules` for `targets`: a regular expression over whole module names.
fn target_modules(targets: LoraTargets) -> String {
    let alternatives: Vec<String> = targets
        .layers()
        .iter()
        .map(|t| module_path(t).replace('.', r"\."))
        .collect();
    format!(r"encoder\.layer\.\d+\.({})", alternatives.join("|"))
}

/// `layers.N.<target>.lora_a.weight` (our path) -> PEFT's tensor name.
pub(super) fn peft_name(path: &str) -> String {
    let parts: Vec<&str> = path.splitn(4, '.').collect();
    let [_, layer, target, rest] = parts[..] else {
        unreachable!("an adapter parameter path: {path}")
    };
    let rest = rest
        .replace("lora_a.", "lora_A.")
        .replace("lora_b.", "lora_B.");
    format!(
        "{PREFIX}encoder.layer.{layer}.{}.{rest}",
        module_path(target)
    )
}

/// The fields of PEFT's `LoraConfig` that this format writes and reads.
#[derive(Debug, Serialize, Deserialize)]
struct PeftConfig {
    peft_type: String,
    r: usize,
    lora_alpha: f64,
    target_modules: serde_json::Value,
    #[serde(default)]
    lora_dropout: f64,
    #[serde(default = "no_bias")]
    bias: String,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    layers_to_transform: Option<serde_json::Value>,
    #[serde(default)]
    modules_to_save: Option<serde_json::Value>,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
    #[serde(default)]
    inference_mode: bool,
    #[serde(default)]
    task_type: Option<String>,
}

fn no_bias() -> String {
    "none".into()
}

impl LoraAdapter {
    /// Writes the adapter into `dir` (which must exist) in PEFT's format; `base` names the
    /// base model (`base_model_name_or_path`).
    ///
    /// Each file is written under a temporary name and renamed into place.
    pub fn save_peft(&self, dir: &Path, base: &str) -> Result<()> {
        let config = PeftConfig {
            peft_type: "LORA".into(),
            r: self.config.rank,
            lora_alpha: self.config.alpha,
            target_modules: target_modules(self.config.targets).into(),
            lora_dropout: 0.0,
            bias: no_bias(),
            fan_in_fan_out: false,
            use_rslora: false,
            use_dora: false,
            layers_to_transform: None,
            modules_to_save: None,
            base_model_name_or_path: Some(base.to_owned()),
            inference_mode: true,
            task_type: None,
        };
        let path = dir.join(CONFIG_FILE);
        let json = serde_json::to_string_pretty(&config).expect("a plain struct serialises");
        mtl_fs::write_file(&path, json.as_bytes()).map_err(|e| Error::io(&path, e))?;
        write_safetensors(&dir.join(WEIGHTS_FILE), collect_tensors(self, peft_name))
    }

    /// Reads an adapter saved by [`save_peft`](Self::save_peft), or by PEFT with the same
    /// targets, for an encoder of `bert`'s shape.
    ///
    /// A configuration this implementation cannot run (DoRA, rsLoRA, adapted biases, other
    /// targets, some layers only) is an error naming the field; every tensor is checked as a
    /// checkpoint's are (a missing, misshapen or extra tensor is an error naming it).
    pub fn load_peft(dir: &Path, bert: &BertConfig, device: &Device) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let peft: PeftConfig = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        let unsupported = |field: &'static str, value: String, supported: &'static str| {
            Err(Error::UnsupportedConfig {
                path: path.clone(),
                field,
                value,
                supported,
            })
        };
        if peft.peft_type != "LORA" {
            return unsupported("peft_type", peft.peft_type, "LORA");
        }
        if peft.r == 0 {
            return unsupported("r", "0".into(), "a rank of at least 1");
        }
        if !peft.lora_alpha.is_finite() {
            return unsupported("lora_alpha", peft.lora_alpha.to_string(), "a finite number");
        }
        if peft.bias != "none" {
            return unsupported("bias", peft.bias, "none");
        }
        for (field, on) in [
            ("fan_in_fan_out", peft.fan_in_fan_out),
            ("use_rslora", peft.use_rslora),
            ("use_dora", peft.use_dora),
        ] {
            if on {
                return unsupported(field, "true".into(), "false");
            }
        }
        if let Some(value) = peft.layers_to_transform.filter(|v| !v.is_null()) {
            return unsupported(
                "layers_to_transform",
                value.to_string(),
                "null (every layer)",
            );
        }
        let targets = [LoraTargets::Attention, LoraTargets::All]
            .into_iter()
            .find(|&t| targets_match(&peft.target_modules, t));
        let Some(targets) = targets else {
            return unsupported(
                "target_modules",
                peft.target_modules.to_string(),
                "the attention projections (query, key, value, attention.output.dense), \
                 or those and the feed-forward layers (intermediate.dense, output.dense)",
            );
        };
        let config = LoraConfig {
            rank: peft.r,
            alpha: peft.lora_alpha,
            targets,
        };
        let weights = dir.join(WEIGHTS_FILE);
        let mut checkpoint = Checkpoint::open(&weights)?;
        let adapter = checkpoint.load_into(Self::init(&config, bert, 0, device), peft_name)?;
        checkpoint.finish(&[])?;
        Ok(adapter)
    }
}

/// Whether PEFT's `target_modules` (our regular expression, or a list of module-name
/// suffixes) names exactly `targets`' layers.
fn targets_match(value: &serde_json::Value, targets: LoraTargets) -> bool {
    match value {
        serde_json::Value::String(pattern) => *pattern == target_modules(targets),
        serde_json::Value::Array(names) => {
            // A name adapts every module whose path ends with it, as in PEFT; each must name
            // one target (`dense` or `output.dense` alone would adapt more), and each target
            // be named.
            let names: Vec<&str> = names.iter().filter_map(|n| n.as_str()).collect();
            let paths: Vec<&str> = targets.layers().iter().map(|t| module_path(t)).collect();
            let names_it =
                |name: &str, path: &str| path == name || path.ends_with(&format!(".{name}"));
            names.len() == paths.len()
                && names
                    .iter()
                    .all(|n| paths.iter().filter(|p| names_it(n, p)).count() == 1)
                && paths.iter().all(|p| names.iter().any(|n| names_it(n, p)))
        }
        _ => false,
    }
}
