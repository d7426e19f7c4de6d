//! Hook sites: where a forward's patches apply and its captures are taken. The forward's
//! skeleton ([`super::run_blocks`]) calls a site for every hook point; here is what a site does,
//! on burn tensors ([`HookRun`]) and on host buffers ([`HostSites`]).

use burn::tensor::{Device, Tensor};

use super::output::Captured;
use crate::backend::{float_tensor, read_f32_now};
use crate::error::{Result, SaeplayError};
use crate::model::dims::ModelDims;
use crate::model::hooks::{HookContext, HookPoint, Hooks, PatchOp};

/// The hook sites of one forward call, for activations stored as `A`.
pub(crate) trait Sites<A> {
    /// Whether a hook captures or patches at `hook` (a forward may skip work no hook sees).
    fn touches(&self, hook: HookPoint) -> bool;
    /// Apply the patches at `hook` in order, then capture the value that flows on.
    fn site(&mut self, hook: HookPoint, x: A) -> Result<A>;
    /// What was captured, in the order the forward reached it.
    fn into_captured(self) -> Captured;
}

/// The hook bookkeeping of one forward call.
pub(crate) struct HookRun<'a> {
    hooks: &'a Hooks,
    offset: usize,
    captured: Captured,
}

impl<'a> HookRun<'a> {
    pub(crate) fn new(hooks: &'a Hooks, offset: usize) -> Self {
        Self {
            hooks,
            offset,
            captured: Vec::new(),
        }
    }

    /// Apply the patches at `hook` in order, then capture the value that flows on.
    fn patch_and_capture(&mut self, hook: HookPoint, mut x: Tensor<3>) -> Result<Tensor<3>> {
        if self.hooks.is_empty() {
            return Ok(x);
        }
        for patch in self.hooks.patches.iter().filter(|p| p.hook == hook) {
            let [b, t, d] = x.dims();
            let window = |tensor: &Tensor<3>| {
                tensor
                    .clone()
                    .slice([0..b, self.offset..self.offset + t, 0..d])
            };
            x = match &patch.op {
                PatchOp::Replace(values) => window(values),
                PatchOp::Add(delta) if delta.dims()[..2] == [1, 1] => x + delta.clone(),
                PatchOp::Add(delta) => x + window(delta),
                PatchOp::Map(function) => {
                    let context = HookContext {
                        hook,
                        position_offset: self.offset,
                    };
                    let y = function.apply(x, context);
                    if y.dims() != [b, t, d] {
                        return Err(SaeplayError::PatchShape {
                            hook: hook.to_string(),
                            expected: vec![b, t, d],
                            found: y.dims().to_vec(),
                        });
                    }
                    y
                }
            };
        }
        if self.hooks.capture.contains(&hook) {
            self.captured.push((hook, x.clone()));
        }
        Ok(x)
    }
}

impl Sites<Tensor<3>> for HookRun<'_> {
    fn touches(&self, hook: HookPoint) -> bool {
        self.hooks.patches.iter().any(|p| p.hook == hook) || self.hooks.capture.contains(&hook)
    }

    fn site(&mut self, hook: HookPoint, x: Tensor<3>) -> Result<Tensor<3>> {
        self.patch_and_capture(hook, x)
    }

    fn into_captured(self) -> Captured {
        self.captured
    }
}

/// Hook sites on host buffers (row-major `[batch * pos, width]`, the width the hook point's): a
/// site no hook touches costs two comparisons; a captured one is copied into a tensor; a
/// patched one goes through the patch as a tensor and is read back.
pub(crate) struct HostSites<'a> {
    run: HookRun<'a>,
    dims: &'a ModelDims,
    batch: usize,
    device: &'a Device,
}

impl<'a> HostSites<'a> {
    pub(crate) fn new(
        hooks: &'a Hooks,
        offset: usize,
        dims: &'a ModelDims,
        batch: usize,
        device: &'a Device,
    ) -> Self {
        Self {
            run: HookRun::new(hooks, offset),
            dims,
            batch,
            device,
        }
    }
}

impl Sites<Vec<f32>> for HostSites<'_> {
    fn touches(&self, hook: HookPoint) -> bool {
        self.run.touches(hook)
    }

    fn site(&mut self, hook: HookPoint, x: Vec<f32>) -> Result<Vec<f32>> {
        if !self.touches(hook) {
            return Ok(x);
        }
        let width = hook.width(self.dims);
        // Rows per sequence: the new positions, or one where only the last position's logits are
        // asked for (the final norm).
        let positions = x.len().checked_div(self.batch * width).unwrap_or(0);
        let shape = [self.batch, positions, width];
        if !self.run.hooks.patches.iter().any(|p| p.hook == hook) {
            let tensor = float_tensor(x.clone(), shape, self.device);
            self.run.patch_and_capture(hook, tensor)?;
            return Ok(x);
        }
        let y = self
            .run
            .patch_and_capture(hook, float_tensor(x, shape, self.device))?;
        read_f32_now(y).ok_or_else(|| {
            SaeplayError::Device(format!(
                "a patch at {hook} left the CPU; patches of a CPU model must stay on the CPU"
            ))
        })
    }

    fn into_captured(self) -> Captured {
        self.run.captured
    }
}
