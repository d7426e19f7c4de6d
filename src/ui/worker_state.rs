//! The worker's state as plain Rust, tested natively: the model cache inside the worker (one
//! model at a time, one load at a time, waiters woken when it ends), and the page's link to the
//! worker (whether it listens, when it last spoke, the answers to numbered requests, and when
//! silence means it is busy or hung).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::ui::worker_protocol::{FeaturesAnswer, WorkerRequest};

/// Silence from a busy worker after which the page says so and offers to stop it.
pub const BUSY_SHOWN_MS: f64 = 10_000.0;
/// Silence after which the worker is taken for hung and stopped: far longer than any step,
/// piece of a scan or evaluation window it runs between messages.
pub const SILENCE_LIMIT_MS: f64 = 600_000.0;

/// The worker's copy of a model (`M`), loaded once per key (base URL and processing) and
/// dropped before another is loaded, since models can be large. A request that finds a load
/// under way waits for it (woken when it ends, no polling) and then looks again.
pub struct ModelCache<K, M> {
    held: Option<(K, Rc<M>)>,
    loading: bool,
    waiting: Vec<Waker>,
}

impl<K, M> Default for ModelCache<K, M> {
    fn default() -> Self {
        Self {
            held: None,
            loading: false,
            waiting: Vec::new(),
        }
    }
}

impl<K: PartialEq, M> ModelCache<K, M> {
    /// The model held for `key`, if it is the one held.
    pub fn held(&self, key: &K) -> Option<Rc<M>> {
        self.held
            .as_ref()
            .filter(|(k, _)| k == key)
            .map(|(_, m)| Rc::clone(m))
    }

    /// Whether a load is under way.
    pub fn is_loading(&self) -> bool {
        self.loading
    }

    /// The model for `key`: the held one, or `load`'s, after any load under way has ended.
    /// Only one load runs at a time, and the model held before is dropped when it starts.
    pub async fn get_or_load<E, F>(cache: &RefCell<Self>, key: K, load: F) -> Result<Rc<M>, E>
    where
        F: Future<Output = Result<M, E>>,
    {
        LoadEnded { cache }.await;
        if let Some(model) = cache.borrow().held(&key) {
            return Ok(model);
        }
        {
            let mut cache = cache.borrow_mut();
            cache.held = None; // one copy at a time
            cache.loading = true;
        }
        let loaded = load.await;
        let mut state = cache.borrow_mut();
        state.loading = false;
        for waker in state.waiting.drain(..) {
            waker.wake();
        }
        let model = Rc::new(loaded?);
        state.held = Some((key, Rc::clone(&model)));
        Ok(model)
    }
}

/// Ready once no load is under way.
struct LoadEnded<'a, K, M> {
    cache: &'a RefCell<ModelCache<K, M>>,
}

impl<K, M> Future for LoadEnded<'_, K, M> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let mut cache = self.cache.borrow_mut();
        if cache.loading {
            cache.waiting.push(context.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

/// What the page makes of the worker's silence while a request waits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Liveness {
    /// Working; `busy_shown` once it has been silent long enough to say so.
    Working { silent_ms: f64, busy_shown: bool },
    /// Silent past [`SILENCE_LIMIT_MS`]: to be stopped.
    Hung { silent_ms: f64 },
    /// Stopped, or replaced by another since the request was sent.
    Gone,
}

/// The page's side of the worker: whether the current one listens, when it last spoke, how
/// many were started (a request belongs to the one it was sent to), and numbered answers.
#[derive(Debug, Default)]
pub struct WorkerLink {
    ready: bool,
    heard_ms: f64,
    starts: u32,
    last_request: u32,
    answers: HashMap<u32, Result<FeaturesAnswer, String>>,
}

impl WorkerLink {
    /// A worker was started: it does not listen until it says it is ready.
    pub fn started(&mut self) {
        self.starts += 1;
        self.ready = false;
    }

    /// How many workers were started (the browser tests read it).
    pub fn starts(&self) -> u32 {
        self.starts
    }

    pub fn set_ready(&mut self, ready: bool) {
        self.ready = ready;
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The worker said something at `now_ms`.
    pub fn heard(&mut self, now_ms: f64) {
        self.heard_ms = now_ms;
    }

    /// The number for the next request (the latest is the one a failure answers).
    pub fn next_request(&mut self) -> u32 {
        self.last_request += 1;
        self.last_request
    }

    /// The latest request's number.
    pub fn last_request(&self) -> u32 {
        self.last_request
    }

    /// An answer arrived for request `id`.
    pub fn answered(&mut self, id: u32, answer: Result<FeaturesAnswer, String>) {
        self.answers.insert(id, answer);
    }

    /// Request `id`'s answer as its type, once it has arrived.
    pub fn take_answer<R: WorkerRequest>(&mut self, id: u32) -> Option<Result<R::Answer, String>> {
        let answer = self.answers.remove(&id)?;
        Some(answer.and_then(R::answer))
    }

    /// The worker stopped for `message`: it no longer listens, and the latest request, unless
    /// already answered, is answered with the reason.
    pub fn failed(&mut self, message: String) {
        self.ready = false;
        self.answers
            .entry(self.last_request)
            .or_insert(Err(message));
    }

    /// What silence means for a request sent at `since_ms` to worker number `start`, at
    /// `now_ms`; `present` is whether a worker is running.
    pub fn liveness(&self, present: bool, start: u32, since_ms: f64, now_ms: f64) -> Liveness {
        if !present || self.starts != start {
            return Liveness::Gone;
        }
        let silent_ms = now_ms - self.heard_ms.max(since_ms);
        if silent_ms > SILENCE_LIMIT_MS {
            Liveness::Hung { silent_ms }
        } else {
            Liveness::Working {
                silent_ms,
                busy_shown: silent_ms > BUSY_SHOWN_MS,
            }
        }
    }
}
