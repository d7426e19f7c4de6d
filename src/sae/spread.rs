//! Forwards shared with helper workers: the page's CPU path on more than one core. Stable Rust
//! has no threads in wasm, so the training worker starts more workers, each with its own copy of
//! the model, and hands them whole forwards: capture forwards while a run captures, and the
//! held-out evaluation's forwards (clean, spliced, ablated) after it trains. [`Spread`] decides
//! who runs which task; the caller puts the answers back in task order, so the result is the
//! same as one worker running every task.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};

use super::metrics::LossSums;
use super::{Sae, SaeConfig};
use crate::error::{Result, SaeplayError};
use crate::io::tensors::{HostTensor, read_f32_tensors, write_safetensors};

/// An SAE as a helper receives it: its config and its parameters as a safetensors file. `key`
/// tells helpers whether they already hold it (the bytes travel once per helper).
pub struct SaeForHelpers {
    pub key: u32,
    pub config: SaeConfig,
    pub weights: Vec<u8>,
}

impl SaeForHelpers {
    pub async fn new(sae: &Sae) -> Result<Self> {
        static NEXT_KEY: AtomicU32 = AtomicU32::new(1);
        let host = sae.to_host().await?;
        let weights = write_safetensors(
            host.iter()
                .map(|(name, t)| (name.as_str(), t.shape.as_slice(), t.values.as_slice())),
        );
        Ok(Self {
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            config: sae.config.clone(),
            weights,
        })
    }

    /// The SAE again, on `device` (a helper's side).
    pub fn upload(config: SaeConfig, weights: &[u8], device: &burn::tensor::Device) -> Result<Sae> {
        let tensors: BTreeMap<String, HostTensor> = read_f32_tensors(weights)?;
        Sae::from_host(config, &tensors, device)
    }
}

/// One task for a helper: a forward over `windows` (one batch of equal-length token rows).
pub enum HelperTask<'a> {
    /// Capture the run's hook.
    Capture { windows: &'a [Vec<u32>] },
    /// Evaluate `sae` at the run's hook ([`super::metrics::batch_losses`]): positions holding
    /// `special_id` are left as they are.
    Losses {
        windows: &'a [Vec<u32>],
        sae: &'a SaeForHelpers,
        special_id: Option<u32>,
    },
}

/// A helper's answer: the hook's activation in the (clean) forward, row-major `[b * t, d]`,
/// and for [`HelperTask::Losses`] the loss sums.
#[derive(Debug, Clone, PartialEq)]
pub struct HelperAnswer {
    pub values: Vec<f32>,
    pub losses: Option<LossSums>,
}

/// Other workers that run forwards beside this one, each with its own copy of the model, set up
/// for the run's hook point.
pub trait ForwardHelpers {
    /// How many there are.
    fn count(&self) -> usize;
    /// Ask helper `helper` to run `task` (after those it was asked before).
    fn send(&self, helper: usize, task: HelperTask<'_>);
    /// Helper `helper`'s next answer, in the order asked, once it has come.
    fn poll(&self, helper: usize) -> Option<std::result::Result<HelperAnswer, String>>;
}

/// Who runs which of tasks `0..tasks`: each helper holds up to `ahead` tasks, this worker takes
/// the next task no one holds. A helper that fails (or answers what was not asked) is left out,
/// and the tasks it held come back to this worker.
///
/// Holding two lets a helper start its next short task (a capture forward) at once: this worker
/// reads answers only between its own tasks. Long tasks (an evaluation's three forwards) are
/// better held one at a time, or this worker runs out of tasks while a helper still holds two.
pub(crate) struct Spread<'h> {
    helpers: Option<&'h dyn ForwardHelpers>,
    ahead: usize,
    busy: Vec<VecDeque<usize>>,
    failed: Vec<bool>,
    here: VecDeque<usize>,
    next: usize,
    tasks: usize,
}

impl<'h> Spread<'h> {
    pub fn new(helpers: Option<&'h dyn ForwardHelpers>, tasks: usize, ahead: usize) -> Self {
        let helpers = helpers.filter(|h| h.count() > 0);
        let count = helpers.map_or(0, |h| h.count());
        Self {
            helpers,
            ahead: ahead.max(1),
            busy: vec![VecDeque::new(); count],
            failed: vec![false; count],
            here: VecDeque::new(),
            next: 0,
            tasks,
        }
    }

    /// Take the helpers' answers (`accept(task, answer)`, `false` for an answer that does not
    /// fit the task), then ask them for more (`task_of(task)`).
    pub fn pump<'t>(
        &mut self,
        task_of: impl Fn(usize) -> HelperTask<'t>,
        mut accept: impl FnMut(usize, HelperAnswer) -> bool,
    ) {
        let Some(helpers) = self.helpers else {
            return;
        };
        for h in 0..self.busy.len() {
            while !self.failed[h]
                && !self.busy[h].is_empty()
                && let Some(answer) = helpers.poll(h)
            {
                let task = self.busy[h].pop_front().expect("checked");
                if !answer.is_ok_and(|answer| accept(task, answer)) {
                    self.failed[h] = true;
                    self.here.push_back(task);
                    self.here.extend(self.busy[h].drain(..));
                }
            }
            while !self.failed[h] && self.busy[h].len() < self.ahead && self.next < self.tasks {
                helpers.send(h, task_of(self.next));
                self.busy[h].push_back(self.next);
                self.next += 1;
            }
        }
    }

    /// The next task for this worker: one a failed helper left, or the next no one holds.
    pub fn next_here(&mut self) -> Option<usize> {
        self.here.pop_front().or_else(|| {
            (self.next < self.tasks).then(|| {
                self.next += 1;
                self.next - 1
            })
        })
    }

    /// Whether helpers still hold tasks (wait for them, without taking their cores).
    pub fn waiting(&self) -> bool {
        self.busy.iter().any(|queue| !queue.is_empty())
    }

    /// The error for a task that neither this worker nor a helper holds any more.
    pub fn lost(&self) -> SaeplayError {
        SaeplayError::InvalidSetting("a forward shared with a helper worker was lost".into())
    }
}
