//! The training worker's helpers: more workers, each with its own copy of a small model, that
//! run capture forwards on the other cores (`pipeline::capture_vectors` hands them out and puts
//! their vectors in order). Stable Rust has no threads in wasm; workers are how a page uses
//! more than one core.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use js_sys::Reflect;
use wasm_bindgen::JsValue;

use super::{envelope, open, spawn};
use crate::model::WeightProcessing;
use crate::sae::pipeline::CaptureHelpers;
use crate::ui::worker_protocol::{FromWorker, ToWorker};

/// A helper's answers by request id.
type Answers = Rc<RefCell<HashMap<u32, Result<Vec<f32>, String>>>>;

/// One helper: its worker, what it was asked (ids, in order), what it answered (by id: a
/// helper's tasks may finish out of order), and messages held until it is ready (a worker
/// drops messages that arrive while its module starts).
struct Helper {
    worker: web_sys::Worker,
    asked: RefCell<VecDeque<u32>>,
    answers: Answers,
    ready: Rc<Cell<bool>>,
    held: Rc<RefCell<Vec<JsValue>>>,
}

/// Helper workers for one run's capture; they stop when the pool is dropped.
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
                    let Some((json, bytes)) = open(&event.data()) else {
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
                        Ok(FromWorker::HelperCaptured { id }) => {
                            let values = bytes
                                .into_iter()
                                .next()
                                .flatten()
                                .filter(|b| b.len() % 4 == 0)
                                .map(|b| {
                                    b.chunks_exact(4)
                                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                                        .collect()
                                })
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

impl CaptureHelpers for HelperPool {
    fn count(&self) -> usize {
        self.helpers.len()
    }

    fn send(&self, helper: usize, batch: &[Vec<u32>]) {
        let helper = &self.helpers[helper];
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1) % u32::MAX);
        let message = envelope(
            ToWorker::HelperCapture {
                id,
                model_base: self.model_base.clone(),
                processing: self.processing,
                hook_name: self.hook_name.clone(),
                windows: batch.to_vec(),
            }
            .to_json(),
            &[],
        );
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

    fn poll(&self, helper: usize) -> Option<Result<Vec<f32>, String>> {
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
