//! GPT-2: its config, weights and TransformerLens's weight processing, and [`Gpt2`], the model on
//! one device with two forwards: on burn's ops (`forward.rs`: the GPU path and every gradient)
//! and on host buffers (`host.rs`: inference on a CPU device).

pub mod config;
mod forward;
mod host;
pub mod processing;
pub mod weights;

use std::sync::{Arc, OnceLock};

use burn::tensor::{Device, Tensor};

use self::config::{Activation, Gpt2Config};
use self::forward::{Gpt2Tensors, TensorStages};
use self::host::HostGpt2;
use self::weights::{Gpt2Params, Gpt2Weights, upload_params_owned};
use super::dims::ModelDims;
use super::forward::tensor_ops::times_transposed;
use super::forward::{FamilyForward, Span, Stages, TensorKv};
use crate::backend::{float_tensor, is_host_device, read_f32_now};
use crate::error::Result;
use crate::kernels::{HostKv, transpose};

/// GPT-2 with weights on one device. Cloning is cheap (tensors and host buffers are shared).
#[derive(Clone, Debug)]
pub struct Gpt2 {
    config: Gpt2Config,
    dims: ModelDims,
    activation: Activation,
    device: Device,
    /// On a CPU device the weights are host buffers, and inference runs on them (`host.rs`).
    host: Option<Arc<HostGpt2>>,
    /// The weights as burn tensors: on a GPU, and for training. On a CPU device they are made
    /// from the host buffers the first time a gradient (attribution) or the burn forward needs
    /// them, so that a model is held once (GPT-2 small: 500 MB, in a page and again in its worker).
    tensors: Arc<OnceLock<Gpt2Tensors>>,
    /// Attention patterns and layer-norm scales cut from the gradient (circuit-tracer's frozen
    /// replacement model); values are unchanged.
    frozen: bool,
}

impl Gpt2 {
    pub fn new(weights: &Gpt2Weights, device: &Device) -> Result<Self> {
        Self::from_weights(weights.clone(), device)
    }

    /// [`Gpt2::new`], consuming the host weights: on a CPU device they become the host buffers
    /// as they are; elsewhere each tensor's memory is handed over as it is uploaded.
    pub fn from_weights(weights: Gpt2Weights, device: &Device) -> Result<Self> {
        let config = weights.config.clone();
        if !is_host_device(device) {
            return Self::from_params(&config, &upload_params_owned(weights, device), device);
        }
        Ok(Self {
            activation: config.activation()?,
            device: device.clone(),
            dims: config.dims(),
            config,
            host: Some(Arc::new(HostGpt2::from_weights(weights)?)),
            tensors: Arc::default(),
            frozen: false,
        })
    }

    /// The weights as burn tensors, made from the host buffers the first time (see `tensors`).
    fn tensors(&self) -> &Gpt2Tensors {
        self.tensors.get_or_init(|| {
            let host = self
                .host
                .as_ref()
                .expect("a model without burn tensors has host buffers");
            Gpt2Tensors::from_params(&self.config, &host.upload(&self.device))
                .expect("the host buffers hold every tensor of the config")
        })
    }

    /// This model with inference on burn's tensor ops even on the CPU (benchmarks and tests
    /// compare the two forwards).
    pub fn burn_forward_only(self) -> Self {
        self.tensors();
        Self { host: None, ..self }
    }

    /// Whether inference runs on host buffers (a CPU device; not after `burn_forward_only`).
    pub fn has_host_forward(&self) -> bool {
        self.host.is_some()
    }

    /// Build from parameters already on `device` (autodiff tensors during training).
    pub fn from_params(config: &Gpt2Config, params: &Gpt2Params, device: &Device) -> Result<Self> {
        Ok(Self {
            activation: config.activation()?,
            device: device.clone(),
            dims: config.dims(),
            config: config.clone(),
            host: None,
            tensors: Arc::new(OnceLock::from(Gpt2Tensors::from_params(config, params)?)),
            frozen: false,
        })
    }

    /// This model's weights as constants on the autodiff twin of its device, frozen for
    /// attribution (see [`crate::model::Model::frozen_for_attribution`]).
    pub(crate) fn frozen_on_autodiff(&self) -> Self {
        Self {
            config: self.config.clone(),
            dims: self.dims.clone(),
            activation: self.activation,
            device: self.device.clone().autodiff(),
            host: None,
            tensors: Arc::new(OnceLock::from(self.tensors().on_autodiff())),
            frozen: true,
        }
    }

    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    pub fn dims(&self) -> &ModelDims {
        &self.dims
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The unembedding `[d, vocab]` (`wte` transposed unless weight processing untied it).
    pub fn unembed(&self) -> Tensor<2> {
        match &self.host {
            Some(host) => float_tensor(
                transpose(
                    host.unembed_rows(),
                    self.config.vocab_size,
                    self.config.n_embd,
                ),
                [self.config.n_embd, self.config.vocab_size],
                &self.device,
            ),
            None => self.tensors().unembed_rows().clone().transpose(),
        }
    }

    /// `x @ W_U`: `x` `[n, d]` to `[n, vocab]`, on the host buffers when the model has them.
    pub fn unembed_directions(&self, x: Tensor<2>) -> Tensor<2> {
        if let Some(host) = &self.host
            && let Some(values) = read_f32_now(x.clone())
        {
            let n = x.dims()[0];
            let out = host.unembed_directions(&values, n);
            return float_tensor(out, [n, self.config.vocab_size], &self.device);
        }
        times_transposed(x, self.tensors().unembed_rows())
    }
}

impl FamilyForward for Gpt2 {
    fn dims(&self) -> &ModelDims {
        &self.dims
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn has_host_forward(&self) -> bool {
        self.host.is_some()
    }

    fn tensor_stages<'a>(
        &'a self,
        cache: &'a mut [TensorKv],
        span: Span,
    ) -> impl Stages<Act = Tensor<3>> + 'a {
        TensorStages {
            config: &self.config,
            activation: self.activation,
            tensors: self.tensors(),
            frozen: self.frozen,
            device: &self.device,
            cache,
            span,
        }
    }

    fn host_stages<'a>(
        &'a self,
        cache: &'a mut [HostKv],
        span: Span,
    ) -> Option<impl Stages<Act = Vec<f32>> + 'a> {
        let host = self.host.as_deref()?;
        Some(host.stages(cache, span, &self.device))
    }
}
