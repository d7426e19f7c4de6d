//! The URL fragment that holds a view: `#view=features&sae=...&feature=730&prompt=...`.
//!
//! Parsing never fails as a whole: each bad part is reported in words and left out, so a
//! malformed or hostile link still opens a working default view. Values are only ever data.

use crate::backend::BackendKind;
use crate::sae::steer::{Intervention, InterventionError};

/// Longest prompt a link may carry; longer ones are refused rather than cut.
pub const MAX_LINK_PROMPT_BYTES: usize = 4096;
/// Longest fragment the page reads at all.
pub const MAX_FRAGMENT_BYTES: usize = 16 * 1024;
/// Most interventions one link may carry.
pub const MAX_LINK_INTERVENTIONS: usize = 16;
const MAX_URL_BYTES: usize = 2048;
const MAX_ID_BYTES: usize = 100;
const MAX_FEATURE: usize = 10_000_000;
/// Largest strength or value a link may carry.
const MAX_LINK_AMOUNT: f32 = 1e4;

/// The page's views, one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    #[default]
    Prompt,
    Train,
    Features,
    Steer,
    Evaluate,
    Circuits,
}

impl View {
    pub const ALL: [View; 6] = [
        View::Prompt,
        View::Train,
        View::Features,
        View::Steer,
        View::Evaluate,
        View::Circuits,
    ];

    pub fn name(self) -> &'static str {
        match self {
            View::Prompt => "prompt",
            View::Train => "train",
            View::Features => "features",
            View::Steer => "steer",
            View::Evaluate => "evaluate",
            View::Circuits => "circuits",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// Which model a link asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Builtin,
    /// A directory URL holding config.json, model.safetensors and tokenizer.json, or a `.gguf`
    /// file's URL; fetched only after the person agrees.
    Url(String),
    /// A Hugging Face Hub repository, `hf:REPO` in a link (`hf:openai-community/gpt2`), or a GGUF
    /// file in one (`hf:owner/name/file.gguf`).
    Hub(String),
    /// A model opened from files in this browser, kept in its download cache: `local:ID`.
    Local(String),
}

impl ModelSource {
    /// The directory URL the model's files are fetched from (None: the built-in model).
    pub fn base_url(&self, hf_endpoint: &str) -> Option<String> {
        match self {
            ModelSource::Builtin => None,
            ModelSource::Url(url) if url.ends_with('/') || super::download::is_gguf_url(url) => {
                Some(url.clone())
            }
            ModelSource::Url(url) => Some(format!("{url}/")),
            ModelSource::Hub(repo) => Some(super::download::hub_model_url(hf_endpoint, repo)),
            ModelSource::Local(id) => Some(super::download::local_model_path(id)),
        }
    }
}

/// Which SAE a link asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaeRef {
    /// A shipped SAE, or one kept in this browser (trained or imported), by its id.
    Id(String),
    /// A SAELens directory (or zip) URL; fetched only after the person agrees.
    Url(String),
    /// A published SAE by SAELens release and id, `RELEASE/SAE_ID`
    /// (`gpt2-small-res-jb/blocks.8.hook_resid_pre`), from the shipped release table.
    Release(String),
}

/// What a link's fragment asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fragment {
    pub backend: Option<BackendKind>,
    pub model: Option<ModelSource>,
    pub sae: Option<SaeRef>,
    pub feature: Option<usize>,
    pub prompt: Option<String>,
    pub steer: Vec<Intervention>,
    pub view: Option<View>,
    /// The training recipe of an SAE that lives in one tab (`key:value;...`, see [`super::TrainForm`]).
    pub recipe: Option<String>,
    /// The Circuits view's graph, its target token, threshold and chosen node.
    pub graph: Option<super::circuits::GraphKind>,
    pub target: Option<String>,
    pub threshold: Option<f64>,
    pub node: Option<String>,
}

/// A short, single-line version of a link's value for messages (it is shown as text anyway).
pub(crate) fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(40).filter(|c| !c.is_control()).collect();
    if text.chars().count() > 40 {
        short.push('…');
    }
    short
}

fn is_web_url(text: &str) -> bool {
    (text.starts_with("https://") || text.starts_with("http://"))
        && text.len() > "https://".len()
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn is_plain_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_ID_BYTES
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// `730:add:4`, `12:clamp:0`, `5:ablate`, `3:orthogonal:0`, `9:projection_cap:2`, comma-separated; a link's amounts stay within
/// ±10000, its features below 10 million (the SAE's own size is checked when steering).
pub fn parse_steering(text: &str) -> Result<Vec<Intervention>, String> {
    let mut out = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        if out.len() == MAX_LINK_INTERVENTIONS {
            return Err(format!(
                "it has more than {MAX_LINK_INTERVENTIONS} interventions"
            ));
        }
        let bits: Vec<&str> = part.trim().split(':').collect();
        let shape_fits = match bits.get(1).copied() {
            Some("add" | "clamp" | "orthogonal" | "projection_cap") => bits.len() == 3,
            Some("ablate") => bits.len() == 2,
            _ => false,
        };
        let mode = bits.get(1).copied().unwrap_or("");
        let amount = bits.get(2).copied().unwrap_or("");
        let intervention = match Intervention::from_parts(bits[0], mode, amount, MAX_FEATURE) {
            Err(InterventionError::Feature(_) | InterventionError::FeatureOutOfRange { .. }) => {
                return Err(format!("\"{}\" is not a feature number", shorten(bits[0])));
            }
            _ if !shape_fits => {
                return Err(format!(
                    "\"{}\" is not FEATURE:add:STRENGTH, FEATURE:clamp:VALUE, FEATURE:ablate, FEATURE:orthogonal:COEFFICIENT or FEATURE:projection_cap:CAP",
                    shorten(part)
                ));
            }
            Ok(i) if i.mode.amount().is_none_or(|v| v.abs() <= MAX_LINK_AMOUNT) => i,
            _ => {
                return Err(format!(
                    "\"{}\" needs a number between -10000 and 10000",
                    shorten(part)
                ));
            }
        };
        out.push(intervention);
    }
    Ok(out)
}

pub fn steering_text(interventions: &[Intervention]) -> String {
    interventions
        .iter()
        .map(|i| match i.mode.amount() {
            Some(amount) => format!("{}:{}:{amount}", i.feature, i.mode.name()),
            None => format!("{}:{}", i.feature, i.mode.name()),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Parse a URL fragment. Unknown or malformed parts are reported as plain messages and ignored,
/// so a bad link still opens the default view.
pub fn parse_fragment(fragment: &str) -> (Fragment, Vec<String>) {
    let mut view = Fragment::default();
    let mut problems = Vec::new();
    let body = fragment.strip_prefix('#').unwrap_or(fragment);
    if body.len() > MAX_FRAGMENT_BYTES {
        problems.push(format!(
            "The link is {} bytes long, more than the {MAX_FRAGMENT_BYTES} the page reads; the default view is shown.",
            body.len()
        ));
        return (view, problems);
    }
    for part in body.split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = part.split_once('=').unwrap_or((part, ""));
        let key_text = percent_decode(key).unwrap_or_else(|| key.to_string());
        let Some(value) = percent_decode(raw) else {
            problems.push(format!(
                "The link's `{}` value is not valid percent-encoded text; it was ignored.",
                shorten(&key_text)
            ));
            continue;
        };
        let mut refuse = |what: String| {
            problems.push(format!("The link's {what}; it was ignored."));
        };
        match key_text.as_str() {
            "backend" => match value.as_str() {
                "cpu" => view.backend = Some(BackendKind::Cpu),
                "webgpu" | "wgpu" | "gpu" => view.backend = Some(BackendKind::Wgpu),
                _ => problems.push(format!(
                    "The link asks for backend \"{}\", which is not cpu or webgpu; the page chose one itself.",
                    shorten(&value)
                )),
            },
            "prompt" => {
                if value.len() > MAX_LINK_PROMPT_BYTES {
                    problems.push(format!(
                        "The link's prompt is {} bytes long, more than the {MAX_LINK_PROMPT_BYTES} a link may carry; the default prompt is shown.",
                        value.len()
                    ));
                } else {
                    view.prompt = Some(value);
                }
            }
            "view" => match View::parse(&value) {
                Some(v) => view.view = Some(v),
                None => refuse(format!(
                    "view \"{}\" is not one of prompt, train, features, steer, evaluate, circuits",
                    shorten(&value)
                )),
            },
            "model" => {
                if value == "builtin" {
                    view.model = Some(ModelSource::Builtin);
                } else if let Some(id) = value.strip_prefix("local:") {
                    if is_plain_id(id) {
                        view.model = Some(ModelSource::Local(id.to_string()));
                    } else {
                        refuse(format!(
                            "model \"{}\" is not a model opened in this browser (local:ID)",
                            shorten(&value)
                        ));
                    }
                } else if let Some(repo) = value.strip_prefix("hf:") {
                    if super::download::is_hub_repo(repo) {
                        view.model = Some(ModelSource::Hub(repo.to_string()));
                    } else {
                        refuse(format!(
                            "model \"{}\" is not a Hugging Face repository (hf:NAME or hf:OWNER/NAME)",
                            shorten(&value)
                        ));
                    }
                } else if is_web_url(&value) && value.len() <= MAX_URL_BYTES {
                    view.model = Some(ModelSource::Url(value));
                } else {
                    refuse(format!(
                        "model \"{}\" is neither builtin nor a web address",
                        shorten(&value)
                    ));
                }
            }
            "sae" => {
                if is_plain_id(&value) {
                    view.sae = Some(SaeRef::Id(value));
                } else if !is_web_url(&value) && value.contains('/') && value.len() <= MAX_URL_BYTES {
                    match crate::sae::releases::PublishedSae::find(&value) {
                        Ok(_) => view.sae = Some(SaeRef::Release(value)),
                        Err(why) => refuse(format!(
                            "SAE \"{}\" is not a published SAE this page knows ({})",
                            shorten(&value),
                            why.to_string().trim_start_matches("invalid setting: ")
                        )),
                    }
                } else if is_web_url(&value) && value.len() <= MAX_URL_BYTES {
                    view.sae = Some(SaeRef::Url(value));
                } else {
                    refuse(format!(
                        "SAE \"{}\" is neither an SAE's name (letters, digits, . _ -) nor a web address",
                        shorten(&value)
                    ));
                }
            }
            "feature" => match value.parse::<usize>() {
                Ok(f) if f < MAX_FEATURE => view.feature = Some(f),
                _ => refuse(format!(
                    "feature \"{}\" is not a feature number",
                    shorten(&value)
                )),
            },
            "steer" => match parse_steering(&value) {
                Ok(list) => view.steer = list,
                Err(why) => refuse(format!("steering settings are not valid: {why}")),
            },
            "graph" => match super::circuits::GraphKind::parse(&value) {
                Some(kind) => view.graph = Some(kind),
                None => refuse(format!(
                    "graph \"{}\" is not one of attribution, cosine, ablation",
                    shorten(&value)
                )),
            },
            "target" => {
                if value.len() <= MAX_ID_BYTES && !value.chars().any(char::is_control) {
                    view.target = Some(value);
                } else {
                    refuse(format!("target \"{}\" is not one token's text", shorten(&value)));
                }
            }
            "threshold" => match value.parse::<f64>() {
                Ok(t) if (0.0..=1.0).contains(&t) => view.threshold = Some(t),
                _ => refuse(format!(
                    "threshold \"{}\" is not a number from 0 to 1",
                    shorten(&value)
                )),
            },
            "node" => {
                let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
                if !value.is_empty() && value.len() <= MAX_ID_BYTES && value.chars().all(plain) {
                    view.node = Some(value);
                } else {
                    refuse(format!("node \"{}\" is not a graph node's id", shorten(&value)));
                }
            }
            "recipe" => match super::TrainForm::from_recipe(&value) {
                Ok(_) => view.recipe = Some(value),
                Err(why) => refuse(format!("training recipe is not valid: {why}")),
            },
            other => problems.push(format!(
                "The link has an unknown part \"{}\"; it was ignored.",
                shorten(other)
            )),
        }
    }
    (view, problems)
}

/// The fragment that reproduces a view (parts at their defaults are left out).
pub fn fragment_for(view: &Fragment) -> String {
    let mut parts = Vec::new();
    if let Some(v) = view.view.filter(|&v| v != View::Prompt) {
        parts.push(format!("view={}", v.name()));
    }
    if let Some(backend) = view.backend {
        let name = if backend == BackendKind::Wgpu {
            "webgpu"
        } else {
            "cpu"
        };
        parts.push(format!("backend={name}"));
    }
    match &view.model {
        Some(ModelSource::Url(url)) => parts.push(format!("model={}", percent_encode(url))),
        Some(ModelSource::Hub(repo)) => parts.push(format!("model=hf:{}", percent_encode(repo))),
        Some(ModelSource::Local(id)) => parts.push(format!("model=local:{}", percent_encode(id))),
        Some(ModelSource::Builtin) | None => {}
    }
    match &view.sae {
        Some(SaeRef::Id(id)) => parts.push(format!("sae={}", percent_encode(id))),
        Some(SaeRef::Url(url)) => parts.push(format!("sae={}", percent_encode(url))),
        Some(SaeRef::Release(spec)) => parts.push(format!("sae={}", percent_encode(spec))),
        None => {}
    }
    if let Some(recipe) = &view.recipe {
        parts.push(format!("recipe={}", percent_encode(recipe)));
    }
    if let Some(feature) = view.feature {
        parts.push(format!("feature={feature}"));
    }
    if !view.steer.is_empty() {
        parts.push(format!(
            "steer={}",
            percent_encode(&steering_text(&view.steer))
        ));
    }
    if let Some(kind) = view.graph {
        parts.push(format!("graph={}", kind.name()));
    }
    if let Some(target) = &view.target {
        parts.push(format!("target={}", percent_encode(target)));
    }
    if let Some(threshold) = view.threshold {
        parts.push(format!("threshold={threshold}"));
    }
    if let Some(node) = &view.node {
        parts.push(format!("node={}", percent_encode(node)));
    }
    if let Some(prompt) = &view.prompt {
        parts.push(format!("prompt={}", percent_encode(prompt)));
    }
    parts.join("&")
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b':'
            | b'/'
            | b','
            | b';' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
