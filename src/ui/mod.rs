//! The page's state and its updates, as plain Rust: no browser types here, so tests drive it
//! natively. `web` (wasm only) turns events into these calls and renders the state to the DOM.

use crate::backend::BackendKind;
use crate::model::readout::Prediction;
use crate::model::{SamplingConfig, StopReason};

pub mod chart;
pub mod circuits;
pub mod download;
pub mod feature_list;
pub mod heat;
pub mod ids;
pub mod lab;
pub mod link;
pub mod steer;
pub mod train_form;
pub mod worker_protocol;
pub mod worker_state;

pub use link::{
    Fragment, MAX_LINK_PROMPT_BYTES, ModelSource, SaeRef, View, fragment_for, parse_fragment,
};
pub use train_form::TrainForm;

use link::shorten;

/// What the browser says about its WebGPU adapter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdapterInfo {
    pub vendor: String,
    pub architecture: String,
    pub description: String,
    pub is_fallback: bool,
}

impl AdapterInfo {
    /// A software rasteriser: far slower than the CPU path (SwiftShader is ~25x slower here).
    pub fn is_software(&self) -> bool {
        let names = format!("{} {} {}", self.vendor, self.architecture, self.description)
            .to_ascii_lowercase();
        self.is_fallback
            || ["swiftshader", "llvmpipe", "lavapipe", "software", "warp"]
                .iter()
                .any(|s| names.contains(s))
    }

    pub fn label(&self) -> String {
        let parts: Vec<&str> = [&self.vendor, &self.architecture, &self.description]
            .into_iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .collect();
        if parts.is_empty() {
            "unnamed adapter".into()
        } else {
            parts.join(" ")
        }
    }
}

/// The backend the page runs on and why, in words a person reads.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendDecision {
    pub kind: BackendKind,
    pub label: String,
    pub reason: String,
}

/// Decide the backend from what the link forces and what adapter the browser offers.
/// `adapter` is `Err` when asking for one failed, `Ok(None)` when the browser has no WebGPU.
pub fn choose_backend(
    forced: Option<BackendKind>,
    adapter: &Result<Option<AdapterInfo>, String>,
) -> BackendDecision {
    let cpu = |reason: String| BackendDecision {
        kind: BackendKind::Cpu,
        label: "CPU (WebAssembly)".into(),
        reason,
    };
    let gpu = |info: &AdapterInfo, reason: String| BackendDecision {
        kind: BackendKind::Wgpu,
        label: format!("WebGPU: {}", info.label()),
        reason,
    };
    match (forced, adapter) {
        (Some(BackendKind::Cpu), _) => cpu("CPU chosen by the link (#backend=cpu).".into()),
        (Some(BackendKind::Wgpu), Ok(Some(info))) => {
            gpu(info, "WebGPU chosen by the link (#backend=webgpu).".into())
        }
        (Some(BackendKind::Wgpu), Ok(None)) => {
            cpu("The link asked for WebGPU, but this browser has no WebGPU adapter.".into())
        }
        (Some(BackendKind::Wgpu), Err(error)) => cpu(format!(
            "The link asked for WebGPU, but it failed to start: {error}"
        )),
        (None, Ok(Some(info))) if info.is_software() => cpu(format!(
            "The WebGPU adapter ({}) is a software fallback, far slower than the CPU path; add #backend=webgpu to use it anyway.",
            info.label()
        )),
        (None, Ok(Some(info))) => gpu(info, "WebGPU adapter found.".into()),
        (None, Ok(None)) => cpu("This browser offers no WebGPU adapter.".into()),
        (None, Err(error)) => cpu(format!("WebGPU failed to start: {error}")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Loading,
    Ready,
    Failed,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Loading => "loading",
            Phase::Ready => "ready",
            Phase::Failed => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenView {
    pub id: u32,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PredictionView {
    pub id: u32,
    pub text: String,
    pub probability: f32,
}

/// The generation form as typed: strings, checked into a [`SamplingConfig`] on demand.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationForm {
    pub temperature: String,
    pub top_k: String,
    pub top_p: String,
    pub seed: String,
    pub max_tokens: String,
}

impl Default for GenerationForm {
    fn default() -> Self {
        Self {
            temperature: "0.8".into(),
            top_k: String::new(),
            top_p: String::new(),
            seed: "0".into(),
            max_tokens: "48".into(),
        }
    }
}

/// Most tokens one Generate press may ask for.
pub const MAX_GENERATE_TOKENS: usize = 1024;

impl GenerationForm {
    pub fn parse(&self) -> Result<SamplingConfig, String> {
        fn number<T: std::str::FromStr>(field: &str, text: &str) -> Result<T, String> {
            text.trim().parse().map_err(|_| {
                format!(
                    "{field} \"{}\" is not a valid number.",
                    shorten(text.trim())
                )
            })
        }
        fn optional<T: std::str::FromStr>(field: &str, text: &str) -> Result<Option<T>, String> {
            if text.trim().is_empty() {
                Ok(None)
            } else {
                number(field, text).map(Some)
            }
        }
        let config = SamplingConfig {
            temperature: number("Temperature", &self.temperature)?,
            top_k: optional("Top-k", &self.top_k)?,
            top_p: optional("Top-p", &self.top_p)?,
            seed: number("Seed", &self.seed)?,
            max_new_tokens: number("Max tokens", &self.max_tokens)?,
        };
        if config.max_new_tokens == 0 || config.max_new_tokens > MAX_GENERATE_TOKENS {
            return Err(format!(
                "Max tokens must be between 1 and {MAX_GENERATE_TOKENS}."
            ));
        }
        config.validate().map_err(|error| {
            let text = error.to_string();
            let text = text.strip_prefix("invalid setting: ").unwrap_or(&text);
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
                None => text.to_string(),
            }
        })?;
        Ok(config)
    }
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct PageState {
    pub phase: Phase,
    pub status: String,
    pub backend: Option<BackendDecision>,
    pub prompt: String,
    pub tokens: Vec<TokenView>,
    pub predictions: Vec<PredictionView>,
    pub form: GenerationForm,
    pub generating: bool,
    pub output: String,
    pub output_done: bool,
    pub generation_status: String,
    /// Problems shown to the person, newest last; each is plain text.
    pub errors: Vec<String>,
    /// The addressable view besides the prompt: view, model, SAE, feature, steering, recipe.
    pub location: Fragment,
}

pub const DEFAULT_PROMPT: &str = "Once upon a time, a little fox";

impl PageState {
    pub fn new(fragment: &str) -> (Self, Fragment) {
        let (view, problems) = parse_fragment(fragment);
        let state = Self {
            phase: Phase::Loading,
            status: "Loading the model…".into(),
            backend: None,
            prompt: view.prompt.clone().unwrap_or_else(|| DEFAULT_PROMPT.into()),
            tokens: Vec::new(),
            predictions: Vec::new(),
            form: GenerationForm::default(),
            generating: false,
            output: String::new(),
            output_done: false,
            generation_status: String::new(),
            errors: problems,
            location: Fragment {
                backend: None,
                prompt: None,
                ..view.clone()
            },
        };
        (state, view)
    }

    pub fn backend_chosen(&mut self, decision: BackendDecision) {
        self.backend = Some(decision);
    }

    pub fn model_loaded(&mut self, description: String) {
        self.phase = Phase::Ready;
        self.status = description;
    }

    pub fn load_failed(&mut self, message: String) {
        self.phase = Phase::Failed;
        self.status = "The model could not be loaded.".into();
        self.errors.push(message);
    }

    /// A new prompt was typed: clear analysis that no longer fits it.
    pub fn prompt_changed(&mut self, prompt: String) {
        self.prompt = prompt;
    }

    /// The prompt's tokens and next-token predictions arrived.
    pub fn analysed(
        &mut self,
        tokens: Vec<TokenView>,
        predictions: &[Prediction],
        text_of: impl Fn(u32) -> String,
    ) {
        self.tokens = tokens;
        self.predictions = predictions
            .iter()
            .map(|p| PredictionView {
                id: p.id,
                text: text_of(p.id),
                probability: p.probability,
            })
            .collect();
    }

    pub fn analysis_failed(&mut self, message: String) {
        self.tokens.clear();
        self.predictions.clear();
        self.errors.push(message);
    }

    /// Start a generation if the form is valid; returns its settings.
    pub fn start_generation(&mut self) -> Option<SamplingConfig> {
        if self.generating || self.phase != Phase::Ready {
            return None;
        }
        match self.form.parse() {
            Ok(config) => {
                self.generating = true;
                self.output.clear();
                self.output_done = false;
                self.generation_status = "Generating…".into();
                Some(config)
            }
            Err(message) => {
                self.errors.push(message);
                None
            }
        }
    }

    pub fn generated(&mut self, text_so_far: String, tokens: usize) {
        self.output = text_so_far;
        self.generation_status = format!("Generating… {tokens} tokens");
    }

    pub fn generation_finished(&mut self, result: Result<(StopReason, usize, f64), String>) {
        self.generating = false;
        self.output_done = true;
        self.generation_status = match result {
            Ok((reason, tokens, seconds)) => format!(
                "Done: {tokens} tokens in {seconds:.1} s ({:.1} tokens/s); {}.",
                tokens as f64 / seconds.max(1e-9),
                reason.describe()
            ),
            Err(message) => {
                self.errors.push(message.clone());
                format!("Stopped: {message}")
            }
        };
    }

    pub fn generation_cancelled(&mut self) {
        self.generating = false;
        self.output_done = true;
        self.generation_status = "Stopped by you.".into();
    }

    pub fn dismiss_errors(&mut self) {
        self.errors.clear();
    }

    /// The link that reproduces this view.
    pub fn fragment(&self, forced_backend: Option<BackendKind>) -> String {
        let prompt = (self.prompt != DEFAULT_PROMPT).then(|| self.prompt.clone());
        fragment_for(&Fragment {
            backend: forced_backend,
            prompt,
            ..self.location.clone()
        })
    }
}
