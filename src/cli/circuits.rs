//! `graph` and `attribute`: the cross-layer feature graph and attribution graphs, as the graph
//! JSON circuit-tracer writes and Neuronpedia's graph viewer reads.

use std::path::{Path, PathBuf};
use std::time::Instant;

use saeplay::backend::block_on;
use saeplay::model::HookPoint;
use saeplay::model::files::LoadedModel;
use saeplay::sae::Sae;
use saeplay::sae::circuits::{
    AttributionSettings, CrossLayerMethod, CrossLayerSettings, NamedSae, PromptAttribution,
    attribute_prompt, cross_layer_file,
};
use saeplay::sae::saelens::SaeFiles;
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

/// An SAE read from its directory, with the id its graph gives it.
struct DirSae {
    sae: Sae,
    hook: HookPoint,
    id: String,
    neuronpedia_id: Option<String>,
}

/// The model (processed as the SAEs ask) and each SAE.
fn load(args: &SaesArgs) -> Result<(LoadedModel, Vec<DirSae>)> {
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
        saes.push(DirSae {
            sae,
            hook,
            id,
            neuronpedia_id: host.neuronpedia_id.clone(),
        });
    }
    Ok((loaded, saes))
}

fn named(saes: &[DirSae]) -> Vec<NamedSae<'_>> {
    saes.iter()
        .map(|s| NamedSae {
            sae: &s.sae,
            hook: s.hook,
            id: s.id.clone(),
            neuronpedia_id: s.neuronpedia_id.clone(),
        })
        .collect()
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

pub fn graph(args: GraphArgs) -> Result<()> {
    let method = CrossLayerMethod::parse(&args.method)?;
    let (loaded, saes) = load(&args.saes)?;
    let windows: Vec<Vec<u32>> = args
        .corpus
        .held_out(&loaded, args.windows)?
        .into_iter()
        .map(|w| w.ids)
        .collect();
    let started = Instant::now();
    let (graph, file) = block_on(cross_layer_file(
        &loaded,
        &named(&saes),
        &windows,
        &CrossLayerSettings {
            method,
            top: args.top,
            sources: args.sources,
        },
        &|_, _| None,
        |_| {},
    ))?;
    eprintln!(
        "{} graph: {} features, {} links in {:.2} s",
        method.name(),
        graph.nodes.len(),
        graph.links.len(),
        started.elapsed().as_secs_f64()
    );
    write_json(&file, "graph", args.saes.out.as_deref())
}

pub fn attribute(args: AttributeArgs) -> Result<()> {
    let (loaded, saes) = load(&args.saes)?;
    let started = Instant::now();
    let PromptAttribution { graph, file, .. } = block_on(attribute_prompt(
        &loaded,
        &named(&saes),
        &args.prompt,
        args.target.as_deref(),
        &AttributionSettings {
            target: None,
            max_feature_nodes: args.max_feature_nodes,
            node_threshold: args.node_threshold,
            edge_threshold: args.edge_threshold,
        },
        &|_, _| None,
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
    write_json(&file, "graph", args.saes.out.as_deref())
}
