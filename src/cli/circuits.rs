//! `graph` and `attribute`: the cross-layer feature graph and attribution graphs, as the graph
//! JSON circuit-tracer writes and Neuronpedia's graph viewer reads.

use std::path::{Path, PathBuf};
use std::time::Instant;

use saeplay::backend::block_on;
use saeplay::model::HookPoint;
use saeplay::model::files::LoadedModel;
use saeplay::sae::Sae;
use saeplay::sae::circuits::file::GraphContext;
use saeplay::sae::circuits::{
    AttributionSettings, CrossLayerMethod, CrossLayerSettings, GraphFile, GraphSae, attribute,
    cross_layer_graph,
};
use saeplay::sae::saelens::SaeFiles;
use saeplay::tokenizer::END_OF_TEXT;
use saeplay::{Result, SaeplayError};

use super::ModelArgs;
use super::sae::{CorpusChoice, upload_sae, write_json};

#[derive(clap::Args)]
pub struct SaesArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// SAELens directories, comma-separated: one SAE per block of one model, any order.
    #[arg(long, value_delimiter = ',', required = true)]
    pub saes: Vec<PathBuf>,
    /// Write the graph JSON here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub saes: SaesArgs,
    #[command(flatten)]
    pub corpus: CorpusChoice,
    /// cosine (decoder directions, no data) or ablation (held-out text).
    #[arg(long, default_value = "cosine")]
    pub method: String,
    /// Links kept per feature, strongest first.
    #[arg(long, default_value_t = 3)]
    pub top: usize,
    /// Ablation: source features per SAE, most activation mass first.
    #[arg(long, default_value_t = 32)]
    pub sources: usize,
    /// Held-out windows read for densities and ablations.
    #[arg(long, default_value_t = 8)]
    pub windows: usize,
}

#[derive(clap::Args)]
pub struct AttributeArgs {
    #[command(flatten)]
    pub saes: SaesArgs,
    #[arg(long)]
    pub prompt: String,
    /// The output token explained (its text, one token); the top prediction when left out.
    #[arg(long)]
    pub target: Option<String>,
    /// Feature nodes explained as targets, strongest activations first.
    #[arg(long, default_value_t = 1024)]
    pub max_feature_nodes: usize,
    #[arg(long, default_value_t = 0.8)]
    pub node_threshold: f64,
    #[arg(long, default_value_t = 0.98)]
    pub edge_threshold: f64,
}

/// Each SAE with its hook and id.
type NamedSaes = Vec<(Sae, HookPoint, String)>;

/// The model (processed as the SAEs ask), each SAE, and the model's name for the file.
fn load(args: &SaesArgs) -> Result<(LoadedModel, NamedSaes, String)> {
    let hosts = args
        .saes
        .iter()
        .map(|dir| SaeFiles::read_dir(dir)?.parse())
        .collect::<Result<Vec<_>>>()?;
    let first = hosts.first().ok_or_else(|| {
        SaeplayError::InvalidSetting("name at least one SAE directory with --saes".into())
    })?;
    let loaded = args.model.load_processed(first.model_processing)?;
    let mut saes = Vec::new();
    for (host, dir) in hosts.iter().zip(&args.saes) {
        host.check_model_processing(loaded.processing)?;
        let (sae, hook) = upload_sae(host, &loaded)?;
        let id = host.neuronpedia_id.clone().unwrap_or_else(|| dir_name(dir));
        saes.push((sae, hook, id));
    }
    // Neuronpedia's model id (`gpt2-small/8-res-jb` -> `gpt2-small`), else the SAE's model name.
    let model = first
        .neuronpedia_id
        .as_deref()
        .and_then(|id| id.split('/').next())
        .unwrap_or(&first.config.model_name)
        .to_string();
    // Forward order once, so ids and hooks line up with the graph's layers.
    saes.sort_by_key(|(_, hook, _)| {
        saeplay::sae::circuits::attribution::residual_position(*hook).unwrap_or((usize::MAX, 0))
    });
    Ok((loaded, saes, model))
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

fn graph_saes(saes: &[(Sae, HookPoint, String)]) -> Vec<GraphSae<'_>> {
    saes.iter()
        .map(|(sae, hook, _)| GraphSae { sae, hook: *hook })
        .collect()
}

/// The SAE ids, in the graph's (forward) order.
fn sae_ids(saes: &[(Sae, HookPoint, String)]) -> Vec<String> {
    saes.iter().map(|(_, _, id)| id.clone()).collect()
}

pub fn graph(args: GraphArgs) -> Result<()> {
    let method = CrossLayerMethod::parse(&args.method)?;
    let (loaded, saes, model) = load(&args.saes)?;
    let windows: Vec<Vec<u32>> = args
        .corpus
        .held_out(&loaded, args.windows)?
        .into_iter()
        .map(|w| w.ids)
        .collect();
    let started = Instant::now();
    let graph = block_on(cross_layer_graph(
        &loaded.model,
        &graph_saes(&saes),
        &windows,
        &CrossLayerSettings {
            method,
            top: args.top,
            sources: args.sources,
        },
        |_| {},
    ))?;
    eprintln!(
        "{} graph: {} features, {} links in {:.2} s",
        method.name(),
        graph.nodes.len(),
        graph.links.len(),
        started.elapsed().as_secs_f64()
    );
    let file = GraphFile::from_cross_layer(&graph, &model, &sae_ids(&saes), &|_, _| None);
    write_json(&file, "graph", args.saes.out.as_deref())
}

pub fn attribute_prompt(args: AttributeArgs) -> Result<()> {
    let (loaded, saes, model) = load(&args.saes)?;
    let tokenizer = loaded.tokenizer()?;
    let mut ids: Vec<u32> = tokenizer.id_of(END_OF_TEXT).into_iter().collect();
    ids.extend(loaded.encode_prompt(&args.prompt)?.ids);
    let target = match &args.target {
        None => None,
        Some(text) => {
            let encoded = tokenizer.encode(text)?.ids;
            match encoded.as_slice() {
                [one] => Some(*one),
                _ => {
                    return Err(SaeplayError::InvalidSetting(format!(
                        "the target `{text}` is {} tokens; name one token (mind the leading space, as in \" cat\")",
                        encoded.len()
                    )));
                }
            }
        }
    };
    let started = Instant::now();
    let graph = block_on(attribute(
        &loaded.model,
        &graph_saes(&saes),
        &ids,
        &AttributionSettings {
            target,
            max_feature_nodes: args.max_feature_nodes,
            node_threshold: args.node_threshold,
            edge_threshold: args.edge_threshold,
        },
        |_| {},
    ))?;
    let kept = graph.kept.iter().filter(|k| **k).count();
    eprintln!(
        "attribution graph: {} nodes ({kept} kept), {} links kept, replacement {:.3}, completeness {:.3}, in {:.2} s",
        graph.nodes.len(),
        graph.links.len(),
        graph.replacement_score,
        graph.completeness_score,
        started.elapsed().as_secs_f64()
    );
    let tokens: Vec<String> = ids.iter().map(|&id| tokenizer.token_text(id)).collect();
    let target_text = match graph.nodes[graph.logit].kind {
        saeplay::sae::circuits::NodeKind::Logit { token, .. } => tokenizer.token_text(token),
        _ => String::new(),
    };
    let hooks: Vec<HookPoint> = saes.iter().map(|(_, h, _)| *h).collect();
    let file = GraphFile::from_attribution(
        &graph,
        &hooks,
        &GraphContext {
            model: &model,
            prompt: &args.prompt,
            prompt_tokens: &tokens,
            sae_ids: &sae_ids(&saes),
            n_layers: loaded.model.dims().n_layers,
            target_text: &target_text,
            explanation: &|_, _| None,
        },
    );
    write_json(&file, "graph", args.saes.out.as_deref())
}
