//! Time and cooperative waiting for the engine's long jobs, on both platforms: natively a
//! monotonic clock and plain sleeps; in wasm `performance.now()` and `setTimeout`, found on the
//! global object so they work in the page and in its worker alike.

/// Seconds since an arbitrary fixed start (only differences mean anything).
#[cfg(not(target_arch = "wasm32"))]
pub fn now_seconds() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

#[cfg(target_arch = "wasm32")]
pub fn now_seconds() -> f64 {
    use wasm_bindgen::JsCast;
    js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|p| p.dyn_into::<web_sys::Performance>().ok())
        .map(|p| p.now() / 1000.0)
        .unwrap_or(0.0)
}

/// Wait `ms` milliseconds.
#[cfg(not(target_arch = "wasm32"))]
pub async fn sleep_ms(ms: u32) {
    std::thread::sleep(std::time::Duration::from_millis(u64::from(ms)));
}

#[cfg(target_arch = "wasm32")]
pub async fn sleep_ms(ms: u32) {
    gloo_timers::future::TimeoutFuture::new(ms).await;
}

/// Let the event loop run (input, paint, messages) before going on; nothing to do natively.
pub async fn yield_now() {
    #[cfg(target_arch = "wasm32")]
    sleep_ms(0).await;
}

/// [`yield_now`] for the steps of training (each forward of its capture, each batch): in the
/// worker a message to itself, since a nested `setTimeout(0)` waits at least 4 ms (about 3 s of
/// the default SAE's 20 in the worker, measured); in the page, where it lets the page paint,
/// and natively, the same as `yield_now`.
pub async fn yield_between_steps() {
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen::JsCast;
        let in_worker = js_sys::global()
            .dyn_into::<web_sys::WorkerGlobalScope>()
            .is_ok();
        if !in_worker || message_round_trip().await.is_none() {
            sleep_ms(0).await;
        }
    }
}

/// Between the tokens of a generation on the page's thread (prompt, steering): a message round
/// trip lets input and messages through without a nested `setTimeout(0)`'s 4 ms floor (0.13 s of
/// a 32-token steering run); a timer yield at least once a frame lets the page paint too.
pub async fn yield_between_tokens() {
    #[cfg(target_arch = "wasm32")]
    {
        const FRAME_SECONDS: f64 = 0.016;
        thread_local! {
            static LAST_TIMER_YIELD: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
        }
        let due = LAST_TIMER_YIELD.with(|last| now_seconds() - last.get() >= FRAME_SECONDS);
        if due || message_round_trip().await.is_none() {
            sleep_ms(0).await;
            LAST_TIMER_YIELD.with(|last| last.set(now_seconds()));
        }
    }
}

/// Post a message to a fresh channel and wait until it arrives: one turn of the event loop.
#[cfg(target_arch = "wasm32")]
async fn message_round_trip() -> Option<()> {
    use wasm_bindgen::JsCast;
    let channel = web_sys::MessageChannel::new().ok()?;
    let port = channel.port1();
    let arrived = js_sys::Promise::new(&mut |resolve, _reject| {
        port.set_onmessage(Some(resolve.unchecked_ref()));
    });
    channel
        .port2()
        .post_message(&wasm_bindgen::JsValue::NULL)
        .ok()?;
    wasm_bindgen_futures::JsFuture::from(arrived).await.ok()?;
    port.set_onmessage(None);
    Some(())
}
