//! Downloads as the page shows them: progress in words, and where the Hugging Face Hub is.

/// The Hugging Face Hub; `HF_ENDPOINT` in huggingface_hub's terms. A page can be pointed at a
/// mirror (the browser tests serve one) by setting `globalThis.SAEPLAY_HF_ENDPOINT` first.
pub const HF_ENDPOINT: &str = "https://huggingface.co";

/// A Hub repository id as a link may carry it: `gpt2` or `owner/name`, each part letters,
/// digits, `-`, `_` and `.` (not starting with `.`), as the Hub allows.
/// A GGUF file in a repository is named after it: `owner/name/file.gguf`.
pub fn is_hub_repo(text: &str) -> bool {
    let mut parts: Vec<&str> = text.split('/').collect();
    if parts.len() == 3 && is_gguf_url(parts[2]) {
        parts.pop();
    }
    (1..=2).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 96
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

/// The directory URL of a Hub repository's main branch (the file's URL for `owner/name/file.gguf`).
pub fn hub_model_url(endpoint: &str, repo: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    match repo.rsplit_once('/') {
        Some((repo, file)) if is_gguf_url(file) && repo.contains('/') => {
            format!("{endpoint}/{repo}/resolve/main/{file}")
        }
        _ => format!("{endpoint}/{repo}/resolve/main/"),
    }
}

/// Whether a model address is one GGUF file rather than a directory of Hugging Face files.
pub fn is_gguf_url(url: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.len() > 5 && path[path.len() - 5..].eq_ignore_ascii_case(".gguf")
}

/// Where a model opened from files is kept, under the page's own address, in the download
/// cache (so the worker loads it like any other model).
pub fn local_model_path(id: &str) -> String {
    format!("local-models/{id}/")
}

/// Whether a model URL is one opened from files here (kept only in this browser's cache).
pub fn is_local_model(url: &str) -> bool {
    url.contains("/local-models/") || url.starts_with("local-models/")
}

/// A web address as a consent question shows it, so that it cannot pass for another site: the
/// site's name on its own, in ASCII (an internationalised look-alike such as `һuggingface.co`
/// shows as `xn--uggingface-...`, and is said to be one), then the whole address, serialised as
/// the URL standard does (every non-ASCII character, including those that reorder or hide text,
/// percent-encoded).
pub fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => {
            let host = parsed.host_str().unwrap_or("(no host)").to_string();
            let lookalike = host.split('.').any(|label| label.starts_with("xn--"));
            let warning = if lookalike {
                " (an internationalised name: check it is the site you mean)"
            } else {
                ""
            };
            format!("the site {host}{warning}, at {}", parsed.as_str())
        }
        Err(_) => {
            let escaped: String = url
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() {
                        c.to_string()
                    } else {
                        format!("\\u{{{:x}}}", c as u32)
                    }
                })
                .collect();
            format!("an address that is not valid ({escaped})")
        }
    }
}

/// One file's download as it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadProgress {
    pub file: String,
    pub loaded: u64,
    /// From `content-length`, when the server sends it.
    pub total: Option<u64>,
    pub elapsed_seconds: f64,
}

impl DownloadProgress {
    pub fn fraction(&self) -> Option<f64> {
        self.total
            .filter(|&t| t > 0)
            .map(|t| (self.loaded as f64 / t as f64).min(1.0))
    }

    /// `model.safetensors: 120.5 of 497.8 MB, about 34 s left`.
    pub fn describe(&self) -> String {
        match self.total {
            Some(total) if total > 0 => {
                let rate = self.loaded as f64 / self.elapsed_seconds.max(1e-3);
                let left = if self.loaded > 0 && self.elapsed_seconds > 0.5 {
                    format!(
                        ", about {} left",
                        duration(total.saturating_sub(self.loaded) as f64 / rate.max(1.0))
                    )
                } else {
                    String::new()
                };
                format!(
                    "{}: {} of {}{left}",
                    self.file,
                    bytes(self.loaded),
                    bytes(total)
                )
            }
            _ => format!("{}: {}", self.file, bytes(self.loaded)),
        }
    }
}

pub use crate::memory::size_text as bytes;

fn duration(seconds: f64) -> String {
    if seconds >= 90.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.0} s", seconds.max(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_as_a_person_expects() {
        let p = DownloadProgress {
            file: "model.safetensors".into(),
            loaded: 100_000_000,
            total: Some(500_000_000),
            elapsed_seconds: 10.0,
        };
        assert_eq!(p.fraction(), Some(0.2));
        assert_eq!(
            p.describe(),
            "model.safetensors: 100.0 MB of 500.0 MB, about 40 s left"
        );
        let unknown = DownloadProgress {
            total: None,
            ..p.clone()
        };
        assert_eq!(unknown.fraction(), None);
        assert_eq!(unknown.describe(), "model.safetensors: 100.0 MB");
    }

    #[test]
    fn consent_shows_the_real_site_and_nothing_that_reorders_text() {
        assert_eq!(
            shown_url("https://huggingface.co/gpt2/resolve/main/"),
            "the site huggingface.co, at https://huggingface.co/gpt2/resolve/main/"
        );
        // Cyrillic h: a look-alike host shows as punycode and is called out.
        let shown = shown_url("https://\u{4bb}uggingface.co/gpt2/");
        assert!(shown.contains("xn--"), "{shown}");
        assert!(shown.contains("check it is the site you mean"), "{shown}");
        // A right-to-left override in the path cannot flip what is shown after it.
        let shown = shown_url("https://evil.example/\u{202e}oc.ecafgniggu\u{202d}/x");
        assert!(shown.is_ascii(), "{shown}");
        assert!(shown.starts_with("the site evil.example,"), "{shown}");
        // A user name in front of the host does not pass for the host.
        let shown = shown_url("https://huggingface.co@evil.example/x");
        assert!(shown.starts_with("the site evil.example,"), "{shown}");
        assert!(shown_url("not a url \u{202e}").is_ascii());
    }

    #[test]
    fn hub_repositories_are_checked() {
        assert!(is_hub_repo("gpt2"));
        assert!(is_hub_repo("openai-community/gpt2"));
        assert!(is_hub_repo("HuggingFaceTB/SmolLM2-135M"));
        for bad in [
            "",
            "a/b/c",
            "../x",
            "a/.git",
            "a b",
            "evil.com/x?y",
            "a//b",
            "x/<b>",
        ] {
            assert!(!is_hub_repo(bad), "{bad}");
        }
        assert_eq!(
            hub_model_url("https://huggingface.co/", "gpt2"),
            "https://huggingface.co/gpt2/resolve/main/"
        );
    }
}
