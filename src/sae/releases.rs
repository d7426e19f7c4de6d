//! The SAELens releases saeplay knows: `releases.json`, a copy of the entries of SAELens's
//! `pretrained_saes.yaml` (data, not code), mapping a release and SAE id to the Hugging Face
//! repository and folder that hold its files, with SAELens's `config_overrides`,
//! `norm_scaling_factor` and Neuronpedia id. Loading an SAE by release merges those into its
//! `cfg.json` exactly as SAELens's `from_pretrained` does.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Result, SaeplayError};

/// Where Neuronpedia shows a feature: `{NEURONPEDIA}/{neuronpedia_id}/{index}` (SAELens's
/// `open_neuronpedia_feature_dashboard`).
pub const NEURONPEDIA: &str = "https://neuronpedia.org";

/// One release (`gpt2-small-res-jb`).
#[derive(Debug, Clone, Deserialize)]
pub struct Release {
    pub repo_id: String,
    /// TransformerLens's model name (`gpt2-small`).
    pub model: String,
    /// The Hugging Face repository of that model (ours; SAELens names TransformerLens's).
    pub hf_model: String,
    #[serde(default)]
    pub config_overrides: Map<String, Value>,
    pub saes: Vec<ReleaseSae>,
}

/// One SAE of a release.
#[derive(Debug, Clone, Deserialize)]
pub struct ReleaseSae {
    pub id: String,
    /// Its folder in the repository.
    pub path: String,
    #[serde(default)]
    pub neuronpedia: Option<String>,
    #[serde(default)]
    pub l0: Option<f64>,
    #[serde(default)]
    pub variance_explained: Option<f64>,
    /// `expected_average_only_in`'s constant.
    #[serde(default)]
    pub norm_scaling_factor: Option<f64>,
}

#[derive(Deserialize)]
struct Table {
    releases: BTreeMap<String, Release>,
}

/// Every known release by name.
pub fn releases() -> &'static BTreeMap<String, Release> {
    static TABLE: OnceLock<BTreeMap<String, Release>> = OnceLock::new();
    TABLE.get_or_init(|| {
        serde_json::from_str::<Table>(include_str!("releases.json"))
            .expect("releases.json is checked by the tests")
            .releases
    })
}

/// A release's SAE, found by `RELEASE/SAE_ID` (SAE ids contain dots, never slashes at the start).
#[derive(Debug, Clone)]
pub struct PublishedSae {
    pub release_name: String,
    pub release: &'static Release,
    pub sae: &'static ReleaseSae,
}

impl PublishedSae {
    /// Parse `RELEASE/SAE_ID`, e.g. `gpt2-small-res-jb/blocks.8.hook_resid_pre`.
    pub fn find(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        let (release_name, sae_id) = spec.split_once('/').ok_or_else(|| {
            SaeplayError::InvalidSetting(format!(
                "`{spec}` is not RELEASE/SAE_ID (e.g. gpt2-small-res-jb/blocks.8.hook_resid_pre)"
            ))
        })?;
        let Some(release) = releases().get(release_name) else {
            let known: Vec<&str> = releases().keys().map(String::as_str).collect();
            return Err(SaeplayError::InvalidSetting(format!(
                "unknown SAE release `{release_name}`; known releases: {}",
                known.join(", ")
            )));
        };
        let sae = release
            .saes
            .iter()
            .find(|s| s.id == sae_id)
            .ok_or_else(|| {
                let ids: Vec<&str> = release.saes.iter().map(|s| s.id.as_str()).collect();
                SaeplayError::InvalidSetting(format!(
                    "release `{release_name}` has no SAE `{sae_id}`; it has {}",
                    ids.join(", ")
                ))
            })?;
        Ok(Self {
            release_name: release_name.to_string(),
            release,
            sae,
        })
    }

    /// `RELEASE/SAE_ID`.
    pub fn spec(&self) -> String {
        format!("{}/{}", self.release_name, self.sae.id)
    }

    /// The URL of one of its files (`cfg.json`, `sae_weights.safetensors`, ...) on the Hub at
    /// `endpoint` (`https://huggingface.co`, or a mirror).
    pub fn file_url(&self, endpoint: &str, file: &str) -> String {
        format!(
            "{}/{}/resolve/main/{}/{file}",
            endpoint.trim_end_matches('/'),
            self.release.repo_id,
            encode_path(&self.sae.path)
        )
    }

    /// The folder URL the page asks consent for.
    pub fn folder_url(&self, endpoint: &str) -> String {
        self.file_url(endpoint, "")
    }

    /// The downloaded `cfg.json` with what SAELens adds at load: the release's
    /// `config_overrides` (e.g. `model_from_pretrained_kwargs`), the `norm_scaling_factor` and
    /// the Neuronpedia id. Overrides win over the file, as in SAELens.
    pub fn complete_cfg(&self, cfg: &[u8]) -> Result<Vec<u8>> {
        let mut value: Value = serde_json::from_slice(cfg).map_err(|e| {
            SaeplayError::SaeFile(format!(
                "cfg.json of {} is not valid JSON: {e}",
                self.spec()
            ))
        })?;
        let object = value.as_object_mut().ok_or_else(|| {
            SaeplayError::SaeFile(format!("cfg.json of {} is not a JSON object", self.spec()))
        })?;
        let mut added = self.release.config_overrides.clone();
        if let Some(factor) = self.sae.norm_scaling_factor {
            added.insert("norm_scaling_factor".into(), factor.into());
        }
        if let Some(id) = &self.sae.neuronpedia {
            added.insert("neuronpedia_id".into(), id.clone().into());
        }
        for (key, v) in added {
            // SAELens 6 files keep these under metadata, which the reader looks at first.
            if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.remove(&key);
            }
            object.insert(key, v);
        }
        serde_json::to_vec(&value).map_err(|source| SaeplayError::Json {
            what: "cfg.json",
            source,
        })
    }
}

/// Percent-encode a repository path for a URL, keeping `/` (as huggingface_hub's `quote`).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Neuronpedia's page for a feature, when the id is one Neuronpedia could have made
/// (letters, digits, `-`, `_`, `.` and one or more `/`), so a file cannot point the link elsewhere.
pub fn neuronpedia_url(neuronpedia_id: &str, feature: usize) -> Option<String> {
    let safe = !neuronpedia_id.is_empty()
        && !neuronpedia_id.starts_with('/')
        && !neuronpedia_id.contains("..")
        && neuronpedia_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    safe.then(|| format!("{NEURONPEDIA}/{neuronpedia_id}/{feature}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_parses_and_names_what_the_issue_needs() {
        let all = releases();
        let res_jb = &all["gpt2-small-res-jb"];
        assert_eq!(res_jb.saes.len(), 13); // resid_pre 0..11 and resid_post 11
        assert_eq!(res_jb.hf_model, "openai-community/gpt2");
        let mlp = &all["gpt2-small-mlp-tm"];
        assert!(mlp.saes.iter().all(|s| s.norm_scaling_factor.is_some()));
        assert!(all.contains_key("gpt2-small-resid-post-v5-32k"));
        for release in all.values() {
            for sae in &release.saes {
                assert!(!sae.path.is_empty() && !sae.id.is_empty());
            }
        }
    }

    #[test]
    fn urls_and_overrides_follow_saelens() {
        let sae = PublishedSae::find("gpt2-small-res-jb/blocks.8.hook_resid_pre").unwrap();
        assert_eq!(
            sae.file_url("https://huggingface.co", "cfg.json"),
            "https://huggingface.co/jbloom/GPT2-Small-SAEs-Reformatted/resolve/main/blocks.8.hook_resid_pre/cfg.json"
        );
        let cfg = sae
            .complete_cfg(br#"{"d_in": 768, "metadata": {"neuronpedia_id": "x"}}"#)
            .unwrap();
        let cfg: Value = serde_json::from_slice(&cfg).unwrap();
        assert_eq!(
            cfg["model_from_pretrained_kwargs"]["center_writing_weights"],
            true
        );
        assert_eq!(cfg["neuronpedia_id"], "gpt2-small/8-res-jb");
        assert!(cfg["metadata"].get("neuronpedia_id").is_none());
        let tm = PublishedSae::find("gpt2-small-mlp-tm/blocks.0.hook_mlp_out").unwrap();
        assert!(
            tm.file_url("https://huggingface.co/", "cfg.json")
                .contains("hook_mlp_out_24576%3Av1/cfg.json")
        );
        let err = PublishedSae::find("gpt2-small-res-jb/blocks.99.hook_resid_pre").unwrap_err();
        assert!(err.to_string().contains("has no SAE"), "{err}");
        assert!(PublishedSae::find("nope/x").is_err());
        assert!(PublishedSae::find("gpt2-small-res-jb").is_err());
        assert_eq!(
            neuronpedia_url("gpt2-small/8-res-jb", 1234).as_deref(),
            Some("https://neuronpedia.org/gpt2-small/8-res-jb/1234")
        );
        assert_eq!(neuronpedia_url("@evil.com/x", 1), None);
        assert_eq!(neuronpedia_url("../x", 1), None);
    }
}
