//! Training a GPT-2-style byte-level BPE tokenizer on text (the built-in model's tokenizer).

use super::END_OF_TEXT;
use crate::error::{Result, SaeplayError};

/// Train a byte-level BPE tokenizer on text, GPT-2 style, with `<|endoftext|>` as a special token.
pub fn train_tokenizer(texts: &[String], vocab_size: usize) -> Result<String> {
    use tokenizers::models::TrainerWrapper;
    use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{AddedToken, Tokenizer};

    let byte_level = ByteLevel::new(false, true, true);
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(byte_level));
    tokenizer.with_post_processor(Some(byte_level));
    tokenizer.with_decoder(Some(byte_level));
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    tokenizer
        .train(&mut trainer, texts.iter())
        .map_err(|e| SaeplayError::Tokenizer(format!("training failed: {e}")))?;
    tokenizer
        .to_string(false)
        .map_err(|e| SaeplayError::Tokenizer(format!("could not save: {e}")))
}
