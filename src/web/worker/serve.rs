//! Inside the worker: answer the page's [`ToWorker`] messages with [`FromWorker`] ones.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use super::{envelope, open};
use crate::backend::cpu_device;
use crate::model::WeightProcessing;
use crate::model::files::LoadedModel;
use crate::sae::features::FeatureReport;
use crate::sae::pipeline::{
    PAGE_WINDOWS_PER_FORWARD, Reporter, TrainOptions, feature_job, train_sae,
};
use crate::sae::saelens::SaeFiles;
use crate::sae::train::{Control, Progress, SaeTrainingConfig};
use crate::ui::feature_list::FeatureList;
use crate::ui::worker_protocol::{FromWorker, ToWorker};
use crate::web::platform::load_model;

thread_local! {
    static CONTROL: Cell<Control> = const { Cell::new(Control::Continue) };
    static MODEL: RefCell<Option<(String, WeightProcessing, Rc<LoadedModel>)>> = const { RefCell::new(None) };
    /// Feature reports by the page's key, so cards are sent one at a time.
    static REPORTS: RefCell<HashMap<String, FeatureReport>> = RefCell::new(HashMap::new());
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn post(message: &FromWorker) {
    post_with(message, &[]);
}

fn post_with(message: &FromWorker, bytes: &[Option<&[u8]>]) {
    scope()
        .post_message(&envelope(message.to_json(), bytes))
        .ok();
}

struct PostReporter;

impl Reporter for PostReporter {
    fn phase(&self, text: String, fraction: f64) {
        post(&FromWorker::Phase { text, fraction });
    }

    fn progress(&self, progress: &Progress) {
        post(&FromWorker::Progress {
            progress: Box::new(progress.clone()),
        });
    }

    fn control(&self) -> Control {
        CONTROL.with(Cell::get)
    }
}

/// The worker's own copy of the model (CPU), loaded once per base URL and processing (from the
/// download cache the page filled, for models from other sites).
async fn model(base: &str, processing: WeightProcessing) -> Result<Rc<LoadedModel>, String> {
    if let Some(loaded) = MODEL.with(|m| {
        m.borrow()
            .as_ref()
            .filter(|(b, p, _)| b == base && *p == processing)
            .map(|(_, _, l)| Rc::clone(l))
    }) {
        return Ok(loaded);
    }
    MODEL.with(|m| m.borrow_mut().take()); // one copy at a time: models can be large
    let loaded = Rc::new(load_model(&cpu_device(), base, processing, &|_| {}).await?);
    MODEL.with(|m| *m.borrow_mut() = Some((base.to_string(), processing, Rc::clone(&loaded))));
    Ok(loaded)
}

async fn train(base: String, processing: WeightProcessing, config: SaeTrainingConfig) {
    CONTROL.with(|c| c.set(Control::Continue));
    let result = async {
        PostReporter.phase("Loading the model in the training worker…".into(), 0.0);
        let loaded = model(&base, processing).await?;
        let options = TrainOptions::in_page(&config);
        train_sae(&loaded, config, &options, &PostReporter)
            .await
            .map(|run| run.map(|trained| trained.files))
            .map_err(|e| e.to_string())
    }
    .await;
    match result {
        Ok(Some(files)) => post_with(
            &FromWorker::Done,
            &[
                Some(&files.cfg),
                Some(&files.weights),
                files.sparsity.as_deref(),
                files.saeplay.as_deref(),
            ],
        ),
        Ok(None) => post(&FromWorker::Cancelled),
        Err(message) => post(&FromWorker::Error { message }),
    }
}

async fn features(
    id: u32,
    key: String,
    (base, processing): (String, WeightProcessing),
    cfg: Vec<u8>,
    weights: Vec<u8>,
) {
    let result = async {
        let loaded = model(&base, processing).await?;
        let host = SaeFiles {
            cfg,
            weights,
            sparsity: None,
            saeplay: None,
        }
        .parse()
        .map_err(|e| e.to_string())?;
        let hook = crate::model::HookPoint::parse(&host.config.hook_name, loaded.model.config())
            .map_err(|e| e.to_string())?;
        let sae = host
            .upload(loaded.model.device())
            .map_err(|e| e.to_string())?;
        let on_phase = |text: String| post(&FromWorker::FeaturesPhase { id, text });
        let report = feature_job(&loaded, &sae, hook, PAGE_WINDOWS_PER_FORWARD, &on_phase)
            .await
            .map_err(|e| e.to_string())?;
        let list = FeatureList::of(&report);
        REPORTS.with(|r| r.borrow_mut().insert(key, report));
        Ok::<_, String>(list)
    }
    .await;
    match result {
        Ok(list) => post(&FromWorker::FeatureList { id, list }),
        Err(message) => post(&FromWorker::FeaturesError { id, message }),
    }
}

fn feature(id: u32, key: &str, index: usize) {
    let card = REPORTS.with(|r| {
        let reports = r.borrow();
        let report = reports
            .get(key)
            .ok_or("the worker no longer holds this SAE's features")?;
        report
            .features
            .iter()
            .find(|f| f.index == index)
            .cloned()
            .ok_or_else(|| format!("this SAE has no feature #{index}"))
    });
    match card {
        Ok(card) => post(&FromWorker::FeatureCard {
            id,
            card: Box::new(card),
        }),
        Err(message) => post(&FromWorker::FeaturesError { id, message }),
    }
}

fn handle(message: ToWorker, mut bytes: Vec<Option<Vec<u8>>>) {
    match message {
        ToWorker::Train {
            model_base,
            processing,
            config,
        } => spawn_local(train(model_base, processing, config)),
        ToWorker::Features {
            id,
            key,
            model_base,
            processing,
        } => {
            let mut take = |i: usize| bytes.get_mut(i).and_then(Option::take).unwrap_or_default();
            let (cfg, weights) = (take(0), take(1));
            spawn_local(features(id, key, (model_base, processing), cfg, weights));
        }
        ToWorker::Feature { id, key, index } => feature(id, &key, index),
        ToWorker::Pause => CONTROL.with(|c| c.set(Control::Pause)),
        ToWorker::Resume => CONTROL.with(|c| c.set(Control::Continue)),
        ToWorker::Cancel => CONTROL.with(|c| c.set(Control::Stop)),
    }
}

/// Run as the worker: answer the page's messages.
pub fn serve() {
    let onmessage = Closure::<dyn Fn(MessageEvent)>::new(|event: MessageEvent| {
        let Some((json, bytes)) = open(&event.data()) else {
            return;
        };
        match ToWorker::from_json(&json) {
            Ok(message) => handle(message, bytes),
            Err(message) => post(&FromWorker::Error { message }),
        }
    });
    scope().set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    post(&FromWorker::Ready);
}
