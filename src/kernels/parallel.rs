//! Work split over every core natively (rayon); in order on the page's one thread.

/// Run `work(i, chunk)` on each `chunk`-sized piece of `data`: natively over every core.
pub(crate) fn for_each_chunk(
    data: &mut [f32],
    chunk: usize,
    work: impl Fn(usize, &mut [f32]) + Send + Sync,
) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| work(i, c));
    }
    #[cfg(target_arch = "wasm32")]
    data.chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| work(i, c));
}
