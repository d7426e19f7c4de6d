//! Every backend choice and device initialisation lives here; the rest of the engine only sees
//! `burn::Device` and the async read helpers below.
//!
//! Reads go through `into_data_async` on every platform: a synchronous read panics in wasm on
//! WebGPU, and keeping one code path means the native tests exercise the page's path.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::{Result, SaeplayError};

/// Which compute path runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn's pure-Rust CPU backend.
    Cpu,
    /// burn's wgpu backend: WebGPU in the browser, Vulkan/Metal natively.
    Wgpu,
}

impl BackendKind {
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "wgpu" | "webgpu" | "gpu" => Ok(Self::Wgpu),
            other => Err(SaeplayError::InvalidSetting(format!(
                "unknown backend `{other}`: use cpu or wgpu"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
        }
    }
}

/// The CPU device. Natively burn's `flex` backend (measured here: 1.4x ndarray's speed when
/// training the model, 4x when training SAEs); `SAEPLAY_CPU_BACKEND=ndarray` selects ndarray
/// so the two can be compared. In the page, ndarray (see docs/toolchain.md, "CPU backends, threads and SIMD").
#[allow(deprecated)]
pub fn cpu_device() -> Device {
    #[cfg(not(target_arch = "wasm32"))]
    {
        if std::env::var("SAEPLAY_CPU_BACKEND").as_deref() == Ok("ndarray") {
            return Device::ndarray();
        }
        Device::flex()
    }
    #[cfg(target_arch = "wasm32")]
    Device::ndarray()
}

/// Whether `device` computes on the host (burn's CPU backends), where reading a tensor back is free.
pub fn is_host_device(device: &Device) -> bool {
    use burn::backend::DispatchDevice;
    match device.as_dispatch() {
        DispatchDevice::NdArray(_) => true,
        // flex is built natively only (Cargo.toml): the page's CPU backend is ndarray.
        #[cfg(not(target_arch = "wasm32"))]
        DispatchDevice::Flex(_) => true,
        _ => false,
    }
}

/// Initialise the wgpu device asynchronously (the only way in a browser). Call once per process:
/// a second initialisation fails in burn, so callers keep and clone the returned device.
pub async fn wgpu_device() -> Result<Device> {
    Device::wgpu_options()
        .init_async()
        .await
        .map_err(|error| SaeplayError::Device(format!("WebGPU/wgpu could not start: {error}")))
}

/// Native convenience: pick a device by kind, blocking on the async initialisation.
#[cfg(not(target_arch = "wasm32"))]
pub fn native_device(kind: BackendKind) -> Result<Device> {
    match kind {
        BackendKind::Cpu => Ok(cpu_device()),
        BackendKind::Wgpu => {
            static WGPU: std::sync::OnceLock<std::result::Result<Device, String>> =
                std::sync::OnceLock::new();
            WGPU.get_or_init(|| pollster::block_on(wgpu_device()).map_err(|e| e.to_string()))
                .clone()
                .map_err(SaeplayError::Device)
        }
    }
}

/// Block on an engine future natively (the CLI and tests); the page awaits instead.
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    pollster::block_on(future)
}

pub fn float_tensor<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

pub fn int_tensor<const D: usize>(
    values: Vec<i64>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D, Int> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Read a float tensor back to the host as f32 values, asynchronously.
pub async fn read_f32<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    let data = tensor.into_data_async().await.map_err(|error| {
        let reason = match &error {
            burn::tensor::ExecutionError::DevicePoisoned { .. } => {
                "the GPU device was lost".to_string()
            }
            other => format!("{other}"),
        };
        note_device_failure(&reason);
        SaeplayError::Device(format!("reading a tensor failed: {reason}"))
    })?;
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|error| SaeplayError::Device(format!("reading a tensor failed: {error:?}")))
}

/// Why the compute device stopped answering, once a read from it failed (on WebGPU: the device
/// was lost or destroyed, and every later operation fails too). The page moves to the CPU path
/// when it sees one; the CPU backends' reads do not fail.
static DEVICE_FAILURE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn note_device_failure(reason: &str) {
    if let Ok(mut failure) = DEVICE_FAILURE.lock() {
        failure.get_or_insert_with(|| reason.to_string());
    }
}

/// The first device failure since the last [`clear_device_failure`], if any.
pub fn device_failure() -> Option<String> {
    DEVICE_FAILURE.lock().ok().and_then(|f| f.clone())
}

pub fn clear_device_failure() {
    if let Ok(mut failure) = DEVICE_FAILURE.lock() {
        *failure = None;
    }
}

/// Read a float tensor on a host device without awaiting: the CPU backends answer at once.
/// `None` if the read would have to wait (a GPU) or failed.
pub fn read_f32_now<const D: usize>(tensor: Tensor<D>) -> Option<Vec<f32>> {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let mut read = std::pin::pin!(read_f32(tensor));
    match read.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(values)) => Some(values),
        _ => None,
    }
}
