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

/// Random windows of `length + 1` tokens from a stream.
pub fn sample_rows(
    tokens: &[u32],
    rows: usize,
    length: usize,
    rng: &mut SplitMix64,
) -> Vec<Vec<u32>> {
    let span = tokens.len() - length - 1;
    (0..rows)
        .map(|_| {
            let start = (rng.next_u64() % span as u64) as usize;
            tokens[start..start + length + 1].to_vec()
        })
        .collect()
}
