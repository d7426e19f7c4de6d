//! The native command line: the same engine as the page.

/// In the browser the binary's main starts the page.
#[cfg(target_arch = "wasm32")]
fn main() {
    unsafe extern "C" {
        /// The module's static constructors (cubecl registers its kernels with `inventory`).
        fn __wasm_call_ctors();
    }
    // Run them once, here. Because this code names them, wasm-ld does not wrap every export in
    // a call to them, as it does for a binary otherwise: then each call from JavaScript into the
    // module (every DOM callback, every externref allocation) re-ran all of them, ~0.3 ms a call,
    // which made drawing a list of 200 rows take 1.5 s.
    unsafe { __wasm_call_ctors() };
    saeplay::web::start();
}

#[cfg(not(target_arch = "wasm32"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(not(target_arch = "wasm32"))]
mod cli;
