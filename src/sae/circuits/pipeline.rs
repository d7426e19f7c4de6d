//! The one pipeline from SAEs and a prompt (or held-out windows) to a graph file, which
//! `saeplay attribute`/`graph` and the page's Circuits view both call: token ids, the target
//! token, the SAEs in forward order with their ids, the model's name, the graph and its file.

use super::attribution::residual_position;
use super::cross_layer::CrossLayerGraph;
use super::file::GraphContext;
use super::{
    AttributionGraph, AttributionSettings, CrossLayerSettings, GraphFile, GraphSae, NodeKind,
    attribute, cross_layer_graph,
};
use crate::model::HookPoint;
use crate::model::files::LoadedModel;
use crate::sae::Sae;
use crate::tokenizer::{END_OF_TEXT, TextTokenizer};
use crate::{Result, SaeplayError};

/// An explanation per (layer in forward order, feature), when one is known.
pub type Explain<'a> = &'a dyn Fn(usize, usize) -> Option<String>;

/// One SAE of a graph with the names its file gives it.
#[derive(Clone)]
pub struct NamedSae<'a> {
    pub sae: &'a Sae,
    pub hook: HookPoint,
    /// The SAE's id in the file: a release's SAE id, a directory name or the page's slot id.
    pub id: String,
    /// Where Neuronpedia shows its features (`gpt2-small/8-res-jb`), for published SAEs.
    pub neuronpedia_id: Option<String>,
}

/// The SAEs in forward order, the order of the graph's layers, so that ids and hooks line up
/// with them. Hooks off the residual stream go last; the graph refuses them in words.
pub fn in_forward_order<'a>(saes: &[NamedSae<'a>]) -> Vec<NamedSae<'a>> {
    let mut sorted = saes.to_vec();
    sorted.sort_by_key(|s| residual_position(s.hook).unwrap_or((usize::MAX, 0)));
    sorted
}

/// The model the SAEs read, as the graph file names it: Neuronpedia's model id
/// (`gpt2-small/8-res-jb` -> `gpt2-small`) from the first SAE in forward order that has one,
/// else the first SAE's `model_name`. Every SAE of a graph reads the same model, so any SAE
/// that knows Neuronpedia's name for it gives the name the graph viewer looks up.
pub fn model_name(saes: &[NamedSae<'_>]) -> String {
    let sorted = in_forward_order(saes);
    sorted
        .iter()
        .find_map(|s| s.neuronpedia_id.as_deref()?.split('/').next())
        .map(str::to_string)
        .or_else(|| sorted.first().map(|s| s.sae.config.model_name.clone()))
        .unwrap_or_default()
}

fn graph_saes<'a>(saes: &[NamedSae<'a>]) -> Vec<GraphSae<'a>> {
    saes.iter()
        .map(|s| GraphSae {
            sae: s.sae,
            hook: s.hook,
        })
        .collect()
}

/// The start token (where the tokenizer has one), then the prompt's tokens.
pub fn prompt_ids(loaded: &LoadedModel, prompt: &str) -> Result<Vec<u32>> {
    let mut ids: Vec<u32> = loaded.tokenizer()?.id_of(END_OF_TEXT).into_iter().collect();
    ids.extend(loaded.encode_prompt(prompt)?.ids);
    Ok(ids)
}

/// The one token `text` is; `None` (the top prediction) when there is no text.
pub fn target_token(tokenizer: &TextTokenizer, text: Option<&str>) -> Result<Option<u32>> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    match tokenizer.encode(text)?.ids[..] {
        [one] => Ok(Some(one)),
        ref many => Err(SaeplayError::InvalidSetting(format!(
            "the target \"{text}\" is {} tokens; name one token (mind the leading space, as in \" cat\")",
            many.len()
        ))),
    }
}

/// An attribution graph of a prompt and its file.
pub struct PromptAttribution {
    pub graph: AttributionGraph,
    pub file: GraphFile,
    /// The token ids read: the start token, then the prompt's.
    pub ids: Vec<u32>,
    /// The SAEs' ids in forward order (the graph's layers).
    pub sae_ids: Vec<String>,
    /// The explained token's text.
    pub target_text: String,
}

/// The attribution graph of `prompt` explaining `target` (a token's text; the top prediction
/// when `None` or empty), and its file. `settings.target` is replaced by `target`'s token.
pub async fn attribute_prompt(
    loaded: &LoadedModel,
    saes: &[NamedSae<'_>],
    prompt: &str,
    target: Option<&str>,
    settings: &AttributionSettings,
    explanation: Explain<'_>,
    on_progress: impl FnMut(f64),
) -> Result<PromptAttribution> {
    let tokenizer = loaded.tokenizer()?;
    let ids = prompt_ids(loaded, prompt)?;
    let settings = AttributionSettings {
        target: target_token(tokenizer, target)?,
        ..settings.clone()
    };
    let saes = in_forward_order(saes);
    let graph = attribute(
        &loaded.model,
        &graph_saes(&saes),
        &ids,
        &settings,
        on_progress,
    )
    .await?;
    let tokens: Vec<String> = ids.iter().map(|&id| tokenizer.token_text(id)).collect();
    let target_text = match graph.nodes[graph.logit].kind {
        NodeKind::Logit { token, .. } => tokenizer.token_text(token),
        _ => String::new(),
    };
    let hooks: Vec<HookPoint> = saes.iter().map(|s| s.hook).collect();
    let sae_ids: Vec<String> = saes.iter().map(|s| s.id.clone()).collect();
    let file = GraphFile::from_attribution(
        &graph,
        &hooks,
        &GraphContext {
            model: &model_name(&saes),
            prompt,
            prompt_tokens: &tokens,
            sae_ids: &sae_ids,
            n_layers: loaded.model.dims().n_layers,
            target_text: &target_text,
            explanation,
        },
    );
    Ok(PromptAttribution {
        graph,
        file,
        ids,
        sae_ids,
        target_text,
    })
}

/// The cross-layer feature graph of the SAEs over `windows`, and its file.
pub async fn cross_layer_file(
    loaded: &LoadedModel,
    saes: &[NamedSae<'_>],
    windows: &[Vec<u32>],
    settings: &CrossLayerSettings,
    explanation: Explain<'_>,
    on_progress: impl FnMut(f64),
) -> Result<(CrossLayerGraph, GraphFile)> {
    let saes = in_forward_order(saes);
    let graph = cross_layer_graph(
        &loaded.model,
        &graph_saes(&saes),
        windows,
        settings,
        on_progress,
    )
    .await?;
    let sae_ids: Vec<String> = saes.iter().map(|s| s.id.clone()).collect();
    let file = GraphFile::from_cross_layer(&graph, &model_name(&saes), &sae_ids, explanation);
    Ok((graph, file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::fixtures::random_sae_weights;
    use crate::sae::{Architecture, SaeConfig};

    fn sae(hook_name: &str, model_name: &str) -> Sae {
        let config = SaeConfig {
            architecture: Architecture::TopK { k: 2 },
            d_in: 4,
            d_sae: 8,
            hook_name: hook_name.into(),
            model_name: model_name.into(),
            normalize_activations: Default::default(),
        };
        let weights = random_sae_weights(&config, 1);
        Sae::from_host(config, &weights, &crate::backend::cpu_device()).unwrap()
    }

    #[test]
    fn the_file_names_the_model_the_saes_read() {
        let (late, early) = (
            sae("blocks.2.hook_resid_pre", "late"),
            sae("blocks.0.hook_resid_pre", "early"),
        );
        let named = |sae, hook, neuronpedia_id: Option<&str>| NamedSae {
            sae,
            hook,
            id: String::new(),
            neuronpedia_id: neuronpedia_id.map(String::from),
        };
        // Given out of forward order: the first in forward order names the model.
        let plain = [
            named(&late, HookPoint::ResidPre(2), None),
            named(&early, HookPoint::ResidPre(0), None),
        ];
        assert_eq!(model_name(&plain), "early");
        // Neuronpedia's model id wins wherever it is known.
        let published = [
            named(&late, HookPoint::ResidPre(2), Some("gpt2-small/2-res-jb")),
            named(&early, HookPoint::ResidPre(0), None),
        ];
        assert_eq!(model_name(&published), "gpt2-small");
        let ids: Vec<String> = in_forward_order(&published)
            .iter()
            .map(|s| s.sae.config.model_name.clone())
            .collect();
        assert_eq!(ids, ["early", "late"]);
    }
}
