//! The activation store: runs the model over a corpus, captures hook points, and serves shuffled
//! batches of activation vectors for training.
//!
//! Text becomes windows of `context` tokens, each starting with `<|endoftext|>` as the BOS token
//! (SAELens's `prepend_bos`); stories (or the pasted text, cycled) are packed, separated by the
//! same token. Special-token positions can be left out of the batches: their residual stream is an
//! outlier that wastes SAE capacity. Vectors wait in a shuffle buffer so that a batch mixes many
//! windows rather than neighbouring positions of a few.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::backend::read_f32;
use crate::error::{Result, SaeplayError};
use crate::model::{HookPoint, Model};
use crate::rng::SplitMix64;
use crate::tinytales::{ConceptSet, StoryGenerator};
use crate::tokenizer::END_OF_TEXT;
use crate::tokenizer::TextTokenizer;

/// Where text comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Corpus {
    /// TinyTales stories generated on the fly from a seed (labelled with concepts).
    TinyTales { seed: u64 },
    /// A text a person pasted or uploaded; cycled when it runs out.
    Text { text: String },
    /// Text the model itself writes: sequences sampled from `<|endoftext|>` at temperature 1,
    /// the i-th from seed `seed + i`. Sampled into a [`Corpus::Text`] before it is read
    /// (`pipeline::realise_corpus`), since sampling needs the model.
    #[serde(rename = "model")]
    ModelText { seed: u64 },
}

/// One window of tokens and the concepts on each (empty outside TinyTales).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub ids: Vec<u32>,
    pub concepts: Vec<ConceptSet>,
}

/// An endless stream of windows from a corpus.
pub struct TokenStream {
    tokenizer: TextTokenizer,
    corpus: Corpus,
    bos: u32,
    stories: Option<StoryGenerator>,
    text_tokens: Vec<u32>,
    text_position: usize,
    pending: VecDeque<(u32, ConceptSet)>,
    window_len: usize,
}

impl TokenStream {
    /// Windows of `context` tokens (fewer when a pasted text is shorter than that).
    pub fn new(tokenizer: &TextTokenizer, corpus: Corpus, context: usize) -> Result<Self> {
        if context < 2 {
            return Err(SaeplayError::InvalidSetting(format!(
                "a context of {context} tokens is too short: use at least 2"
            )));
        }
        let bos = tokenizer.id_of(END_OF_TEXT).ok_or_else(|| {
            SaeplayError::Tokenizer(format!(
                "the tokenizer has no {END_OF_TEXT} token to start windows with"
            ))
        })?;
        let (stories, text_tokens, window_len) = match &corpus {
            Corpus::TinyTales { seed } => (Some(StoryGenerator::new(*seed)), Vec::new(), context),
            Corpus::Text { text } => {
                let ids = tokenizer.encode(text)?.ids;
                if ids.is_empty() {
                    return Err(SaeplayError::InvalidSetting(
                        "the text is empty: paste or upload some text to train on".into(),
                    ));
                }
                // Windows skip an end-of-text token right after their own BOS, so a text of
                // nothing else would never fill one.
                if ids.iter().all(|&id| id == bos) {
                    return Err(SaeplayError::InvalidSetting(format!(
                        "the text holds only {END_OF_TEXT} tokens: there is nothing to train on; paste or upload some text"
                    )));
                }
                let len = context.min(ids.len() + 1);
                (None, ids, len)
            }
            Corpus::ModelText { .. } => {
                return Err(SaeplayError::InvalidSetting(
                    "text the model writes must be sampled before it is read (realise_corpus)"
                        .into(),
                ));
            }
        };
        Ok(Self {
            tokenizer: tokenizer.clone(),
            corpus,
            bos,
            stories,
            text_tokens,
            text_position: 0,
            pending: VecDeque::new(),
            window_len,
        })
    }

    /// Tokens per window, BOS included.
    pub fn window_len(&self) -> usize {
        self.window_len
    }

    /// The id of the BOS / end-of-text token.
    pub fn bos(&self) -> u32 {
        self.bos
    }

    pub fn corpus(&self) -> &Corpus {
        &self.corpus
    }

    fn refill(&mut self) -> Result<()> {
        if let Some(stories) = &mut self.stories {
            let story = stories.next().expect("the story stream is endless");
            let encoded = self.tokenizer.encode(&story.text)?;
            let labels = story.token_labels(&encoded.offsets);
            self.pending.extend(encoded.ids.into_iter().zip(labels));
            self.pending.push_back((self.bos, ConceptSet::EMPTY));
        } else {
            // Cycle the text; an end-of-text token marks each wrap.
            let rest = &self.text_tokens[self.text_position..];
            self.pending
                .extend(rest.iter().map(|&id| (id, ConceptSet::EMPTY)));
            self.pending.push_back((self.bos, ConceptSet::EMPTY));
            self.text_position = 0;
        }
        Ok(())
    }

    /// The next window: BOS, then `window_len - 1` tokens of the stream.
    pub fn next_window(&mut self) -> Result<Window> {
        let mut ids = vec![self.bos];
        let mut concepts = vec![ConceptSet::EMPTY];
        while ids.len() < self.window_len {
            if self.pending.is_empty() {
                self.refill()?;
            }
            let (id, concept) = self.pending.pop_front().expect("refilled");
            // A window already starts with BOS: skip a separator right after it.
            if ids.len() == 1 && id == self.bos {
                continue;
            }
            ids.push(id);
            concepts.push(concept);
        }
        Ok(Window { ids, concepts })
    }

    /// The next `n` windows.
    pub fn windows(&mut self, n: usize) -> Result<Vec<Window>> {
        (0..n).map(|_| self.next_window()).collect()
    }
}

/// How the store runs the model and mixes vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreConfig {
    /// Tokens per window, BOS included.
    pub context: usize,
    /// Windows per model forward.
    pub windows_per_forward: usize,
    /// Vectors the shuffle buffer keeps before serving (a few batches' worth).
    pub buffer_vectors: usize,
    /// Leave out the positions of special tokens (BOS / end of text).
    pub skip_special_tokens: bool,
    pub seed: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            context: 128,
            windows_per_forward: 16,
            buffer_vectors: 16_384,
            skip_special_tokens: true,
            seed: 0,
        }
    }
}

/// Serves shuffled batches of activations at one or more hook points.
pub struct ActivationStore {
    model: Model,
    hooks: Vec<HookPoint>,
    widths: Vec<usize>,
    stream: TokenStream,
    config: StoreConfig,
    /// One row-major `[n, width]` buffer per hook; rows line up across hooks.
    buffers: Vec<Vec<f32>>,
    rng: SplitMix64,
    tokens_read: usize,
}

impl ActivationStore {
    pub fn new(
        model: &Model,
        tokenizer: &TextTokenizer,
        corpus: Corpus,
        hooks: &[HookPoint],
        config: StoreConfig,
    ) -> Result<Self> {
        if hooks.is_empty() {
            return Err(SaeplayError::InvalidSetting(
                "choose at least one hook point to capture".into(),
            ));
        }
        let max = model.dims().n_ctx;
        if config.context > max {
            return Err(SaeplayError::TooLong {
                len: config.context,
                max,
            });
        }
        if config.windows_per_forward == 0 {
            return Err(SaeplayError::InvalidSetting(
                "windows per forward must be at least 1".into(),
            ));
        }
        let stream = TokenStream::new(tokenizer, corpus, config.context)?;
        Ok(Self {
            model: model.clone(),
            widths: hooks.iter().map(|h| h.width(model.dims())).collect(),
            hooks: hooks.to_vec(),
            stream,
            rng: SplitMix64::new(config.seed ^ 0x5707_E5A1),
            buffers: vec![Vec::new(); hooks.len()],
            config,
            tokens_read: 0,
        })
    }

    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// Tokens the model has read so far.
    pub fn tokens_read(&self) -> usize {
        self.tokens_read
    }

    /// Vectors waiting in the shuffle buffer.
    pub fn buffered(&self) -> usize {
        self.buffers[0].len() / self.widths[0]
    }

    /// How many vectors `next_batch(n)` wants buffered before it draws (it runs the model until
    /// then). A caller that must yield between forwards (the page) tops up with [`Self::fill_step`].
    pub fn buffer_target(&self, n: usize) -> usize {
        self.config.buffer_vectors.max(n)
    }

    /// Run the model once, on the next windows, and buffer their vectors.
    pub async fn fill_step(&mut self) -> Result<()> {
        self.fill_once().await
    }

    /// Run the model on the next windows and append their vectors.
    async fn fill_once(&mut self) -> Result<()> {
        let (batch, _) = self.next_forward()?;
        let values = self.run_forward(&batch).await?;
        self.take_forward(&batch, values);
        Ok(())
    }

    /// The windows of the next forward (token ids), and how many of their vectors the buffer
    /// will keep: a capture can plan its forwards ahead and run them elsewhere (other workers),
    /// then hand each one's vectors to [`Self::take_forward`] in order.
    pub fn next_forward(&mut self) -> Result<(Vec<Vec<u32>>, usize)> {
        let windows = self.stream.windows(self.config.windows_per_forward)?;
        let batch: Vec<Vec<u32>> = windows.into_iter().map(|w| w.ids).collect();
        let kept = batch.iter().flatten().filter(|&&id| self.keeps(id)).count();
        Ok((batch, kept))
    }

    fn keeps(&self, id: u32) -> bool {
        !(self.config.skip_special_tokens && id == self.stream.bos())
    }

    /// The store's hook points, in the order of its buffers.
    pub fn hooks(&self) -> &[HookPoint] {
        &self.hooks
    }

    /// Run the model on `batch` here: each hook's vectors, row-major `[b * t, width]`.
    pub async fn run_forward(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let captured = self.model.capture(batch, &self.hooks)?;
        let mut out = Vec::with_capacity(self.hooks.len());
        for hook in &self.hooks {
            let Some((_, activation)) = captured.iter().find(|(h, _)| h == hook) else {
                return Err(SaeplayError::InvalidSetting(format!(
                    "`{hook}` was not captured"
                )));
            };
            out.push(read_f32(activation.clone()).await?);
        }
        Ok(out)
    }

    /// Buffer what a forward over `batch` captured (`values[h]` for hook `h`, as
    /// [`Self::run_forward`] returns it), leaving out special tokens' positions when asked.
    pub fn take_forward(&mut self, batch: &[Vec<u32>], values: Vec<Vec<f32>>) {
        let keep: Vec<bool> = batch.iter().flatten().map(|&id| self.keeps(id)).collect();
        self.tokens_read += keep.len();
        for (h, values) in values.iter().enumerate() {
            let width = self.widths[h];
            for (row, &kept) in values.chunks_exact(width).zip(&keep) {
                if kept {
                    self.buffers[h].extend_from_slice(row);
                }
            }
        }
    }

    /// The next `n` vectors per hook, each row-major `[n, width]`, drawn at random from the
    /// shuffle buffer (which is topped up first).
    pub async fn next_batch(&mut self, n: usize) -> Result<Vec<Vec<f32>>> {
        let target = self.buffer_target(n);
        let mut empty_forwards = 0;
        while self.buffered() < target {
            let before = self.buffered();
            self.fill_once().await?;
            if self.buffered() == before {
                empty_forwards += 1;
                if empty_forwards > 3 {
                    return Err(SaeplayError::EmptyCorpus);
                }
            }
        }
        Ok(self.draw(n))
    }

    /// `n` vectors per hook drawn at random from what is buffered (at least `n`; nothing is
    /// run).
    pub fn draw(&mut self, n: usize) -> Vec<Vec<f32>> {
        let mut out: Vec<Vec<f32>> = self
            .widths
            .iter()
            .map(|w| Vec::with_capacity(n * w))
            .collect();
        for _ in 0..n {
            let len = self.buffered();
            let pick = (self.rng.next_u64() % len as u64) as usize;
            for (h, &width) in self.widths.iter().enumerate() {
                let buffer = &mut self.buffers[h];
                out[h].extend_from_slice(&buffer[pick * width..(pick + 1) * width]);
                // swap_remove on rows: move the last row into the hole.
                let last = len - 1;
                if pick != last {
                    let (head, tail) = buffer.split_at_mut(last * width);
                    head[pick * width..(pick + 1) * width].copy_from_slice(&tail[..width]);
                }
                buffer.truncate(last * width);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{TinySpec, tiny_checkpoint};

    #[test]
    fn windows_start_with_bos_and_carry_concepts() {
        let files = tiny_checkpoint(&TinySpec::default());
        let host = files.parse().unwrap();
        let mut stream =
            TokenStream::new(host.tokenizer().unwrap(), Corpus::TinyTales { seed: 3 }, 32).unwrap();
        let windows = stream.windows(5).unwrap();
        for w in &windows {
            assert_eq!(w.ids.len(), 32);
            assert_eq!(w.concepts.len(), 32);
            assert_eq!(w.ids[0], stream.bos());
            assert_ne!(w.ids[1], stream.bos());
        }
        assert!(
            windows
                .iter()
                .flat_map(|w| &w.concepts)
                .any(|c| *c != ConceptSet::EMPTY)
        );
        // Deterministic from the seed.
        let mut again =
            TokenStream::new(host.tokenizer().unwrap(), Corpus::TinyTales { seed: 3 }, 32).unwrap();
        assert_eq!(again.windows(5).unwrap(), windows);
    }

    #[test]
    fn short_text_gives_short_windows_and_empty_text_is_refused() {
        let files = tiny_checkpoint(&TinySpec::default());
        let host = files.parse().unwrap();
        let corpus = Corpus::Text { text: "abc".into() };
        let mut stream = TokenStream::new(host.tokenizer().unwrap(), corpus, 64).unwrap();
        assert_eq!(stream.window_len(), 4);
        assert_eq!(stream.next_window().unwrap().ids.len(), 4);
        let empty = TokenStream::new(
            host.tokenizer().unwrap(),
            Corpus::Text { text: "".into() },
            64,
        );
        assert!(matches!(empty, Err(SaeplayError::InvalidSetting(_))));
        // Only separators: refused at once (a window could never fill).
        let separators = TokenStream::new(
            host.tokenizer().unwrap(),
            Corpus::Text {
                text: END_OF_TEXT.repeat(3),
            },
            64,
        );
        match separators {
            Err(SaeplayError::InvalidSetting(why)) => assert!(why.contains("only"), "{why}"),
            Err(other) => panic!("refused for the wrong reason: {other}"),
            Ok(_) => panic!("a text of only separators is refused"),
        }
        // One real token among them is enough.
        let mut one = TokenStream::new(
            host.tokenizer().unwrap(),
            Corpus::Text {
                text: format!("{END_OF_TEXT}a{END_OF_TEXT}"),
            },
            64,
        )
        .unwrap();
        assert!(one.windows(3).is_ok());
    }
}
