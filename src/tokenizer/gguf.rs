//! The Hugging Face `tokenizer.json` that a GGUF file's `tokenizer.ggml.*` metadata describes.
//!
//! A GGUF carries no `tokenizer.json`: llama.cpp stores the vocabulary, the merges, each token's
//! type and the special ids, and names the way text is split before the merges
//! (`tokenizer.ggml.pre`). For byte-level BPE vocabularies (`tokenizer.ggml.model` = "gpt2") this
//! rebuilds the same tokenizer as transformers' GGUF reader (`integrations/gguf`), with the split
//! llama.cpp uses for each `pre` (llama-vocab.cpp), so that ids match what llama.cpp produces:
//!
//! | `pre` | pre-tokenizer |
//! | --- | --- |
//! | absent, "default", "gpt-2", "phi-2", "mpt", "olmo", "jais", "gigachat" | ByteLevel with GPT-2's regex |
//! | "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b" | Digits (one per digit), then ByteLevel with GPT-2's regex |
//! | "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"; "dbrx", "smaug-bpe" | Split on Llama 3's regex, then ByteLevel without a regex |
//! | "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2" | Split on Qwen2's regex, then ByteLevel without a regex |
//!
//! Llama 3's family also takes a whole word that is itself a token before trying merges
//! (llama.cpp's `ignore_merges`, BPE's `ignore_merges` here), as Meta's own `tokenizer.json` does.
//! A missing `pre` is read as GPT-2's split, as transformers reads it (llama.cpp falls back to a
//! split of its own there and warns that generation will be degraded).
//!
//! SentencePiece vocabularies (`tokenizer.ggml.model` = "llama": Llama 2, TinyLlama, Mistral
//! 7B v0.1) carry scores instead of merges. llama.cpp's SPM tokenizer merges, again and again,
//! the adjacent pair whose joined text is the best-scored token; here that becomes BPE with
//! merges ranked by the joined token's score (every split of a token into two tokens, as
//! transformers' `SentencePieceExtractor` lists them), a space prefix and `▁` for spaces
//! (normalizers, as transformers' legacy Llama tokenizer has them), and byte fallback to the `<0xNN>` tokens, as transformers' GGUF reader builds it.
//!
//! Tokens of type CONTROL (3) become special added tokens and USER_DEFINED (4) plain added tokens,
//! matched whole in the text as llama.cpp matches them. A BOS is added by the post-processor only
//! where the file asks for it (`tokenizer.ggml.add_bos_token`).

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

/// What a GGUF file's `tokenizer.ggml.*` metadata says.
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE) is the one read here.
    pub model: String,
    /// `tokenizer.ggml.pre`, the way text is split before the merges.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`, in id order.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`, one per token: 1 normal, 2 unknown, 3 control,
    /// 4 user-defined, 5 unused, 6 byte.
    pub token_types: Option<Vec<i64>>,
    /// `tokenizer.ggml.merges`, each "left right", best first (byte-level BPE).
    pub merges: Vec<String>,
    /// `tokenizer.ggml.scores`, one per token (SentencePiece: higher merges first).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece; llama.cpp's default is true).
    pub add_space_prefix: bool,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    /// `tokenizer.ggml.add_bos_token` (false when the file does not say; llama.cpp itself
    /// defaults it to true for Llama 3's family).
    pub add_bos: bool,
}

/// llama.cpp's token type for control tokens such as `<|im_start|>`.
const TOKEN_CONTROL: i64 = 3;
/// llama.cpp's token type for added tokens that are not special, such as `<think>`.
const TOKEN_USER_DEFINED: i64 = 4;
/// llama.cpp's token type for ordinary tokens.
const TOKEN_NORMAL: i64 = 1;
/// SentencePiece's space.
const SPACE_MARK: &str = "\u{2581}";

/// Llama 3's split, as llama.cpp spells it (case spelled out instead of `(?i:...)`).
const LLAMA3_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split: Llama 3's with one digit at a time.
const QWEN2_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a `pre` value splits text.
enum Split {
    /// GPT-2's regex, inside ByteLevel.
    Gpt2,
    /// Each digit on its own, then GPT-2's regex.
    DigitsThenGpt2,
    /// A regex of its own, then ByteLevel without one.
    Regex(&'static str),
}

/// The split for a `pre` value, and whether whole words that are tokens skip the merges.
fn split_for(pre: Option<&str>) -> Option<(Split, bool)> {
    Some(match pre.filter(|p| !p.is_empty()).unwrap_or("default") {
        "default" | "gpt-2" | "phi-2" | "mpt" | "olmo" | "jais" | "gigachat" => {
            (Split::Gpt2, false)
        }
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            (Split::DigitsThenGpt2, false)
        }
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" => (Split::Regex(LLAMA3_SPLIT), true),
        "dbrx" | "smaug-bpe" => (Split::Regex(LLAMA3_SPLIT), false),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" | "stablelm2" => {
            (Split::Regex(QWEN2_SPLIT), false)
        }
        _ => return None,
    })
}

fn byte_level(use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

fn pre_tokenizer_json(split: &Split) -> Value {
    match split {
        Split::Gpt2 => byte_level(true),
        Split::DigitsThenGpt2 => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            byte_level(true)
        ]}),
        Split::Regex(pattern) => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
            byte_level(false)
        ]}),
    }
}

/// Why a tokenizer of another kind cannot be read.
fn refuse_model(model: &str) -> String {
    let kind = match model {
        "bert" => "a WordPiece ('bert') vocabulary",
        "t5" => "a Unigram ('t5') vocabulary",
        "rwkv" => "an RWKV ('rwkv') vocabulary",
        "no_vocab" | "none" => {
            return "this GGUF has no tokenizer (its tokenizer.ggml.model is 'none'); the model can still run on token ids".into();
        }
        other => {
            return format!(
                "this GGUF's tokenizer is of a kind saeplay does not know ('{other}'); the model can still run on token ids"
            );
        }
    };
    format!(
        "this GGUF's tokenizer is {kind}, which saeplay cannot read yet; the model can still run on token ids"
    )
}

/// The `tokenizer.json` for a GGUF's byte-level BPE vocabulary, or a plain sentence saying why
/// there is none.
pub fn tokenizer_json(vocab: &GgufVocab) -> Result<String, String> {
    match vocab.model.as_str() {
        "gpt2" => byte_level_json(vocab),
        "llama" => sentencepiece_json(vocab),
        other => Err(refuse_model(other)),
    }
}

/// Checks that hold for every kind of vocabulary: a token count ids can number, one type per
/// token, special ids inside the vocabulary.
fn check_vocab(vocab: &GgufVocab) -> Result<(), String> {
    let n = vocab.tokens.len();
    if n == 0 {
        return Err("this GGUF's tokenizer has no tokens (tokenizer.ggml.tokens is empty)".into());
    }
    if u32::try_from(n).is_err() {
        return Err(format!(
            "this GGUF's tokenizer has {n} tokens, more than token ids can number"
        ));
    }
    if let Some(types) = &vocab.token_types
        && types.len() != n
    {
        return Err(format!(
            "this GGUF's tokenizer gives {} token types (tokenizer.ggml.token_type) for {n} tokens",
            types.len()
        ));
    }
    for (key, id) in [
        ("bos_token_id", vocab.bos),
        ("eos_token_id", vocab.eos),
        ("unknown_token_id", vocab.unk),
        ("padding_token_id", vocab.pad),
    ] {
        if let Some(id) = id
            && id as usize >= n
        {
            return Err(format!(
                "this GGUF's tokenizer.ggml.{key} is {id}, but the vocabulary has only {n} tokens"
            ));
        }
    }
    Ok(())
}

/// The post-processor that puts the BOS token before each text, where the file asks for it.
fn bos_post_processor(vocab: &GgufVocab, keys: &[String]) -> Result<Value, String> {
    if !vocab.add_bos {
        return Ok(Value::Null);
    }
    let bos = vocab.bos.ok_or_else(|| {
        "this GGUF asks for a BOS token before each text (tokenizer.ggml.add_bos_token) but names none (tokenizer.ggml.bos_token_id)".to_string()
    })?;
    let bos_text = &keys[bos as usize];
    Ok(json!({
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": bos_text, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": bos_text, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": bos_text, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {bos_text.as_str(): {"id": bos_text, "ids": [bos], "tokens": [bos_text]}}
    }))
}

/// An added token's entry: CONTROL tokens are special, USER_DEFINED ones are not.
fn added_token(id: usize, content: &str, kind: i64) -> Value {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false,
           "rstrip": false, "normalized": false, "special": kind == TOKEN_CONTROL})
}

fn byte_level_json(vocab: &GgufVocab) -> Result<String, String> {
    let pre = vocab.pre.as_deref();
    let (split, ignore_merges) = split_for(pre).ok_or_else(|| {
        format!(
            "this GGUF's tokenizer splits text the '{}' way (tokenizer.ggml.pre), which saeplay does not know yet; the model can still run on token ids",
            pre.unwrap_or_default()
        )
    })?;
    check_vocab(vocab)?;
    let n = vocab.tokens.len();

    // Byte-level vocabularies spell every byte as one character of GPT-2's table; a token written
    // otherwise is spelled in that table, as transformers does. Added tokens keep their text: they
    // are matched whole in the input, as llama.cpp matches them.
    let table: HashMap<u8, char> = super::gpt2_byte_alphabet().into_iter().collect();
    let spelled: HashSet<char> = table.values().copied().collect();
    let type_of = |id: usize| vocab.token_types.as_ref().map_or(1, |types| types[id]);
    let mut ids: HashMap<String, usize> = HashMap::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut added = Vec::new();
    for (id, token) in vocab.tokens.iter().enumerate() {
        let kind = type_of(id);
        let is_added = kind == TOKEN_CONTROL || kind == TOKEN_USER_DEFINED;
        let key = if token.is_empty() {
            // llama.cpp's name for an empty token.
            format!("[EMPTY_{id}]")
        } else if is_added || token.chars().all(|c| spelled.contains(&c)) {
            token.clone()
        } else {
            token.bytes().map(|b| table[&b]).collect()
        };
        if let Some(first) = ids.insert(key.clone(), id) {
            return Err(format!(
                "this GGUF's tokenizer lists the token {key:?} twice (ids {first} and {id})"
            ));
        }
        if is_added {
            added.push(added_token(id, &key, kind));
        }
        keys.push(key);
    }

    let mut merges = Vec::with_capacity(vocab.merges.len());
    for (rank, merge) in vocab.merges.iter().enumerate() {
        let mut parts = merge.split(' ');
        let (Some(left), Some(right), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "this GGUF's merge {rank} ({merge:?}) is not two tokens separated by one space"
            ));
        };
        if left.is_empty() || right.is_empty() {
            return Err(format!(
                "this GGUF's merge {rank} ({merge:?}) is not two tokens separated by one space"
            ));
        }
        let joined = format!("{left}{right}");
        if let Some(missing) = [left, right, joined.as_str()]
            .into_iter()
            .find(|token| !ids.contains_key(*token))
        {
            return Err(format!(
                "this GGUF's merge {rank} ({merge:?}) needs the token {missing:?}, which its vocabulary lacks"
            ));
        }
        merges.push(json!([left, right]));
    }

    let post_processor = bos_post_processor(vocab, &keys)?;

    let model = json!({"type": "BPE", "dropout": null, "unk_token": null,
                       "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": false,
                       "byte_fallback": false, "ignore_merges": ignore_merges});
    let pipeline = json!({
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer_json(&split),
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}
    });
    Ok(assemble(pipeline, model, keys, merges, added))
}

/// The whole `tokenizer.json`: `pipeline` (normalizer, pre-tokenizer, post-processor, decoder),
/// the `added` tokens, and the BPE `model` with `keys` in id order and `merges` best first.
fn assemble(
    mut pipeline: Value,
    mut model: Value,
    keys: Vec<String>,
    merges: Vec<Value>,
    added: Vec<Value>,
) -> String {
    let vocab: serde_json::Map<String, Value> = keys
        .into_iter()
        .enumerate()
        .map(|(id, key)| (key, json!(id)))
        .collect();
    // Moved in rather than interpolated: json! would copy the whole vocabulary.
    model["vocab"] = Value::Object(vocab);
    model["merges"] = Value::Array(merges);
    pipeline["version"] = json!("1.0");
    pipeline["truncation"] = Value::Null;
    pipeline["padding"] = Value::Null;
    pipeline["added_tokens"] = Value::Array(added);
    pipeline["model"] = model;
    serde_json::to_string(&pipeline).expect("json serialises")
}

/// The `tokenizer.json` for a SentencePiece vocabulary (see the module's note).
fn sentencepiece_json(vocab: &GgufVocab) -> Result<String, String> {
    check_vocab(vocab)?;
    let n = vocab.tokens.len();
    let scores = vocab.scores.as_ref().ok_or_else(|| {
        "this GGUF's SentencePiece tokenizer has no scores (tokenizer.ggml.scores), which its merges come from".to_string()
    })?;
    if scores.len() != n {
        return Err(format!(
            "this GGUF's tokenizer gives {} scores (tokenizer.ggml.scores) for {n} tokens",
            scores.len()
        ));
    }
    let type_of = |id: usize| {
        vocab
            .token_types
            .as_ref()
            .map_or(TOKEN_NORMAL, |types| types[id])
    };
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(n);
    let mut added = Vec::new();
    for (id, token) in vocab.tokens.iter().enumerate() {
        if let Some(first) = ids.insert(token.as_str(), id) {
            return Err(format!(
                "this GGUF's tokenizer lists the token {token:?} twice (ids {first} and {id})"
            ));
        }
        let kind = type_of(id);
        if kind == TOKEN_CONTROL || kind == TOKEN_USER_DEFINED {
            added.push(added_token(id, token, kind));
        }
    }
    // Every way to write an ordinary token as two tokens, ranked by that token's score (best
    // first; ties in id order, as a stable sort of transformers' list leaves them).
    let mut merges: Vec<(f32, usize, usize, usize)> = Vec::new();
    for (id, token) in vocab.tokens.iter().enumerate() {
        if type_of(id) != TOKEN_NORMAL || !scores[id].is_finite() {
            continue;
        }
        for (cut, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(cut);
            if let (Some(&l), Some(&r)) = (ids.get(left), ids.get(right)) {
                merges.push((scores[id], id, l, r));
            }
        }
    }
    merges.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then((a.2, a.3).cmp(&(b.2, b.3)))
    });
    let merges: Vec<Value> = merges
        .into_iter()
        .map(|(_, _, l, r)| json!([vocab.tokens[l], vocab.tokens[r]]))
        .collect();
    let unk = vocab
        .unk
        .map(|id| vocab.tokens[id as usize].clone())
        .or_else(|| ids.contains_key("<unk>").then(|| "<unk>".to_string()));
    let keys: Vec<String> = vocab.tokens.clone();
    let post_processor = bos_post_processor(vocab, &keys)?;
    let model = json!({"type": "BPE", "dropout": null, "unk_token": unk,
                       "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
                       "byte_fallback": true, "ignore_merges": false});
    // Normalised rather than pre-tokenised (Metaspace): llama.cpp puts a space before every piece
    // of text between added tokens, even one that starts with a space, and so does a normalizer,
    // which runs on each piece.
    let replace_spaces =
        json!({"type": "Replace", "pattern": {"String": " "}, "content": SPACE_MARK});
    let normalizer = if vocab.add_space_prefix {
        json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SPACE_MARK}, replace_spaces]})
    } else {
        replace_spaces
    };
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": SPACE_MARK}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if vocab.add_space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let pipeline = json!({
        "normalizer": normalizer,
        "pre_tokenizer": null,
        "post_processor": post_processor,
        "decoder": {"type": "Sequence", "decoders": decoders}
    });
    Ok(assemble(pipeline, model, keys, merges, added))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    /// Seven byte-level tokens, three merged ones, `abc` (a whole token no merge reaches), a
    /// control token and a user-defined one:
    ///
    /// 0 `<|end|>` (control), 1 a, 2 b, 3 c, 4 Ġ (space), 5 1, 6 2, 7 !, 8 ab, 9 Ġab, 10 12, 11 abc,
    /// 12 `<think>` (user-defined); merges "a b", "Ġ ab", "1 2".
    fn tiny(pre: Option<&str>) -> GgufVocab {
        let tokens = [
            "<|end|>", "a", "b", "c", "Ġ", "1", "2", "!", "ab", "Ġab", "12", "abc", "<think>",
        ];
        let mut types = vec![1; tokens.len()];
        types[0] = TOKEN_CONTROL;
        types[12] = TOKEN_USER_DEFINED;
        GgufVocab {
            model: "gpt2".into(),
            pre: pre.map(String::from),
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            token_types: Some(types),
            merges: vec!["a b".into(), "Ġ ab".into(), "1 2".into()],
            scores: None,
            add_space_prefix: false,
            bos: Some(0),
            eos: Some(0),
            unk: None,
            pad: None,
            add_bos: false,
        }
    }

    const TEXT: &str = "abc ab 12!<think><|end|>";

    fn ids(vocab: &GgufVocab, text: &str) -> Vec<u32> {
        let json = tokenizer_json(vocab).expect("a tokenizer");
        let tokenizer = tokenizers::Tokenizer::from_str(&json).expect("tokenizer.json loads");
        tokenizer
            .encode(text, false)
            .expect("encodes")
            .get_ids()
            .to_vec()
    }

    #[test]
    fn gpt2_split_merges_digits_and_keeps_added_tokens_whole() {
        // "abc" | " ab" | " 12" | "!": a b c -> ab c; Ġ a b -> Ġ ab -> Ġab; Ġ 1 2 -> Ġ 12.
        let expected = vec![8, 3, 9, 4, 10, 7, 12, 0];
        assert_eq!(ids(&tiny(None), TEXT), expected);
        assert_eq!(ids(&tiny(Some("gpt-2")), TEXT), expected);
        assert_eq!(ids(&tiny(Some("default")), TEXT), expected);
    }

    #[test]
    fn smollm_splits_every_digit() {
        // "abc ab " | "1" | "2" | "!": the trailing space is Ġ alone and "1 2" never merges.
        assert_eq!(
            ids(&tiny(Some("smollm")), TEXT),
            vec![8, 3, 9, 4, 5, 6, 7, 12, 0]
        );
    }

    #[test]
    fn llama3_takes_whole_words_that_are_tokens() {
        // "abc" | " ab" | " " | "12" | "!": abc and 12 are tokens, so no merges are tried.
        assert_eq!(
            ids(&tiny(Some("llama-bpe")), TEXT),
            vec![11, 9, 4, 10, 7, 12, 0]
        );
        // dbrx splits the same way but merges as usual.
        assert_eq!(
            ids(&tiny(Some("dbrx")), TEXT),
            vec![8, 3, 9, 4, 10, 7, 12, 0]
        );
    }

    #[test]
    fn qwen2_splits_digits_and_merges() {
        assert_eq!(
            ids(&tiny(Some("qwen2")), TEXT),
            vec![8, 3, 9, 4, 5, 6, 7, 12, 0]
        );
    }

    #[test]
    fn loads_through_the_engine_tokenizer_and_decodes() {
        let json = tokenizer_json(&tiny(Some("smollm"))).unwrap();
        let tokenizer = super::super::TextTokenizer::from_bytes(json.as_bytes()).unwrap();
        assert_eq!(tokenizer.vocab_size(), 13);
        let encoded = tokenizer.encode("ab abc").unwrap();
        assert_eq!(encoded.ids, vec![8, 9, 3]);
        assert_eq!(tokenizer.decode(&[8, 9, 3, 4, 5, 6]).unwrap(), "ab abc 12");
        assert_eq!(tokenizer.id_of("<|end|>"), Some(0));
    }

    #[test]
    fn adds_bos_only_when_asked() {
        let mut vocab = tiny(Some("smollm"));
        vocab.add_bos = true;
        let json = tokenizer_json(&vocab).unwrap();
        let tokenizer = tokenizers::Tokenizer::from_str(&json).unwrap();
        assert_eq!(tokenizer.encode("ab", true).unwrap().get_ids(), &[0, 8]);
        assert_eq!(tokenizer.encode("ab", false).unwrap().get_ids(), &[8]);
        let plain =
            tokenizers::Tokenizer::from_str(&tokenizer_json(&tiny(Some("smollm"))).unwrap())
                .unwrap();
        assert_eq!(plain.encode("ab", true).unwrap().get_ids(), &[8]);
        vocab.bos = None;
        assert!(tokenizer_json(&vocab).unwrap_err().contains("BOS"));
    }

    #[test]
    fn respells_tokens_written_outside_the_byte_table() {
        // " c" written with a real space is spelled in GPT-2's table (Ġc), the way merges name it;
        // an added token keeps its text.
        let mut vocab = tiny(None);
        vocab.tokens[3] = " c".into();
        vocab.tokens[12] = "< think >".into();
        let json = tokenizer_json(&vocab).unwrap();
        let tokenizer = tokenizers::Tokenizer::from_str(&json).unwrap();
        assert_eq!(tokenizer.token_to_id("Ġc"), Some(3));
        assert_eq!(tokenizer.token_to_id(" c"), None);
        assert_eq!(
            tokenizer.encode("ab< think >", false).unwrap().get_ids(),
            &[8, 12]
        );
        assert_eq!(
            tokenizer.decode(&[8, 3, 12], false).unwrap(),
            "ab c< think >"
        );
    }

    #[test]
    fn refuses_other_vocabularies_and_unknown_splits() {
        let mut vocab = tiny(None);
        vocab.model = "llama".into();
        let error = tokenizer_json(&vocab).unwrap_err();
        assert!(error.contains("has no scores"), "{error}");
        vocab.scores = Some(vec![0.0; 3]);
        let error = tokenizer_json(&vocab).unwrap_err();
        assert!(error.contains("3 scores"), "{error}");
        vocab.model = "bert".into();
        assert!(tokenizer_json(&vocab).unwrap_err().contains("WordPiece"));
        vocab.model = "t5".into();
        assert!(tokenizer_json(&vocab).unwrap_err().contains("Unigram"));
        vocab.model = "mystery".into();
        assert!(tokenizer_json(&vocab).unwrap_err().contains("'mystery'"));
        let error = tokenizer_json(&tiny(Some("tekken"))).unwrap_err();
        assert!(error.contains("'tekken'"), "{error}");
    }

    #[test]
    fn refuses_inconsistent_metadata() {
        let mut vocab = tiny(None);
        vocab.token_types = Some(vec![1; 5]);
        assert!(
            tokenizer_json(&vocab)
                .unwrap_err()
                .contains("5 token types")
        );

        let mut vocab = tiny(None);
        vocab.eos = Some(13);
        let error = tokenizer_json(&vocab).unwrap_err();
        assert!(error.contains("eos_token_id is 13"), "{error}");

        for merge in ["ab", "a  b", "a b c", " a"] {
            let mut vocab = tiny(None);
            vocab.merges.push(merge.into());
            let error = tokenizer_json(&vocab).unwrap_err();
            assert!(
                error.contains("two tokens separated by one space"),
                "{merge:?}: {error}"
            );
        }
        let mut vocab = tiny(None);
        vocab.merges.push("c !".into());
        let error = tokenizer_json(&vocab).unwrap_err();
        assert!(error.contains("\"c!\""), "{error}");

        let mut vocab = tiny(None);
        vocab.tokens[7] = "a".into();
        assert!(tokenizer_json(&vocab).unwrap_err().contains("twice"));

        let mut vocab = tiny(None);
        vocab.tokens.clear();
        vocab.token_types = None;
        vocab.bos = None;
        vocab.eos = None;
        assert!(tokenizer_json(&vocab).unwrap_err().contains("no tokens"));
    }

    /// A small SentencePiece vocabulary: `<unk>`, `<s>`, `</s>`, the 256 byte tokens, then
    /// ordinary pieces with scores in a scrambled order (so longer is not always better).
    fn sentencepiece(add_space_prefix: bool) -> GgufVocab {
        let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
        let mut types = vec![2, TOKEN_CONTROL, TOKEN_CONTROL];
        tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
        types.extend([6; 256]);
        let pieces = [
            "▁", "h", "e", "l", "o", "w", "r", "d", "t", "a", "é", "▁h", "he", "ll", "lo", "llo",
            "▁he", "hell", "▁hell", "▁hello", "▁w", "or", "ld", "▁wor", "▁world", "▁t", "at", "▁a",
            "▁at", "▁▁", "el", "▁l", "ow", "low",
        ];
        let first = tokens.len();
        tokens.extend(pieces.iter().map(|p| p.replace('▁', SPACE_MARK)));
        types.extend(vec![TOKEN_NORMAL; pieces.len()]);
        let mut scores = vec![0.0f32; first];
        scores.extend((0..pieces.len()).map(|i| -(((i * 17 + 5) % 41) as f32) - 0.5));
        GgufVocab {
            model: "llama".into(),
            pre: None,
            tokens,
            token_types: Some(types),
            merges: Vec::new(),
            scores: Some(scores),
            add_space_prefix,
            bos: Some(1),
            eos: Some(2),
            unk: Some(0),
            pad: None,
            add_bos: false,
        }
    }

    /// llama.cpp's SPM tokenizer, written out directly: split at added tokens; before each
    /// piece of text a space (when asked), spaces as `▁`; then merge, again and again, the
    /// adjacent pair whose joined text is the best-scored ordinary token (leftmost on a tie);
    /// a symbol that is no token falls back to its bytes.
    fn spm_reference(vocab: &GgufVocab, text: &str) -> Vec<u32> {
        let types = vocab.token_types.as_ref().unwrap();
        let scores = vocab.scores.as_ref().unwrap();
        let id_of = |t: &str| vocab.tokens.iter().position(|x| x == t);
        let added: Vec<(usize, &String)> = vocab
            .tokens
            .iter()
            .enumerate()
            .filter(|(id, _)| types[*id] == TOKEN_CONTROL || types[*id] == TOKEN_USER_DEFINED)
            .collect();
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let next = (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .find_map(|i| {
                    added
                        .iter()
                        .find(|(_, t)| rest[i..].starts_with(t.as_str()))
                        .map(|&(id, t)| (i, id, t.len()))
                });
            let (fragment, special) = match next {
                Some((i, id, len)) => {
                    let fragment = &rest[..i];
                    rest = &rest[i + len..];
                    (fragment, Some(id))
                }
                None => {
                    let fragment = rest;
                    rest = "";
                    (fragment, None)
                }
            };
            if !fragment.is_empty() {
                let spaced = if vocab.add_space_prefix {
                    format!(" {fragment}")
                } else {
                    fragment.to_string()
                };
                let mut symbols: Vec<String> = spaced
                    .replace(' ', SPACE_MARK)
                    .chars()
                    .map(String::from)
                    .collect();
                loop {
                    let mut best: Option<(f32, usize)> = None;
                    for i in 0..symbols.len().saturating_sub(1) {
                        let joined = format!("{}{}", symbols[i], symbols[i + 1]);
                        if let Some(id) = id_of(&joined)
                            && types[id] == TOKEN_NORMAL
                            && best.is_none_or(|(score, _)| scores[id] > score)
                        {
                            best = Some((scores[id], i));
                        }
                    }
                    let Some((_, i)) = best else { break };
                    let right = symbols.remove(i + 1);
                    symbols[i].push_str(&right);
                }
                for symbol in symbols {
                    match id_of(&symbol) {
                        Some(id) => out.push(id as u32),
                        None => out.extend(
                            symbol
                                .bytes()
                                .map(|b| id_of(&format!("<0x{b:02X}>")).unwrap() as u32),
                        ),
                    }
                }
            }
            if let Some(id) = special {
                out.push(id as u32);
            }
        }
        out
    }

    #[test]
    fn sentencepiece_vocabularies_tokenise_as_llama_cpp_does() {
        let texts = [
            "hello world",
            "hello  world",
            "lower hello at a tall hotel",
            "héllo wörld",
            "Hello, World!",
            "<s>hello</s> world",
            "world<s>",
            "",
            "ll ll llo",
        ];
        for add_space_prefix in [true, false] {
            let vocab = sentencepiece(add_space_prefix);
            let json = tokenizer_json(&vocab).expect("a tokenizer");
            let tokenizer = tokenizers::Tokenizer::from_str(&json).expect("tokenizer.json loads");
            for text in texts {
                let ids = tokenizer.encode(text, false).unwrap().get_ids().to_vec();
                assert_eq!(
                    ids,
                    spm_reference(&vocab, text),
                    "{text:?} (space prefix {add_space_prefix})"
                );
                // Text without added tokens reads back as it was written.
                if !text.contains('<') {
                    assert_eq!(tokenizer.decode(&ids, false).unwrap(), text);
                }
            }
        }
        // The merges at work, by hand: " hello world" is ▁hello ▁world; "é" is a token, "ö"
        // falls back to its two bytes.
        let vocab = sentencepiece(true);
        let id = |t: &str| {
            vocab
                .tokens
                .iter()
                .position(|x| *x == t.replace('▁', SPACE_MARK))
                .unwrap() as u32
        };
        assert_eq!(
            spm_reference(&vocab, "hello world"),
            [id("▁hello"), id("▁world")]
        );
        let ids = spm_reference(&vocab, "wö");
        assert_eq!(&ids[ids.len() - 2..], [id("<0xC3>"), id("<0xB6>")]);
    }
}
