//! The training set: the templates of the supported intents expanded at random with
//! the home's names, plus "none" chatter, plus light noise, split by sentence into a
//! training and a held-out part (a held-out sentence never appears in training, in
//! any noisy form).
//!
//! An expansion walks the parsed template picking one alternative at each `(a|b)`,
//! keeping or dropping each `[optional]`, following `<rules>` and filling `{lists}`:
//! home names for `{name}`/`{area}`/`{floor}`, a value of the data's value lists
//! (their `in` templates expanded too), a number in a range list, a phrase from a
//! small built-in vocabulary for wildcards.
use std::collections::{BTreeSet, HashMap, HashSet};

use super::vocab::{chatter, wildcard};
use super::Rng;
use crate::intent::data::{parse_at, IntentBlock, ListDef, ListValueDef, RangeDef};
use crate::intent::home::{Area, Entity, Floor};
use crate::intent::template::Expr;
use crate::intent::{Home, IntentsFile, Source};
use crate::{Error, Result};

/// The class of utterances that are no command.
pub const NONE_LABEL: &str = "none";

/// One labelled utterance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The text.
    pub text: String,
    /// Index into [`SampleSet::labels`].
    pub label: usize,
    /// Whether noise was added (a held-out statistic).
    pub noisy: bool,
}

/// Labels and the two splits.
#[derive(Debug, Clone)]
pub struct SampleSet {
    /// Class names: the intents in the order given, then [`NONE_LABEL`].
    pub labels: Vec<String>,
    /// Training samples (clean and noisy).
    pub train: Vec<Sample>,
    /// Held-out samples: sentences the training set does not contain.
    pub heldout: Vec<Sample>,
}

/// How many samples to draw.
#[derive(Debug, Clone)]
pub struct SampleOptions {
    /// Seed of every random choice.
    pub seed: u64,
    /// Random expansions drawn per intent (duplicates are dropped).
    pub draws: usize,
    /// Training samples per class at least (small classes are topped up with noisy copies).
    pub min_per_class: usize,
    /// Noisy copies added per training sentence.
    pub noisy_copies: usize,
    /// Percentage of distinct sentences held out (by a hash of the sentence).
    pub heldout_percent: u64,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            seed: 8,
            draws: 1500,
            min_per_class: 400,
            noisy_copies: 1,
            heldout_percent: 10,
        }
    }
}

/// Expands the templates of `intents` (those the data has sentences for) with `home`.
pub fn build(
    data: &IntentsFile,
    src: &Source,
    home: &Home,
    intents: &[&str],
    opts: &SampleOptions,
) -> Result<SampleSet> {
    let ex = Expander::new(data, src, home)?;
    let mut rng = Rng::new(opts.seed);
    let mut labels = Vec::new();
    let mut sentences: Vec<BTreeSet<String>> = Vec::new();
    for &intent in intents {
        let Some(entry) = data.intents.get(intent) else {
            continue;
        };
        let blocks: Vec<(&IntentBlock, Vec<Expr>)> = entry
            .data
            .iter()
            .map(|b| {
                let parsed = b.sentences.iter().map(|s| parse_at(s, src));
                Ok((b, parsed.collect::<Result<Vec<_>>>()?))
            })
            .collect::<Result<_>>()?;
        let n_templates: usize = blocks.iter().map(|(_, s)| s.len()).sum();
        if n_templates == 0 {
            continue;
        }
        let mut set = BTreeSet::new();
        for _ in 0..opts.draws {
            // Every template equally likely, whatever its block.
            let mut t = rng.below(n_templates);
            let (block, expr) = blocks
                .iter()
                .find_map(|(b, s)| {
                    if t < s.len() {
                        Some((*b, &s[t]))
                    } else {
                        t -= s.len();
                        None
                    }
                })
                .expect("t < n_templates");
            let mut out = String::new();
            ex.expand(expr, Some(block), &mut rng, &mut out, 0)?;
            let text = tidy(&out);
            if !text.is_empty() {
                set.insert(text);
            }
        }
        labels.push(intent.to_string());
        sentences.push(set);
    }
    if labels.is_empty() {
        return Err(Error::Invalid(
            "none of the classifier's intents has sentences in the data".into(),
        ));
    }
    labels.push(NONE_LABEL.to_string());
    sentences.push((0..opts.draws).map(|_| chatter(&mut rng)).collect());

    let mut set = SampleSet {
        labels,
        train: Vec::new(),
        heldout: Vec::new(),
    };
    for (label, texts) in sentences.into_iter().enumerate() {
        let (held, train): (Vec<String>, Vec<String>) = texts
            .into_iter()
            .partition(|t| fnv64(t.as_bytes()) % 100 < opts.heldout_percent);
        for t in &held {
            set.heldout.push(sample(t.clone(), label, false));
            set.heldout.push(sample(noisy(t, &mut rng), label, true));
        }
        let mut n = 0;
        for t in &train {
            set.train.push(sample(t.clone(), label, false));
            n += 1;
            for _ in 0..opts.noisy_copies {
                set.train.push(sample(noisy(t, &mut rng), label, true));
                n += 1;
            }
        }
        // Top up classes with few distinct sentences ("never mind") with noisy copies.
        let mut i = 0;
        while n < opts.min_per_class && !train.is_empty() {
            set.train.push(sample(
                noisy(&train[i % train.len()], &mut rng),
                label,
                true,
            ));
            n += 1;
            i += 1;
        }
    }
    // A noisy training variant can happen to equal a held-out text ("turn on the tv" →
    // "turn on tv"): drop it from training, so the net has never seen any held-out text.
    let held: HashSet<&str> = set.heldout.iter().map(|s| s.text.as_str()).collect();
    let before = set.train.len();
    set.train.retain(|s| !held.contains(s.text.as_str()));
    tracing::debug!(
        "{} training samples equal to held-out ones dropped",
        before - set.train.len()
    );
    Ok(set)
}

fn sample(text: String, label: usize, noisy: bool) -> Sample {
    Sample { text, label, noisy }
}

/// Single spaces, no leading/trailing space.
pub(super) fn tidy(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// 64-bit FNV-1a (the held-out split: stable across runs and platforms).
fn fnv64(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Template expansion with the data's rules and lists and the home's names.
struct Expander<'a> {
    src: &'a Source,
    rules: HashMap<&'a str, Expr>,
    lists: &'a std::collections::BTreeMap<String, ListDef>,
    home: HashMap<&'static str, Vec<String>>,
}

/// Deepest rule/list nesting followed (the data's rules are acyclic; this bounds
/// hostile user data).
const MAX_DEPTH: usize = 32;

impl<'a> Expander<'a> {
    fn new(data: &'a IntentsFile, src: &'a Source, home: &Home) -> Result<Self> {
        let mut rules = HashMap::new();
        for (name, body) in &data.expansion_rules {
            rules.insert(name.as_str(), parse_at(body, src)?);
        }
        let names = home
            .entities
            .iter()
            .filter(|e| e.exposed)
            .flat_map(Entity::names)
            .cloned()
            .collect();
        let areas = home.areas.iter().flat_map(Area::names).cloned().collect();
        let floors = home.floors.iter().flat_map(Floor::names).cloned().collect();
        let home = HashMap::from([("name", names), ("area", areas), ("floor", floors)]);
        Ok(Expander {
            src,
            rules,
            lists: &data.lists,
            home,
        })
    }

    fn expand(
        &self,
        e: &Expr,
        block: Option<&IntentBlock>,
        rng: &mut Rng,
        out: &mut String,
        depth: usize,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::Invalid(format!(
                "{}: templates nest deeper than {MAX_DEPTH}",
                self.src.name
            )));
        }
        match e {
            Expr::Text(t) => out.push_str(t),
            Expr::Seq(items) => {
                for i in items {
                    self.expand(i, block, rng, out, depth)?;
                }
            }
            Expr::Alt(alts) if !alts.is_empty() => {
                let pick = &alts[rng.below(alts.len())];
                self.expand(pick, block, rng, out, depth)?;
            }
            Expr::Alt(_) => {}
            Expr::Rule(name) => {
                let local = block.and_then(|b| b.expansion_rules.get(name));
                match local {
                    Some(body) => {
                        let e = parse_at(body, self.src)?;
                        self.expand(&e, block, rng, out, depth + 1)?;
                    }
                    None => match self.rules.get(name.as_str()) {
                        Some(e) => self.expand(e, block, rng, out, depth + 1)?,
                        None => {
                            return Err(Error::Invalid(format!(
                                "{}: unknown rule <{name}>",
                                self.src.name
                            )))
                        }
                    },
                }
            }
            Expr::List { list, .. } => {
                out.push(' ');
                self.list(list, block, rng, out, depth)?;
                out.push(' ');
            }
        }
        Ok(())
    }

    fn list(
        &self,
        list: &str,
        block: Option<&IntentBlock>,
        rng: &mut Rng,
        out: &mut String,
        depth: usize,
    ) -> Result<()> {
        if let Some(values) = self.home.get(list) {
            if !values.is_empty() {
                out.push_str(&values[rng.below(values.len())]);
            }
            return Ok(());
        }
        let def = block
            .and_then(|b| b.lists.get(list))
            .or_else(|| self.lists.get(list));
        match def {
            Some(ListDef::Values { values }) if !values.is_empty() => {
                match &values[rng.below(values.len())] {
                    ListValueDef::Plain(s) => out.push_str(s),
                    ListValueDef::Full { input, .. } => {
                        let e = parse_at(input, self.src)?;
                        self.expand(&e, block, rng, out, depth + 1)?;
                    }
                }
            }
            Some(ListDef::Range { range }) => out.push_str(&number(range, rng)),
            Some(ListDef::Values { .. }) => {}
            Some(ListDef::Wildcard { .. }) | None => out.push_str(wildcard(list, rng)),
        }
        Ok(())
    }
}

/// A value of a range list as speech-to-text writes it: digits, sometimes a half.
fn number(r: &RangeDef, rng: &mut Rng) -> String {
    let step = if r.step > 0.0 { r.step } else { 1.0 };
    let n = ((r.to - r.from) / step).floor().max(0.0) as usize;
    let v = r.from + step * rng.below(n + 1) as f64;
    if r.fractions.is_some() && rng.below(4) == 0 {
        format!("{v}.5")
    } else {
        format!("{v}")
    }
}

/// `text` with one or two light corruptions: a dropped word, a letter swapped or
/// dropped (speech-to-text slips), "the"/"a" added or dropped, a polite filler.
pub fn noisy(text: &str, rng: &mut Rng) -> String {
    let mut words: Vec<String> = text.split(' ').map(String::from).collect();
    let ops = 1 + rng.below(2);
    for _ in 0..ops {
        let i = rng.below(words.len().max(1));
        match rng.below(6) {
            0 if words.len() >= 3 => {
                words.remove(i);
            }
            1 | 2 => {
                // A letter swapped with the next one, or dropped ("off" → "of").
                let w: Vec<char> = words[i].chars().collect();
                if w.len() >= 3 {
                    let j = 1 + rng.below(w.len() - 2);
                    let mut w2 = w.clone();
                    if rng.below(2) == 0 {
                        w2.swap(j, j + 1);
                    } else {
                        w2.remove(j);
                    }
                    words[i] = w2.into_iter().collect();
                }
            }
            3 => {
                if let Some(k) = words.iter().position(|w| w == "the" || w == "a") {
                    if words.len() >= 3 {
                        words.remove(k);
                    }
                } else {
                    words.insert(i, if rng.below(2) == 0 { "the" } else { "a" }.into());
                }
            }
            4 => {
                const FILLER: &[&str] = &["please", "can you", "could you", "hey", "uh"];
                let f = FILLER[rng.below(FILLER.len())].to_string();
                if rng.below(2) == 0 {
                    words.insert(0, f);
                } else {
                    words.push(f);
                }
            }
            _ => {
                // Two words run together, as STT sometimes writes them.
                if i + 1 < words.len() {
                    let next = words.remove(i + 1);
                    words[i].push_str(&next);
                }
            }
        }
    }
    tidy(&words.join(" "))
}
