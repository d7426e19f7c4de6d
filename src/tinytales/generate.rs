//! The story generator: a seeded PRNG, a writer that records structural spans as it writes,
//! and the story plan that strings templates together.

use super::concepts::Concept;
use super::concepts::ConceptSet;
use super::labels::{Span, token_labels, word_spans};
use super::templates::{self, Arc};
use super::world::{self, Gender};
use crate::rng::{SplitMix64, finalize};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// PRNG

/// The stories' generator: the crate's SplitMix64 with the draws the templates need.
#[derive(Debug, Clone)]
pub(crate) struct Rng(SplitMix64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// True with probability `pct`%.
    pub(crate) fn chance(&mut self, pct: u32) -> bool {
        self.below(100) < pct as usize
    }

    pub(crate) fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }

    /// An index into `0..n` other than `not`.
    fn other(&mut self, n: usize, not: usize) -> usize {
        let i = self.below(n - 1);
        if i >= not { i + 1 } else { i }
    }
}

/// The seed of story `index` of the corpus (or [`StoryGenerator`]) with seed `corpus_seed`.
pub fn story_seed(corpus_seed: u64, index: u64) -> u64 {
    finalize(finalize(corpus_seed ^ 0x7469_6E79_7461_6C65) ^ index)
}

// ---------------------------------------------------------------------------------------------
// Public API

/// One generated story and its labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Story {
    /// The seed it was generated from: `generate_story(seed)` writes it again.
    pub seed: u64,
    pub text: String,
    /// Every labelled span, sorted by (start, end, concept).
    pub spans: Vec<Span>,
}

impl Story {
    /// The spans of one concept.
    pub fn spans_of(&self, concept: Concept) -> impl Iterator<Item = &Span> {
        self.spans.iter().filter(move |s| s.concept == concept)
    }

    /// The text of a span of this story.
    pub fn span_text(&self, span: &Span) -> &str {
        span.text(&self.text)
    }

    /// Per-token concepts for this story's tokenisation (see [`token_labels`]).
    pub fn token_labels(&self, offsets: &[(usize, usize)]) -> Vec<ConceptSet> {
        token_labels(&self.spans, offsets)
    }

    /// Words, counted as whitespace-separated pieces.
    pub fn word_count(&self) -> usize {
        self.text.split_whitespace().count()
    }
}

/// Writes the story with this seed. Deterministic: the same seed gives the same bytes on any
/// platform.
pub fn generate_story(seed: u64) -> Story {
    let mut g = Gen::new(seed);
    g.story();
    let Writer {
        text, mut spans, ..
    } = g.w;
    spans.extend(word_spans(&text));
    spans.sort_unstable();
    Story { seed, text, spans }
}

/// An endless stream of stories: story `i` is `generate_story(story_seed(seed, i))`.
#[derive(Debug, Clone)]
pub struct StoryGenerator {
    seed: u64,
    index: u64,
}

impl StoryGenerator {
    pub fn new(seed: u64) -> StoryGenerator {
        StoryGenerator { seed, index: 0 }
    }
}

impl Iterator for StoryGenerator {
    type Item = Story;
    fn next(&mut self) -> Option<Story> {
        let story = generate_story(story_seed(self.seed, self.index));
        self.index += 1;
        Some(story)
    }
}

/// Many stories in one text, with their labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoryCorpus {
    /// The stories joined by the separator (between stories, not after the last).
    pub text: String,
    /// Every story's spans, shifted to offsets in `text`, sorted.
    pub spans: Vec<Span>,
    /// Each story's byte range `(start, end)` in `text`.
    pub stories: Vec<(usize, usize)>,
}

impl StoryCorpus {
    fn build(seed: u64, separator: &str, mut more: impl FnMut(usize, &str) -> bool) -> StoryCorpus {
        let mut corpus = StoryCorpus {
            text: String::new(),
            spans: Vec::new(),
            stories: Vec::new(),
        };
        for story in StoryGenerator::new(seed) {
            if !more(corpus.stories.len(), &corpus.text) {
                break;
            }
            if !corpus.stories.is_empty() {
                corpus.text.push_str(separator);
            }
            let start = corpus.text.len();
            corpus.text.push_str(&story.text);
            corpus
                .spans
                .extend(story.spans.iter().map(|s| s.shifted(start)));
            corpus.stories.push((start, corpus.text.len()));
        }
        corpus
    }

    /// The text of story `i`.
    pub fn story_text(&self, i: usize) -> &str {
        let (s, e) = self.stories[i];
        &self.text[s..e]
    }
}

/// The first `n_stories` stories of the stream with this seed, joined by `separator`.
pub fn generate_corpus(seed: u64, n_stories: usize, separator: &str) -> StoryCorpus {
    StoryCorpus::build(seed, separator, |n, _| n < n_stories)
}

/// Stories of the stream with this seed, joined by `separator`, until the text holds at least
/// `min_bytes` bytes (the last story is whole, so it may hold a little more).
pub fn generate_corpus_bytes(seed: u64, min_bytes: usize, separator: &str) -> StoryCorpus {
    StoryCorpus::build(seed, separator, |_, text| text.len() < min_bytes)
}

// ---------------------------------------------------------------------------------------------
// Writer

/// Appends text, recording quotation / parenthetical / bracketed / question spans from the
/// punctuation it writes, and which character was named last.
struct Writer {
    text: String,
    spans: Vec<Span>,
    quote_start: Option<usize>,
    paren_start: Option<usize>,
    bracket_start: Option<usize>,
    /// Where the current sentence began (the start of a question span).
    sentence_start: usize,
    /// The next printable character starts a sentence.
    at_sentence_start: bool,
    sentence_no: u32,
    /// The role of the most recently named character.
    last_named: Option<usize>,
    /// For each role, the sentence it was last named or referred to in (0: never).
    mentioned_in: [u32; 3],
    /// An article waiting for the next word: Some(capitalised).
    article: Option<bool>,
    article_gap: String,
}

impl Writer {
    fn new() -> Writer {
        Writer {
            text: String::with_capacity(1024),
            spans: Vec::with_capacity(32),
            quote_start: None,
            paren_start: None,
            bracket_start: None,
            sentence_start: 0,
            at_sentence_start: true,
            sentence_no: 0,
            last_named: None,
            mentioned_in: [0; 3],
            article: None,
            article_gap: String::new(),
        }
    }

    fn push(&mut self, s: &str) {
        if let Some(cap) = self.article {
            let Some(first) = s.bytes().find(|b| !b.is_ascii_whitespace()) else {
                self.article_gap.push_str(s);
                return;
            };
            self.article = None;
            let an = matches!(first.to_ascii_lowercase(), b'a' | b'e' | b'i' | b'o' | b'u');
            self.raw(match (cap, an) {
                (false, false) => "a",
                (false, true) => "an",
                (true, false) => "A",
                (true, true) => "An",
            });
            let gap = std::mem::take(&mut self.article_gap);
            self.raw(&gap);
        }
        self.raw(s);
    }

    fn push_capitalised(&mut self, s: &str) {
        let mut buf = [0u8; 32];
        let bytes = s.as_bytes();
        if bytes.is_empty() || bytes.len() > buf.len() {
            self.push(s);
            return;
        }
        buf[..bytes.len()].copy_from_slice(bytes);
        buf[0] = buf[0].to_ascii_uppercase();
        self.push(std::str::from_utf8(&buf[..bytes.len()]).expect("ASCII"));
    }

    fn raw(&mut self, s: &str) {
        let base = self.text.len();
        for (i, b) in s.bytes().enumerate() {
            let p = base + i;
            match b {
                b'"' => match self.quote_start.take() {
                    None => {
                        self.quote_start = Some(p + 1);
                        self.at_sentence_start = true;
                    }
                    Some(start) => self.spans.push(Span::new(Concept::Quotation, start, p)),
                },
                b'(' => self.paren_start = Some(p + 1),
                b')' => {
                    let start = self
                        .paren_start
                        .take()
                        .expect("template closes an unopened (");
                    self.spans.push(Span::new(Concept::Parenthetical, start, p));
                }
                b'[' => self.bracket_start = Some(p + 1),
                b']' => {
                    let start = self
                        .bracket_start
                        .take()
                        .expect("template closes an unopened [");
                    self.spans.push(Span::new(Concept::Bracketed, start, p));
                }
                b'.' | b'!' => self.at_sentence_start = true,
                b'?' => {
                    self.spans
                        .push(Span::new(Concept::Question, self.sentence_start, p + 1));
                    self.at_sentence_start = true;
                }
                b' ' | b'\n' | b',' | b':' | b';' | b'\'' => {}
                _ => {
                    if self.at_sentence_start {
                        self.at_sentence_start = false;
                        self.sentence_start = p;
                        self.sentence_no += 1;
                    }
                }
            }
        }
        self.text.push_str(s);
    }

    /// Writes a structural span: `f` writes its text.
    fn span(&mut self, concept: Concept, f: impl FnOnce(&mut Writer)) {
        let start = self.text.len();
        f(self);
        self.spans.push(Span::new(concept, start, self.text.len()));
    }
}

// ---------------------------------------------------------------------------------------------
// The story plan

/// Who is in the story: roles A (hero), B (friend), C (newcomer).
struct Cast {
    names: [&'static str; 3],
    genders: [Gender; 3],
}

/// Choices that hold for the whole story.
struct StoryVars {
    pet: &'static str,
    pet_colour: &'static str,
    pet_size: &'static str,
    thing: &'static str,
    thing_colour: &'static str,
    thing_size: &'static str,
    place: &'static str,
    time: usize,
    weather: &'static str,
    wx: &'static str,
    snacks: &'static str,
    fav_colour: &'static str,
}

/// Choices drawn afresh for each arc or event.
struct EventVars {
    animal: (&'static str, &'static str),
    object: (&'static str, &'static str),
    food: (&'static str, &'static str),
    foods2: &'static str,
    colour: &'static str,
    colour2: &'static str,
    size: &'static str,
    size2: &'static str,
    kid_size: &'static str,
    animal_colour: &'static str,
    flower_colour: &'static str,
    sad: &'static str,
    afraid: &'static str,
    happy: &'static str,
    lonely: &'static str,
    place2: &'static str,
    number: &'static str,
    number2: &'static str,
    age: &'static str,
    good: &'static str,
    bad: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Subject,
    Object,
    Possessive,
}

struct Gen {
    rng: Rng,
    w: Writer,
    arc: &'static Arc,
    cast: Cast,
    sv: StoryVars,
    ev: EventVars,
}

/// Story length bounds, in words.
pub const MIN_WORDS: usize = 60;
pub const MAX_WORDS: usize = 200;

impl Gen {
    fn new(seed: u64) -> Gen {
        let mut rng = Rng::new(seed);
        let arc = &templates::ARCS[rng.below(templates::ARCS.len())];
        let cast = Self::draw_cast(&mut rng);
        let sv = Self::draw_story_vars(&mut rng, arc);
        let ev = Self::draw_event_vars(&mut rng);
        Gen {
            rng,
            w: Writer::new(),
            arc,
            cast,
            sv,
            ev,
        }
    }

    fn draw_cast(rng: &mut Rng) -> Cast {
        let mut names = [""; 3];
        let mut genders = [Gender::Male; 3];
        for i in 0..3 {
            loop {
                let g = if rng.chance(50) {
                    Gender::Male
                } else {
                    Gender::Female
                };
                let list = match g {
                    Gender::Male => world::MALE_NAMES,
                    Gender::Female => world::FEMALE_NAMES,
                };
                let n = rng.pick(list);
                if !names[..i].contains(&n) {
                    names[i] = n;
                    genders[i] = g;
                    break;
                }
            }
        }
        Cast { names, genders }
    }

    fn draw_story_vars(rng: &mut Rng, arc: &Arc) -> StoryVars {
        let time = rng.below(if arc.daytime {
            2
        } else {
            world::TIMES_OF_DAY.len()
        });
        let dark = time >= 2; // evening, night: never sunny
        let weather = loop {
            let i = if arc.needs_fair_start {
                rng.pick(&[0usize, 4]) // sunny, cloudy
            } else {
                rng.below(world::WEATHER.len())
            };
            if !(dark && i == 0) {
                break i;
            }
        };
        let wx = loop {
            let i = rng.pick(world::BAD_WEATHER);
            if i != weather {
                break i;
            }
        };
        let pet = rng.pick(templates::PET_ANIMALS);
        let thing = rng.pick(world::OBJECTS).0;
        StoryVars {
            pet,
            pet_colour: rng.pick(templates::ANIMAL_COLOURS),
            pet_size: rng.pick(templates::THING_SIZES),
            thing,
            thing_colour: rng.pick(world::COLOURS),
            thing_size: rng.pick(templates::THING_SIZES),
            place: rng.pick(arc.places),
            time,
            weather: world::WEATHER[weather].0,
            wx: world::WEATHER[wx].1,
            snacks: rng.pick(world::FOODS).1,
            fav_colour: rng.pick(world::COLOURS),
        }
    }

    fn draw_event_vars(rng: &mut Rng) -> EventVars {
        let food = rng.below(world::FOODS.len());
        let food2 = rng.other(world::FOODS.len(), food);
        let colour = rng.below(world::COLOURS.len());
        let colour2 = rng.other(world::COLOURS.len(), colour);
        let size = rng.below(templates::THING_SIZES.len());
        let size2 = rng.other(templates::THING_SIZES.len(), size);
        let number = rng.below(world::NUMBER_WORDS.len());
        let number2 = rng.other(world::NUMBER_WORDS.len(), number);
        EventVars {
            animal: rng.pick(world::ANIMALS),
            object: rng.pick(world::OBJECTS),
            food: world::FOODS[food],
            foods2: world::FOODS[food2].1,
            colour: world::COLOURS[colour],
            colour2: world::COLOURS[colour2],
            size: templates::THING_SIZES[size],
            size2: templates::THING_SIZES[size2],
            kid_size: rng.pick(templates::KID_SIZES),
            animal_colour: rng.pick(templates::ANIMAL_COLOURS),
            flower_colour: rng.pick(templates::FLOWER_COLOURS),
            sad: rng.pick(templates::SAD),
            afraid: rng.pick(templates::AFRAID),
            happy: rng.pick(templates::HAPPY),
            lonely: rng.pick(templates::LONELY),
            place2: rng.pick(templates::NEARBY),
            number: world::NUMBER_WORDS[number],
            number2: world::NUMBER_WORDS[number2],
            age: world::NUMBER_WORDS[1 + rng.below(8)], // three..ten
            good: rng.pick(world::FEELINGS_GOOD),
            bad: rng.pick(world::FEELINGS_BAD),
        }
    }

    fn fresh_event(&mut self) {
        self.ev = Self::draw_event_vars(&mut self.rng);
        while self.ev.place2 == self.sv.place {
            self.ev.place2 = self.rng.pick(templates::NEARBY);
        }
    }

    fn words(&self) -> usize {
        self.w.text.split_whitespace().count()
    }

    /// " " or, sometimes, a paragraph break.
    fn gap(&mut self, paragraph_pct: u32) {
        self.w.push(if self.rng.chance(paragraph_pct) {
            "\n\n"
        } else {
            " "
        });
    }

    fn story(&mut self) {
        let arc = self.arc;

        // Opening and introductions.
        let opening = self.rng.pick(world::OPENINGS);
        self.w.span(Concept::StoryOpening, |w| w.push(opening));
        self.w.push(", ");
        self.fresh_event();
        let intro = self.rng.pick(templates::INTROS);
        self.render(intro);
        let mut intro_lines = vec![
            self.rng.pick(templates::PETS),
            self.rng.pick(templates::FRIENDS),
        ];
        let d1 = self.rng.below(templates::DETAILS.len());
        intro_lines.push(self.rng.pick(templates::DETAILS[d1]));
        if self.rng.chance(40) {
            let d2 = self.rng.other(templates::DETAILS.len(), d1);
            intro_lines.push(self.rng.pick(templates::DETAILS[d2]));
        }
        self.shuffle(&mut intro_lines);
        for t in intro_lines {
            self.w.push(" ");
            self.fresh_event();
            self.render(t);
        }

        // The day.
        self.gap(70);
        self.fresh_event();
        let setting = self.rng.pick(templates::SETTINGS);
        self.render(setting);
        let mut used_events = Vec::new();
        for _ in 0..self.rng.below(3) {
            self.event(&mut used_events);
        }
        self.fresh_event();
        for step in arc.steps {
            if self.rng.chance(step.pct) {
                self.w.push(" ");
                let t = self.rng.pick(step.alts);
                self.render(t);
            }
        }

        // The end.
        self.gap(50);
        if self.rng.chance(60) || self.words() < MIN_WORDS - 5 {
            self.fresh_event();
            let closing = if arc.ends_at_home || self.rng.chance(30) {
                self.rng.pick(templates::CLOSINGS)
            } else {
                self.rng.pick(templates::AWAY_CLOSINGS)
            };
            self.render(closing);
            self.gap(30);
        }
        let ending = self.rng.pick(world::ENDINGS);
        self.w.span(Concept::StoryEnding, |w| w.push(ending));
        debug_assert!(self.w.quote_start.is_none() && self.w.article.is_none());
    }

    /// Writes " " and an event not used yet in this story.
    fn event(&mut self, used: &mut Vec<usize>) {
        let i = loop {
            let i = self.rng.below(templates::EVENTS.len());
            if !used.contains(&i) {
                break i;
            }
        };
        used.push(i);
        self.w.push(" ");
        self.fresh_event();
        self.render(templates::EVENTS[i]);
    }

    fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.rng.below(i + 1);
            xs.swap(i, j);
        }
    }

    /// Writes a template, filling its slots (see [`templates`]).
    fn render(&mut self, template: &str) {
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            self.w.push(&rest[..open]);
            let close = open + rest[open..].find('}').expect("unclosed slot");
            self.slot(&rest[open + 1..close]);
            rest = &rest[close + 1..];
        }
        self.w.push(rest);
    }

    fn slot(&mut self, slot: &str) {
        if let Some((role, form)) = slot.split_once('.') {
            let r = match role {
                "A" => 0,
                "B" => 1,
                "C" => 2,
                _ => panic!("unknown role in slot {{{slot}}}"),
            };
            match form {
                "name" => self.name(r),
                "spk" => {
                    let start = self.w.text.len();
                    self.name(r);
                    self.w
                        .spans
                        .push(Span::new(Concept::Speaker, start, self.w.text.len()));
                }
                "he" => self.refer(r, Form::Subject, false),
                "He" => self.refer(r, Form::Subject, true),
                "him" => self.refer(r, Form::Object, false),
                "his" => self.refer(r, Form::Possessive, false),
                "His" => self.refer(r, Form::Possessive, true),
                "kid" => self.w.push(self.cast.genders[r].child()),
                _ => panic!("unknown form in slot {{{slot}}}"),
            }
            return;
        }
        match slot {
            "an" => self.w.article = Some(false),
            "An" => self.w.article = Some(true),
            "<" => self.w.push(if self.rng.chance(50) { "(" } else { "[" }),
            ">" => {
                let close = if self.w.paren_start.is_some() {
                    ")"
                } else {
                    "]"
                };
                self.w.push(close);
            }
            _ => {
                let cap = slot.as_bytes()[0].is_ascii_uppercase();
                let word = self.value(slot, cap);
                if cap {
                    self.w.push_capitalised(word);
                } else {
                    self.w.push(word);
                }
            }
        }
    }

    /// The value of an entity slot (lowercase).
    fn value(&self, slot: &str, cap: bool) -> &'static str {
        let (sv, ev) = (&self.sv, &self.ev);
        let key = if cap {
            slot.to_ascii_lowercase()
        } else {
            String::new()
        };
        let slot = if cap { key.as_str() } else { slot };
        match slot {
            "pet" => sv.pet,
            "pet_colour" => sv.pet_colour,
            "pet_size" => sv.pet_size,
            "thing" => sv.thing,
            "thing_colour" => sv.thing_colour,
            "thing_size" => sv.thing_size,
            "place" => sv.place,
            "time" => world::TIMES_OF_DAY[sv.time],
            "when" => [
                "in the morning",
                "in the afternoon",
                "in the evening",
                "at night",
            ][sv.time],
            "weather" => sv.weather,
            "wx" => sv.wx,
            "snacks" => sv.snacks,
            "fav_colour" => sv.fav_colour,
            "animal" => ev.animal.0,
            "animals" => ev.animal.1,
            "object" => ev.object.0,
            "objects" => ev.object.1,
            "food" => ev.food.0,
            "foods" => ev.food.1,
            "foods2" => ev.foods2,
            "colour" => ev.colour,
            "colour2" => ev.colour2,
            "size" => ev.size,
            "size2" => ev.size2,
            "kid_size" => ev.kid_size,
            "animal_colour" => ev.animal_colour,
            "flower_colour" => ev.flower_colour,
            "sad" => ev.sad,
            "afraid" => ev.afraid,
            "happy" => ev.happy,
            "lonely" => ev.lonely,
            "place2" => ev.place2,
            "number" => ev.number,
            "number2" => ev.number2,
            "age" => ev.age,
            "good" => ev.good,
            "bad" => ev.bad,
            _ => panic!("unknown slot {{{slot}}}"),
        }
    }

    fn name(&mut self, r: usize) {
        self.w.push(self.cast.names[r]);
        self.w.last_named = Some(r);
        self.w.mentioned_in[r] = self.w.sentence_no;
    }

    /// Refers to character `r` with a pronoun or their name. A pronoun needs `r` to be the
    /// most recently named character (the world's rule, which keeps pronouns agreeing) and,
    /// so that a reader is never in doubt, nobody else to be mentioned in this sentence, nor
    /// in the one before unless `r` was already named in this one. A subject already mentioned in this sentence is always a pronoun; otherwise
    /// a subject is a pronoun only some of the time, for variety.
    fn refer(&mut self, r: usize, form: Form, cap: bool) {
        let w = &self.w;
        let now = if w.at_sentence_start {
            w.sentence_no + 1
        } else {
            w.sentence_no
        };
        let same_sentence = w.mentioned_in[r] == now;
        // Named earlier in this sentence: nobody else in it. Otherwise: nobody else in this
        // sentence or the one before.
        let quiet_since = if same_sentence {
            now
        } else {
            now.saturating_sub(1)
        };
        let others_quiet = (0..3).all(|o| o == r || w.mentioned_in[o] < quiet_since);
        let pronoun = w.last_named == Some(r)
            && others_quiet
            && (form != Form::Subject || same_sentence || self.rng.chance(60));
        if pronoun {
            let (he, him, his) = self.cast.genders[r].pronouns();
            let p = match form {
                Form::Subject => he,
                Form::Object => him,
                Form::Possessive => his,
            };
            if cap {
                self.w.push_capitalised(p);
            } else {
                self.w.push(p);
            }
            self.w.mentioned_in[r] = self.w.sentence_no;
        } else {
            self.name(r);
            if form == Form::Possessive {
                self.w.push("'s");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::check_story;
    use super::*;

    fn all_templates() -> Vec<&'static str> {
        let mut all: Vec<&'static str> = Vec::new();
        for list in [
            templates::INTROS,
            templates::PETS,
            templates::FRIENDS,
            templates::SETTINGS,
            templates::EVENTS,
            templates::CLOSINGS,
            templates::AWAY_CLOSINGS,
        ] {
            all.extend_from_slice(list);
        }
        for group in templates::DETAILS {
            all.extend_from_slice(group);
        }
        for arc in templates::ARCS {
            for step in arc.steps {
                all.extend_from_slice(step.alts);
            }
        }
        all
    }

    /// Renders every template on its own (after naming the hero) with many draws: every slot
    /// is known, punctuation balances, pronouns agree, and every word is classified.
    #[test]
    fn every_template_renders() {
        for t in all_templates() {
            for seed in 0..40 {
                let mut g = Gen::new(seed);
                g.name(0);
                g.w.push(" ran. ");
                g.fresh_event();
                g.render(t);
                g.w.push(" The end.");
                let text = &g.w.text;
                assert!(check_story(text).passes_all(), "{t:?} -> {text:?}");
                assert!(g.w.article.is_none(), "{t:?}: dangling {{an}}");
                for (a, b) in world::words(text) {
                    let w = &text[a..b];
                    assert!(
                        world::word_concepts(w).is_some()
                            || world::OTHER_WORDS.contains(&w.to_ascii_lowercase().as_str()),
                        "{t:?}: unclassified {w:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn articles_suit_the_next_word() {
        let mut g = Gen::new(1);
        g.render("{an} owl, {An} dog, {an}  egg, {an} big {An} umbrella.");
        assert_eq!(g.w.text, "an owl, A dog, an  egg, a big An umbrella.");
    }

    #[test]
    fn rng_is_splitmix64() {
        // Reference values of SplitMix64 seeded with 0.
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        let mut r = Rng::new(5);
        for n in [1usize, 2, 3, 10, 1000] {
            for _ in 0..100 {
                assert!(r.below(n) < n);
            }
        }
    }

    #[test]
    fn writer_records_structure() {
        let mut w = Writer::new();
        w.push("Tom ran. \"Is it far?\" he asked (once). [Yes.] Why? ");
        let t = w.text.clone();
        let got: Vec<(Concept, &str)> = {
            let mut s = w.spans.clone();
            s.sort();
            s.into_iter()
                .map(|s| (s.concept, &t[s.start..s.end]))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            got,
            vec![
                (Concept::Quotation, "Is it far?"),
                (Concept::Question, "Is it far?"),
                (Concept::Parenthetical, "once"),
                (Concept::Bracketed, "Yes."),
                (Concept::Question, "Why?"),
            ]
        );
    }
}
