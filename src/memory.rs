//! Memory that work would take, checked before anything is allocated: estimates in bytes, the
//! budget a platform lends (the machine's available memory natively, a fixed share of wasm32's
//! 4 GiB in the page), and sizes in words.

use crate::{Result, SaeplayError};

/// The most the page lets one piece of work take: wasm32 memory is 4 GiB in all and the model,
/// the page and the worker's copy of the model live in it too.
pub const PAGE_WORK_BYTES: u64 = 2 << 30;

/// `12.3 MB`, `512 kB`, `800 B` (decimal units, as browsers and the Hub show sizes).
pub fn size_text(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.0} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

/// Bytes of `count` f32 values, saturating (a vast setting stays vast rather than wrapping).
pub fn f32_bytes(count: u128) -> u64 {
    u64::try_from(count.saturating_mul(4)).unwrap_or(u64::MAX)
}

/// What this machine can lend now: `MemAvailable` natively on Linux; `None` where unknown.
pub fn available_bytes() -> Option<u64> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb.saturating_mul(1024))
    }
    #[cfg(target_arch = "wasm32")]
    {
        None
    }
}

/// Refuse `what` when it would need more than `limit` bytes, naming both sizes.
pub fn check_fits(what: &str, needed: u64, limit: Option<u64>, advice: &str) -> Result<()> {
    match limit {
        Some(limit) if needed > limit => Err(SaeplayError::TooMuchMemory {
            what: what.to_string(),
            needed,
            limit,
            advice: advice.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Most model bytes the page's capture helpers hold between them: each helper is a worker with
/// its own copy of the model.
pub const HELPER_MODEL_BYTES: u64 = 400 << 20;

/// Most capture helpers, whatever the machine offers.
pub const MAX_HELPERS: usize = 3;

/// How many helper workers share a capture with the training worker: one per core beyond its
/// own, at most [`MAX_HELPERS`], and only as many copies of a model of `model_bytes` as fit in
/// [`HELPER_MODEL_BYTES`] (the built-in model is 4 MB; SmolLM2's GGUF, packed, about 100 MB;
/// GPT-2 small, 500 MB as f32, gets none).
pub fn capture_helpers(cores: usize, model_bytes: u64) -> usize {
    let fit = HELPER_MODEL_BYTES / model_bytes.max(1);
    cores
        .saturating_sub(1)
        .min(MAX_HELPERS)
        .min(usize::try_from(fit).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size_text(999), "999 B");
        assert_eq!(size_text(2_500_000_000), "2.50 GB");
        assert_eq!(f32_bytes(u128::MAX), u64::MAX);
    }

    #[test]
    fn refusals_name_both_sizes() {
        let error = check_fits("training", 3_000_000_000, Some(PAGE_WORK_BYTES), "lower it")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("3.00 GB") && error.contains("2.15 GB"),
            "{error}"
        );
        assert!(check_fits("training", 10, None, "").is_ok());
    }

    #[test]
    fn capture_helpers_follow_cores_and_model_size() {
        assert_eq!(capture_helpers(1, 4 << 20), 0, "one core: the worker alone");
        assert_eq!(capture_helpers(2, 4 << 20), 1);
        assert_eq!(capture_helpers(16, 4 << 20), MAX_HELPERS);
        assert_eq!(
            capture_helpers(8, 150 << 20),
            2,
            "two packed SmolLM2 copies fit"
        );
        assert_eq!(
            capture_helpers(8, 500 << 20),
            0,
            "GPT-2 small is not copied"
        );
        assert_eq!(capture_helpers(0, 0), 0);
    }
}
