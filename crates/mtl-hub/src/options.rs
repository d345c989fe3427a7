//! Where and how the hub is reached: [`HubOptions`], which default from the environment
//! variables Python's `huggingface_hub` reads.

use std::path::PathBuf;

/// The hub's address when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The largest file downloaded when `MTL_HUB_MAX_FILE_BYTES` is not set: 50 GiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 50 << 30;

/// How a hub model is fetched. [`HubOptions::from_env`] (also its `Default`) reads the
/// environment as `huggingface_hub` does; tests and libraries set the fields instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// The hub's address, without a trailing `/`: `$HF_ENDPOINT`, else [`DEFAULT_ENDPOINT`].
    pub endpoint: String,
    /// The hub cache (holding `models--OWNER--NAME/`): `$HF_HUB_CACHE`, else `$HF_HOME/hub`,
    /// else `~/.cache/huggingface/hub`.
    pub cache: PathBuf,
    /// Sent to the hub (never to the storage it redirects to): `$HF_TOKEN`, else the token
    /// file `$HF_HOME/token` that `huggingface-cli login` writes.
    pub token: Option<String>,
    /// Use the cache only, never the network: `$HF_HUB_OFFLINE` is `1`, `true`, `yes` or `on`
    /// (any case). Default false.
    pub offline: bool,
    /// The largest file downloaded, in bytes: `$MTL_HUB_MAX_FILE_BYTES`, else
    /// [`DEFAULT_MAX_FILE_BYTES`]. A larger announced size is refused before the download, and
    /// a download that grows past it is stopped.
    pub max_file_bytes: u64,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self::from_env()
    }
}

impl HubOptions {
    /// The options the process environment gives.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The options that the variables `var` returns give (a variable set to the empty string
    /// counts as unset), for tests that must not change the process environment.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        let home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("huggingface")
        });
        let cache = var("HF_HUB_CACHE").map_or_else(|| home.join("hub"), PathBuf::from);
        let token = var("HF_TOKEN").or_else(|| {
            std::fs::read_to_string(home.join("token"))
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
        });
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| is_true(&v));
        let max_file_bytes = var("MTL_HUB_MAX_FILE_BYTES")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_MAX_FILE_BYTES);
        Self {
            endpoint: var("HF_ENDPOINT")
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned())
                .trim_end_matches('/')
                .to_owned(),
            cache,
            token,
            offline,
            max_file_bytes,
        }
    }
}

/// Whether an environment flag is on, as `huggingface_hub` reads its boolean variables.
fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn options(vars: &[(&str, &str)]) -> HubOptions {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubOptions::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn the_cache_follows_huggingface_hub() {
        let o = options(&[("HOME", "/home/u")]);
        assert_eq!(o.cache, PathBuf::from("/home/u/.cache/huggingface/hub"));
        assert_eq!(o.endpoint, DEFAULT_ENDPOINT);
        assert!(!o.offline);
        assert_eq!(o.max_file_bytes, DEFAULT_MAX_FILE_BYTES);
        let o = options(&[("HOME", "/home/u"), ("HF_HOME", "/hf")]);
        assert_eq!(o.cache, PathBuf::from("/hf/hub"));
        // HF_HUB_CACHE wins over HF_HOME.
        let o = options(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/elsewhere")]);
        assert_eq!(o.cache, PathBuf::from("/elsewhere"));
        let o = options(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "")]);
        assert_eq!(o.cache, PathBuf::from("/hf/hub"));
        let o = options(&[
            ("HF_ENDPOINT", "http://h:1/"),
            ("MTL_HUB_MAX_FILE_BYTES", "10"),
        ]);
        assert_eq!(o.endpoint, "http://h:1");
        assert_eq!(o.max_file_bytes, 10);
    }

    #[test]
    fn offline_takes_huggingface_hubs_true_values() {
        for on in ["1", "true", "TRUE", "Yes", "on", "ON"] {
            assert!(options(&[("HF_HUB_OFFLINE", on)]).offline, "{on}");
        }
        for off in ["0", "false", "no", "off", "", "2"] {
            assert!(!options(&[("HF_HUB_OFFLINE", off)]).offline, "{off}");
        }
    }

    #[test]
    fn the_token_comes_from_hf_token_else_the_login_file() {
        let home = tempfile::tempdir().unwrap();
        let hf_home = home.path().to_str().unwrap();
        assert_eq!(options(&[("HF_HOME", hf_home)]).token, None);
        std::fs::write(home.path().join("token"), "hf_file\n").unwrap();
        assert_eq!(
            options(&[("HF_HOME", hf_home)]).token.as_deref(),
            Some("hf_file")
        );
        assert_eq!(
            options(&[("HF_HOME", hf_home), ("HF_TOKEN", "hf_env")])
                .token
                .as_deref(),
            Some("hf_env")
        );
    }
}
