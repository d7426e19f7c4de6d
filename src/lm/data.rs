//! The language model's data: TinyTales stories as one token stream and random training windows.

use crate::error::{Result, SaeplayError};
use crate::rng::SplitMix64;
use crate::tokenizer::{END_OF_TEXT, TextTokenizer};

/// TinyTales stories as one token stream, each story followed by `<|endoftext|>`.
pub fn tokenize_stories(tokenizer: &TextTokenizer, stories: &[String]) -> Result<Vec<u32>> {
    let eos = tokenizer.id_of(END_OF_TEXT).ok_or_else(|| {
        SaeplayError::Tokenizer(format!("the tokenizer has no {END_OF_TEXT} token"))
    })?;
    let mut tokens = vec![eos];
    for story in stories {
        tokens.extend(tokenizer.encode(story)?.ids);
        tokens.push(eos);
    }
    Ok(tokens)
}

/// Random windows of `length + 1` tokens from a stream; refused in words when the stream is not
/// longer than one window (a short corpus, or a resumed run's recipe with a longer context).
pub fn sample_rows(
    tokens: &[u32],
    rows: usize,
    length: usize,
    rng: &mut SplitMix64,
) -> Result<Vec<Vec<u32>>> {
    let window = length.checked_add(1);
    let span = window
        .and_then(|w| tokens.len().checked_sub(w))
        .filter(|&s| s > 0);
    let (Some(window), Some(span)) = (window, span) else {
        return Err(SaeplayError::InvalidSetting(format!(
            "the text is {} tokens long, too short for a window of {length} tokens and the one after; use more text or a shorter context",
            tokens.len()
        )));
    };
    Ok((0..rows)
        .map(|_| {
            let start = (rng.next_u64() % span as u64) as usize;
            tokens[start..start + window].to_vec()
        })
        .collect())
}
