//! Tokenisation through the `tokenizers` crate, loaded from `tokenizer.json` bytes (the page has
//! no filesystem). Offsets are byte ranges into the encoded text, kept so that views can shade
//! text token by token.

pub mod gguf;
pub mod train;

pub use train::train_tokenizer;

use crate::error::{Result, SaeplayError};

/// GPT-2's end-of-text token: it separates stories in training and starts sampled ones.
pub const END_OF_TEXT: &str = "<|endoftext|>";

#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    /// Each token's text, decoded on first use: feature cards show tens of thousands of tokens,
    /// and a decode through the tokenizer's pipeline costs microseconds each.
    texts: std::sync::Arc<Vec<std::sync::OnceLock<String>>>,
}

/// A text split into tokens; `offsets[i]` is the byte range of token i in `text`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub offsets: Vec<(usize, usize)>,
}

impl Encoded {
    /// The text of each token, as it stands in the source (empty for a token that shares its
    /// bytes with its neighbour, as a split multi-byte character can).
    pub fn pieces<'t>(&self, text: &'t str) -> Vec<&'t str> {
        self.offsets
            .iter()
            .map(|&(start, end)| text.get(start..end).unwrap_or(""))
            .collect()
    }
}

impl TextTokenizer {
    /// Read a `tokenizer.json`. Its padding and truncation settings are dropped: the engine
    /// makes its own windows, and a file's padding could make one encode allocate gigabytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        // Parsed to a JSON value first: the tokenizers crate panics (expect) on some malformed
        // streams while it deserialises, and a panic would take the page down.
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|error| SaeplayError::Tokenizer(format!("not valid JSON: {error}")))?;
        if uses_precompiled_normalizer(&value) {
            // Its loader panics on a damaged charsmap; SentencePiece conversions (T5, XLM-R)
            // are not among the models saeplay runs.
            return Err(SaeplayError::Tokenizer(
                "its normalizer is a SentencePiece `Precompiled` charsmap, which saeplay does not read"
                    .into(),
            ));
        }
        let mut inner: tokenizers::Tokenizer = serde_json::from_value(value)
            .map_err(|error| SaeplayError::Tokenizer(error.to_string()))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|error| SaeplayError::Tokenizer(error.to_string()))?;
        let texts = (0..inner.get_vocab_size(true))
            .map(|_| std::sync::OnceLock::new())
            .collect();
        Ok(Self {
            inner,
            texts: std::sync::Arc::new(texts),
        })
    }

    /// Vocabulary size including added (special) tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let encoding = self.inner.encode(text, false).map_err(|error| {
            SaeplayError::Tokenizer(format!("could not encode the text: {error}"))
        })?;
        Ok(Encoded {
            ids: encoding.get_ids().to_vec(),
            offsets: encoding.get_offsets().to_vec(),
        })
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|error| SaeplayError::Tokenizer(format!("could not decode tokens: {error}")))
    }

    /// How one token reads on its own (for prediction lists).
    pub fn token_text(&self, id: u32) -> String {
        let decode = || self.decode(&[id]).unwrap_or_else(|_| format!("<{id}>"));
        match self.texts.get(id as usize) {
            Some(text) => text.get_or_init(decode).clone(),
            None => decode(),
        }
    }

    pub fn id_of(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

/// GPT-2's byte-to-character table: printable bytes map to themselves, the rest to U+0100 on.
/// Returned in GPT-2's vocabulary order.
pub fn gpt2_byte_alphabet() -> Vec<(u8, char)> {
    let mut printable: Vec<u8> = (b'!'..=b'~').collect();
    printable.extend(0xA1..=0xAC);
    printable.extend(0xAE..=0xFF);
    let mut table: Vec<(u8, char)> = printable.iter().map(|&b| (b, char::from(b))).collect();
    let mut next = 256u32;
    for byte in 0..=255u8 {
        if !printable.contains(&byte) {
            table.push((byte, char::from_u32(next).expect("valid code point")));
            next += 1;
        }
    }
    table
}

/// A byte-level BPE `tokenizer.json` in GPT-2's layout with the 256 byte tokens, the given
/// merges (pairs of vocabulary strings, each merge adding one token) and `<|endoftext|>` last.
/// Anything a person types still encodes.
pub fn byte_level_bpe_json(merges: &[(String, String)]) -> String {
    let mut vocab = serde_json::Map::new();
    for (id, (_, ch)) in gpt2_byte_alphabet().into_iter().enumerate() {
        vocab.insert(ch.to_string(), id.into());
    }
    for (a, b) in merges {
        let id = vocab.len();
        vocab.insert(format!("{a}{b}"), id.into());
    }
    let eos_id = vocab.len();
    let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{"id": eos_id, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": true, "special": true}],
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
                  "vocab": vocab, "merges": merges.iter().map(|(a, b)| format!("{a} {b}")).collect::<Vec<_>>()}
    });
    serde_json::to_string(&json).expect("json serialises")
}

/// Whether any part of a tokenizer.json is a `Precompiled` normalizer.
fn uses_precompiled_normalizer(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            map.get("type").and_then(serde_json::Value::as_str) == Some("Precompiled")
                || map.values().any(uses_precompiled_normalizer)
        }
        serde_json::Value::Array(items) => items.iter().any(uses_precompiled_normalizer),
        _ => false,
    }
}
