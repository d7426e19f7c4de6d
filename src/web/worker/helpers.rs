//! The training worker's helpers: more workers, each with its own copy of a small model, that
//! run forwards on the other cores, the capture's and the evaluation's (`sae::spread` hands
//! them out; `pipeline::capture_vectors` and `metrics::evaluate_sae_shared` put the answers in
//! order). Stable Rust has no threads in wasm; workers are how a page uses more than one core.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use js_sys::Reflect;
use wasm_bindgen::JsValue;

use super::{envelope, open, spawn};
use crate::model::WeightProcessing;
use crate::sae::spread::{ForwardHelpers, HelperAnswer, HelperTask};
use crate::ui::worker_protocol::{Attachment, FromWorker, ToWorker};

/// A helper's answers by request id.
type Answers = Rc<RefCell<HashMap<u32, Result<HelperAnswer, String>>>>;

/// One helper: its worker, what it was asked (ids, in order), what it answered (by id: a
/// helper's tasks may finish out of order), messages held until it is ready (a worker drops
/// messages that arrive while its module starts), and the key of the SAE it holds.
struct Helper {
    worker: web_sys::Worker,
    sae_key: Cell<Option<u32>>,
    asked: RefCell<VecDeque<u32>>,
    answers: Answers,
    ready: Rc<Cell<bool>>,
    held: Rc<RefCell<Vec<JsValue>>>,
}

/// Helper workers for one training run; they stop when the pool is dropped.
pub struct HelperPool {
    helpers: Vec<Helper>,
    next_id: Cell<u32>,
    model_base: String,
    processing: WeightProcessing,
    hook_name: String,
}

impl HelperPool {
    /// One helper per core beyond this worker's (the page's own thread is mostly idle while a
    /// run captures), as many as `memory::capture_helpers` allows for a model of `model_bytes`;
    /// none where workers cannot start.
    pub fn start(
        model_base: &str,
        processing: WeightProcessing,
        hook_name: &str,
        model_bytes: u64,
    ) -> Option<Self> {
        let cores = Reflect::get(&js_sys::global(), &"navigator".into())
            .and_then(|n| Reflect::get(&n, &"hardwareConcurrency".into()))
            .ok()
            .and_then(|c| c.as_f64())
            .unwrap_or(1.0) as usize;
        let mut helpers = Vec::new();
        for _ in 0..crate::memory::capture_helpers(cores, model_bytes) {
            let answers: Answers = Rc::default();
            let ready: Rc<Cell<bool>> = Rc::default();
            let held: Rc<RefCell<Vec<JsValue>>> = Rc::default();
            let worker_slot: Rc<RefCell<Option<web_sys::Worker>>> = Rc::default();
            let on_message = {
                let (answers, ready, held) =
                    (Rc::clone(&answers), Rc::clone(&ready), Rc::clone(&held));
                let worker_slot = Rc::clone(&worker_slot);
                move |event: web_sys::MessageEvent| {
                    let Some((json, mut attachments)) = open(&event.data()) else {
                        return;
                    };
                    match FromWorker::from_json(&json) {
                        Ok(FromWorker::Ready) => {
                            ready.set(true);
                            if let Some(worker) = worker_slot.borrow().as_ref() {
                                for message in held.borrow_mut().drain(..) {
                                    worker.post_message(&message).ok();
                                }
                            }
                        }
                        Ok(FromWorker::HelperAnswered { id, losses }) => {
                            let values = attachments
                                .take(Attachment::Values)
                                .filter(|b| b.len() % 4 == 0)
                                .map(|b| {
                                    b.chunks_exact(4)
                                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                                        .collect()
                                })
                                .map(|values| HelperAnswer { values, losses })
                                .ok_or_else(|| "a helper's vectors did not arrive".to_string());
                            answers.borrow_mut().insert(id, values);
                        }
                        Ok(FromWorker::HelperError { id, message }) => {
                            answers.borrow_mut().insert(id, Err(message));
                        }
                        _ => {}
                    }
                }
            };
            // A crash fails every request still open (`u32::MAX` stands for all of them).
            let on_error = {
                let answers = Rc::clone(&answers);
                move |message: String| {
                    answers.borrow_mut().insert(u32::MAX, Err(message));
                }
            };
            let Ok(worker) = spawn(on_message, on_error) else {
                break;
            };
            *worker_slot.borrow_mut() = Some(worker.clone());
            helpers.push(Helper {
                worker,
                sae_key: Cell::new(None),
                asked: RefCell::default(),
                answers,
                ready,
                held,
            });
        }
        (!helpers.is_empty()).then(|| Self {
            helpers,
            next_id: Cell::new(0),
            model_base: model_base.to_string(),
            processing,
            hook_name: hook_name.to_string(),
        })
    }
}

impl ForwardHelpers for HelperPool {
    fn count(&self) -> usize {
        self.helpers.len()
    }

    fn send(&self, helper: usize, task: HelperTask<'_>) {
        let helper = &self.helpers[helper];
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1) % u32::MAX);
        let (model_base, processing, hook_name) = (
            self.model_base.clone(),
            self.processing,
            self.hook_name.clone(),
        );
        let message = match task {
            HelperTask::Capture { windows } => envelope(
                ToWorker::HelperCapture {
                    id,
                    model_base,
                    processing,
                    hook_name,
                    windows: windows.to_vec(),
                }
                .to_json(),
                &[],
            ),
            HelperTask::Losses {
                windows,
                sae,
                special_id,
            } => {
                // The SAE travels with the first request that needs it.
                let first = helper.sae_key.replace(Some(sae.key)) != Some(sae.key);
                let weights: Vec<(Attachment, &[u8])> = first
                    .then_some((Attachment::Weights, sae.weights.as_slice()))
                    .into_iter()
                    .collect();
                envelope(
                    ToWorker::HelperEvaluate {
                        id,
                        model_base,
                        processing,
                        hook_name,
                        windows: windows.to_vec(),
                        sae_key: sae.key,
                        sae_config: first.then(|| sae.config.clone()),
                        special_id,
                    }
                    .to_json(),
                    &weights,
                )
            }
        };
        helper.asked.borrow_mut().push_back(id);
        if !helper.ready.get() {
            helper.held.borrow_mut().push(message);
        } else if let Err(e) = helper.worker.post_message(&message) {
            helper
                .answers
                .borrow_mut()
                .insert(id, Err(format!("{e:?}")));
        }
    }

    fn poll(&self, helper: usize) -> Option<Result<HelperAnswer, String>> {
        let helper = &self.helpers[helper];
        let mut asked = helper.asked.borrow_mut();
        let id = *asked.front()?;
        let mut answers = helper.answers.borrow_mut();
        let answer = match answers.remove(&id) {
            Some(answer) => answer,
            None => answers.get(&u32::MAX).cloned()?,
        };
        asked.pop_front();
        Some(answer)
    }
}

impl Drop for HelperPool {
    fn drop(&mut self) {
        for helper in &self.helpers {
            helper.worker.terminate();
        }
    }
}
