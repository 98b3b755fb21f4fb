//! The LLM stage: when no template matches, the on-device LLM decides whether the
//! utterance is for the home at all, then picks an intent and its slots under
//! constrained decoding, or answers an open question.
//!
//! **Decision.** A small model offered `{"intent": null}` among a dozen intent names
//! almost never picks `null`: it reads "what is the capital of France" as a command.
//! So the first step is a separate two-way question ("home" or "chat", with its own
//! short prompt and cached prefix) whose two answers' probabilities are compared; the
//! JSON step then only runs for "home", and has no `null` to pick
//! (scripts/bench/llm-intents measures both steps; figures in BENCHMARKS.md).
//!
//! **JSON.** The reply is JSON of a fixed shape, built from forced text and choice points:
//!
//! ```text
//! {"action": ⟨ "turn on", | "set brightness", | "tell weather"} | … ⟩
//!     "name": ⟨ "Desk Lamp"} | … | null, ⟩ "area": ⟨ "Office", | … ⟩ "domain": ⟨ "light"} | … ⟩
//!     "brightness": ⟨ the number said ⟩                     (intents with a number)
//!     ⟨ "hours": | "minutes": | "seconds": ⟩ ⟨ the number said ⟩   (start timer)
//! ```
//!
//! Actions are offered in plain words (each maps to one intent): a 135M model maps an
//! utterance to "set brightness" far better than to `HassLightSet`. Devices and areas
//! are narrowed to those the utterance says when it says some (a small model otherwise
//! drifts to the names in its prompt); otherwise every device and area is an option.
//!
//! **Numbers** are read, not generated ([`crate::assist::quantity`]: digits, words,
//! "half", and the unit after them). They also decide which actions are offered
//! ([`specs::candidates`]): a number that fits an intent's slot (unit and range) leaves
//! only the intents it fits, of those the ones acting on the kind of device named;
//! no number leaves only the intents without one. The model then chooses among what is
//! left (often nothing is left to choose), and the slot value is the number said. These
//! are deterministic rules, documented as such in docs/runtime-api.md.
//!
//! At a choice point each option is a token sequence (tokenized on its own: every
//! option starts with a space and ends in punctuation, where the byte-level BPE's
//! pre-tokenizer splits anyway, so the pieces are the tokens the whole text would
//! get). Decoding walks the options' trie: at each step the logits are masked to the
//! tokens that continue some live option, the best is taken, and options that
//! disagree drop out. The result is therefore always valid JSON naming a real intent,
//! real home names and numbers in the slot's range; nothing is parsed back from free
//! text. Running out of context is a clean no-match.
//!
//! Not a command: with `answer_questions`, the model then answers in a sentence with
//! its own chat prompt.

mod specs;

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use serde_json::Value;

pub use specs::llm_intents;
use specs::{candidates, Number, Spec, Target, SPECS};

use crate::assist::quantity::{quantities, Quantity};
use crate::intent::home::Entity;
use crate::intent::normalize::normalize;
use crate::intent::{Home, IntentMatch, Stage};
use crate::llm::{
    generate, ChatMessage, ChatTemplate, Engine, GenerateOptions, Role, Sampler, SamplerConfig,
    Session,
};
use crate::{Error, Result};

/// Options of the LLM stage.
#[derive(Debug, Clone)]
pub struct LlmOptions {
    /// Answer questions that are not commands (else they are no match).
    pub answer_questions: bool,
    /// Longest answer, in tokens.
    pub max_answer_tokens: usize,
    /// KV cache budget in tokens (of the intent prompt's session; the decision and
    /// the answer get their own, smaller ones).
    pub context: usize,
}

impl Default for LlmOptions {
    fn default() -> Self {
        LlmOptions {
            answer_questions: true,
            max_answer_tokens: 48,
            context: 1024,
        }
    }
}

/// What the LLM stage made of an utterance.
#[derive(Debug, Clone)]
pub enum LlmAnswer {
    /// A command: the intent with its slots (`stage` = [`Stage::Llm`]).
    Intent(IntentMatch),
    /// Not a command: a short answer to say.
    Reply(String),
    /// Neither (not a command, answers off, or the context ran out).
    Nothing,
}

/// Context of the decision and answer sessions: their prompts are short.
const SMALL_CONTEXT: usize = 512;

/// The LLM stage: an engine and three sessions (the decision, the intent JSON, the
/// answer), each keeping its own fixed prompt prefix cached between utterances.
pub struct LlmFallback {
    engine: Engine,
    decide: Session,
    session: Session,
    answer: Session,
    template: ChatTemplate,
    opts: LlmOptions,
    /// The next token's logits in `session`.
    logits: Vec<f32>,
}

/// One choice point: the options' text and tokens.
struct Choice {
    texts: Vec<String>,
    tokens: Vec<Vec<u32>>,
}

impl LlmFallback {
    /// A stage over `engine` (a ChatML instruct model, e.g. SmolLM2-135M-Instruct).
    pub fn new(engine: Engine, opts: LlmOptions) -> Result<Self> {
        let template = ChatTemplate::from_model(engine.info().chat_template.as_deref())?;
        let max = engine.hparams().context_length;
        let session = engine.new_session(opts.context.min(max))?;
        let decide = engine.new_session(SMALL_CONTEXT.min(max))?;
        let answer = engine.new_session(SMALL_CONTEXT.min(max))?;
        Ok(LlmFallback {
            engine,
            decide,
            session,
            answer,
            template,
            opts,
            logits: Vec::new(),
        })
    }

    /// Classifies `text` among `available` intents (those the data defines) for `home`.
    pub fn handle(&mut self, text: &str, home: &Home, available: &[String]) -> Result<LlmAnswer> {
        let specs: Vec<&'static Spec> = SPECS
            .iter()
            .filter(|s| available.iter().any(|a| a == s.name))
            .collect();
        if specs.is_empty() {
            return Ok(LlmAnswer::Nothing);
        }
        let result = self.for_home(text).and_then(|p| match p {
            Some(p) => self.classify(text, home, &specs, p).map(Some),
            None => Ok(None),
        });
        match result {
            Ok(Some(m)) => Ok(LlmAnswer::Intent(m)),
            Ok(None) if self.opts.answer_questions => self.answer(text),
            Ok(None) => Ok(LlmAnswer::Nothing),
            Err(Error::Invalid(e)) if e.starts_with("context full") => {
                tracing::warn!("llm: {e}");
                Ok(LlmAnswer::Nothing)
            }
            Err(e) => Err(e),
        }
    }

    /// The decision: `Some(p)` (p = the probability of "home" against "chat", > ½)
    /// when `text` is for the home, `None` when it is not.
    fn for_home(&mut self, text: &str) -> Result<Option<f32>> {
        let ids = self.labelled_prompt(DECIDE_SYSTEM, DECIDE_SHOTS, text)?;
        let first = self.decide.sync(&ids)?.to_vec();
        let labels = ["home".to_string(), "chat".to_string()];
        let lp = score_options(&self.engine, &mut self.decide, &first, &labels)?;
        let p = 1.0 / (1.0 + (lp[1] - lp[0]).exp());
        tracing::debug!("llm decision: p(home) = {p:.3} for {text:?}");
        Ok((p > 0.5).then_some(p))
    }

    /// A system prompt, worked (user, label) pairs and `text`, tokenized, ready for the
    /// assistant's label.
    fn labelled_prompt(
        &self,
        system: &str,
        shots: &[(&str, &str)],
        text: &str,
    ) -> Result<Vec<u32>> {
        let mut msgs = vec![ChatMessage::new(Role::System, system)];
        for (user, label) in shots {
            msgs.push(ChatMessage::new(Role::User, *user));
            msgs.push(ChatMessage::new(Role::Assistant, *label));
        }
        msgs.push(ChatMessage::new(Role::User, text));
        self.engine.tokenize(
            &self.template.render(&msgs, true),
            self.engine.info().add_bos,
        )
    }

    /// The intent JSON for a command (`p`: the decision's confidence, the score).
    fn classify(
        &mut self,
        text: &str,
        home: &Home,
        specs: &[&'static Spec],
        p: f32,
    ) -> Result<IntentMatch> {
        let entities: Vec<&Entity> = home.entities.iter().filter(|e| e.exposed).collect();
        let said = quantities(text);
        let (named_ids, _) = named(text, entities.iter().map(|e| names_of(&e.name, &e.aliases)));
        let named_devices: Vec<&Entity> = named_ids.iter().map(|&i| entities[i]).collect();
        // Deterministic narrowing by the numbers said (specs::candidates), then the
        // model's choice among what is left.
        let cands = match candidates(specs, &said, &named_devices) {
            c if c.is_empty() => specs.to_vec(),
            c => c,
        };
        let ids = self.json_prompt(text, home, specs, &entities)?;
        self.logits = self.session.sync(&ids)?.to_vec();
        let spec = if let [only] = cands[..] {
            self.feed(&action_text(only))?;
            only
        } else {
            let texts = cands.iter().map(|s| action_text(s)).collect();
            cands[self.choose(texts)?]
        };

        let mut slots = BTreeMap::new();
        if let Target::Device {
            domains,
            area_slots,
        } = spec.target
        {
            self.target(text, spec, domains, area_slots, home, &entities, &mut slots)?;
        }
        if let Some(n) = &spec.number {
            self.number(n, &said, &mut slots)?;
        }
        Ok(IntentMatch {
            text: text.to_string(),
            intent: Some(spec.name.to_string()),
            slots,
            stage: Some(Stage::Llm),
            score: p,
            response: None,
        })
    }

    /// The number slots: the values said (the model picks when one slot was said with
    /// several values, or the slot when no unit tells it).
    fn number(
        &mut self,
        n: &Number,
        said: &[Quantity],
        slots: &mut BTreeMap<String, Value>,
    ) -> Result<()> {
        let fit = n.said(said);
        let mut keyed: Vec<(&str, Vec<u32>)> = Vec::new();
        let mut unkeyed: Vec<u32> = Vec::new();
        for q in &fit {
            match n.slot_for(q) {
                Some(Some(k)) => match keyed.iter_mut().find(|(kk, _)| *kk == k) {
                    Some((_, vs)) if !vs.contains(&q.value) => vs.push(q.value),
                    Some(_) => {}
                    None => keyed.push((k, vec![q.value])),
                },
                Some(None) if !unkeyed.contains(&q.value) => unkeyed.push(q.value),
                _ => {}
            }
        }
        if keyed.is_empty() {
            let key = match n.slots {
                [(key, _)] => *key,
                keys => {
                    let texts = keys.iter().map(|(k, _)| format!(" \"{k}\":")).collect();
                    keys[self.choose(texts)?].0
                }
            };
            let values = if unkeyed.is_empty() {
                (n.min..=n.max).collect()
            } else {
                unkeyed
            };
            keyed.push((key, values));
        }
        for (key, values) in keyed {
            let v = if let [v] = values[..] {
                v
            } else {
                self.feed(&format!(" \"{key}\":"))?;
                let texts = values.iter().map(|v| format!(" {v}}}")).collect();
                values[self.choose(texts)?]
            };
            slots.insert(key.to_string(), Value::from(v));
        }
        Ok(())
    }

    /// The JSON step's prompt for `text`, up to the first choice (`{"action":`).
    fn json_prompt(
        &self,
        text: &str,
        home: &Home,
        specs: &[&Spec],
        entities: &[&Entity],
    ) -> Result<Vec<u32>> {
        let prompt = self.prompt(text, home, specs, entities);
        let mut ids = self.engine.tokenize(&prompt, self.engine.info().add_bos)?;
        ids.extend(self.engine.tokenize("{\"action\":", false)?);
        Ok(ids)
    }

    /// The device (`name`), or an area (and, for intents without fixed area slots or a
    /// number, the kind of device: `domain`).
    #[allow(clippy::too_many_arguments)]
    fn target(
        &mut self,
        text: &str,
        spec: &Spec,
        domains: &[&str],
        area_slots: &[(&str, &str)],
        home: &Home,
        entities: &[&Entity],
        slots: &mut BTreeMap<String, Value>,
    ) -> Result<()> {
        // What follows the target: a number, or the end of the object.
        let close = if spec.number.is_some() { "," } else { "}" };
        let devices: Vec<&Entity> = entities
            .iter()
            .copied()
            .filter(|e| domains.is_empty() || domains.contains(&e.domain.as_str()))
            .collect();
        if !devices.is_empty() {
            // The devices the utterance names, when it names some: a small model
            // otherwise drifts to names from its prompt.
            let (said, whole) = named(text, devices.iter().map(|e| names_of(&e.name, &e.aliases)));
            let options: Vec<&Entity> = if said.is_empty() {
                devices.clone()
            } else {
                said.iter().map(|&i| devices[i]).collect()
            };
            self.feed(" \"name\":")?;
            let mut texts: Vec<String> = options
                .iter()
                .map(|e| format!(" \"{}\"{close}", json_str(&e.name)))
                .collect();
            if !home.areas.is_empty() && !whole {
                texts.push(" null,".into());
            }
            if let Some(e) = options.get(self.choose(texts)?) {
                slots.insert("name".into(), Value::from(e.name.clone()));
                return Ok(());
            }
        }
        if home.areas.is_empty() {
            return Ok(());
        }
        self.feed(" \"area\":")?;
        let ask_domain = area_slots.is_empty() && spec.number.is_none();
        let end = if ask_domain { "," } else { close };
        let (named_areas, _) = named(
            text,
            home.areas.iter().map(|a| names_of(&a.name, &a.aliases)),
        );
        let areas: Vec<&crate::intent::home::Area> = if named_areas.is_empty() {
            home.areas.iter().collect()
        } else {
            named_areas.iter().map(|&i| &home.areas[i]).collect()
        };
        let texts = areas
            .iter()
            .map(|a| format!(" \"{}\"{end}", json_str(&a.name)))
            .collect();
        let area = areas[self.choose(texts)?];
        slots.insert("area".into(), Value::from(area.name.clone()));
        for (k, v) in area_slots {
            slots.insert((*k).into(), Value::from(*v));
        }
        if ask_domain {
            let mut kinds: Vec<&str> = devices.iter().map(|e| e.domain.as_str()).collect();
            if kinds.is_empty() {
                kinds = entities.iter().map(|e| e.domain.as_str()).collect();
            }
            kinds.sort_unstable();
            kinds.dedup();
            if !kinds.is_empty() {
                self.feed(" \"domain\":")?;
                let texts = kinds.iter().map(|d| format!(" \"{d}\"}}")).collect();
                let d = kinds[self.choose(texts)?];
                slots.insert("domain".into(), Value::from(d));
            }
        }
        Ok(())
    }

    /// The chat prompt: the task, the intents, the home, worked examples drawn
    /// from the home, then the utterance. Everything before the utterance is the same
    /// every time, so the session's cache keeps it.
    fn prompt(&self, text: &str, home: &Home, specs: &[&Spec], entities: &[&Entity]) -> String {
        let mut sys = String::from(
            "You control a smart home. Turn the user's request into JSON with the action, the device and any number.\nActions:\n",
        );
        for s in specs {
            sys.push_str(&format!("- {}: {}\n", s.say, s.what));
        }
        sys.push_str("Devices:\n");
        for e in entities {
            match &e.area {
                Some(a) => sys.push_str(&format!("- {} ({}, {a})\n", e.name, e.domain)),
                None => sys.push_str(&format!("- {} ({})\n", e.name, e.domain)),
            }
        }
        let areas: Vec<&str> = home.areas.iter().map(|a| a.name.as_str()).collect();
        sys.push_str(&format!("Areas: {}\n", areas.join(", ")));
        let mut msgs = vec![ChatMessage::new(Role::System, sys)];
        // Worked commands, one per device action (on the home's first devices): with
        // none SmolLM2-135M does worse (30% vs 45% of the intents right in
        // scripts/bench/llm-intents); one alone ("turn on") pulls every answer to its
        // action (BENCHMARKS.md).
        let shots: Vec<(String, String)> = entities
            .iter()
            .zip(SHOTS)
            .map(|(e, (say, action))| {
                (
                    say.replace("{}", &e.name.to_lowercase()),
                    format!(
                        "{{\"action\": \"{action}\", \"name\": \"{}\"}}",
                        json_str(&e.name)
                    ),
                )
            })
            .collect();
        for (user, reply) in shots {
            msgs.push(ChatMessage::new(Role::User, user));
            msgs.push(ChatMessage::new(Role::Assistant, reply));
        }
        msgs.push(ChatMessage::new(Role::User, text));
        self.template.render(&msgs, true)
    }

    /// Appends forced text to the intent session.
    fn feed(&mut self, text: &str) -> Result<()> {
        let ids = self.engine.tokenize(text, false)?;
        self.logits = self.session.prefill(&ids)?.to_vec();
        Ok(())
    }

    /// Walks the options' token trie from the current logits, feeding the chosen
    /// tokens. Returns the chosen option's index.
    fn choose(&mut self, texts: Vec<String>) -> Result<usize> {
        let tokens = texts
            .iter()
            .map(|t| self.engine.tokenize(t, false))
            .collect::<Result<Vec<_>>>()?;
        let choice = Choice { texts, tokens };
        let mut alive: Vec<usize> = (0..choice.tokens.len())
            .filter(|&i| !choice.tokens[i].is_empty())
            .collect();
        if alive.is_empty() {
            return Err(Error::Invalid("llm: a choice with no options".into()));
        }
        let mut pos = 0;
        loop {
            if let [i] = alive[..] {
                let rest = &choice.tokens[i][pos..];
                if !rest.is_empty() {
                    self.logits = self.session.prefill(rest)?.to_vec();
                }
                tracing::debug!("llm choice: {:?}", choice.texts[i]);
                return Ok(i);
            }
            // An option that is a prefix of others and fully fed: it is complete.
            if let Some(i) = alive
                .iter()
                .copied()
                .find(|&i| choice.tokens[i].len() == pos)
            {
                return Ok(i);
            }
            let logits = &self.logits;
            let best = alive
                .iter()
                .map(|&i| choice.tokens[i][pos])
                .filter(|&t| (t as usize) < logits.len())
                .max_by(|&a, &b| logits[a as usize].total_cmp(&logits[b as usize]))
                .ok_or_else(|| Error::Invalid("llm: option token outside the vocabulary".into()))?;
            alive.retain(|&i| choice.tokens[i][pos] == best);
            self.logits = self.session.decode(best)?.to_vec();
            pos += 1;
        }
    }

    /// A short spoken-style answer with the model's own system prompt.
    fn answer(&mut self, text: &str) -> Result<LlmAnswer> {
        let msgs = [
            ChatMessage::new(
                Role::System,
                "You are a helpful voice assistant. Answer in one short sentence.",
            ),
            ChatMessage::new(Role::User, text),
        ];
        let prompt = self.engine.tokenize(
            &self.template.render(&msgs, true),
            self.engine.info().add_bos,
        )?;
        let mut sampler = Sampler::new(SamplerConfig::greedy())?;
        let opts = GenerateOptions {
            max_tokens: self.opts.max_answer_tokens,
            stop_strings: vec!["\n".into()],
            stop_ids: None,
        };
        let g = generate(&mut self.answer, &prompt, &mut sampler, &opts, |_, _| {
            ControlFlow::Continue(())
        })?;
        let reply = g.text.trim();
        Ok(if reply.is_empty() {
            LlmAnswer::Nothing
        } else {
            LlmAnswer::Reply(reply.to_string())
        })
    }
}

/// The decision prompt: "home" (a command or a question for the home) or "chat".
const DECIDE_SYSTEM: &str = "You are the voice assistant of a smart home. Decide whether the user's message is for the home or not.\nReply home if it asks to control or check a device (lights, lamps, switches, fans, doors, blinds, thermostat, TV), music or volume, a timer, the time, the date or the weather.\nReply chat for anything else: questions about the world, facts, jokes, stories, greetings, small talk.";

/// Worked decisions, alternating (none of them in the benchmark's set).
const DECIDE_SHOTS: &[(&str, &str)] = &[
    ("turn the kitchen light off please", "home"),
    ("who discovered penicillin", "chat"),
    ("is the front door locked", "home"),
    ("tell me something funny", "chat"),
    ("set a timer for ten minutes", "home"),
    ("how are you doing", "chat"),
];

/// A name and its aliases, normalized, as word lists.
fn names_of(name: &str, aliases: &[String]) -> Vec<Vec<String>> {
    std::iter::once(name)
        .chain(aliases.iter().map(String::as_str))
        .map(|n| normalize(n).text.split(' ').map(String::from).collect())
        .collect()
}

/// Which of `candidates` (each a list of names as words) `text` names best: the
/// indices of those with the largest share of a name's words in the text, and whether
/// that share is whole. Empty when none shares a word.
fn named(text: &str, candidates: impl Iterator<Item = Vec<Vec<String>>>) -> (Vec<usize>, bool) {
    let norm = normalize(text);
    let words: Vec<&str> = norm.text.split(' ').collect();
    let scores: Vec<f32> = candidates
        .map(|names| {
            names
                .iter()
                .filter(|n| !n.is_empty())
                .map(|n| {
                    let hits = n.iter().filter(|w| words.contains(&w.as_str())).count();
                    hits as f32 / n.len() as f32
                })
                .fold(0.0, f32::max)
        })
        .collect();
    let best = scores.iter().copied().fold(0.0, f32::max);
    if best == 0.0 {
        return (Vec::new(), false);
    }
    let picked = (0..scores.len()).filter(|&i| scores[i] == best).collect();
    (picked, best >= 1.0)
}

/// Worked commands for the JSON prompt (`{}`: one of the home's devices): one for each
/// device action, so none of them is the prompt's only example.
const SHOTS: [(&str, &str); 3] = [
    ("could you get the {} going", "turn on"),
    ("switch the {} off", "turn off"),
    ("is the {} on", "check state"),
];

/// The action's JSON text: the object ends after it when nothing follows.
fn action_text(s: &Spec) -> String {
    match (&s.target, &s.number) {
        (Target::None, None) => format!(" \"{}\"}}", s.say),
        _ => format!(" \"{}\",", s.say),
    }
}

/// log P(option | the session's tokens) for each option, teacher-forced from `first`
/// (the logits after the session's tokens); the session is left as it was.
fn score_options(
    engine: &Engine,
    session: &mut Session,
    first: &[f32],
    texts: &[String],
) -> Result<Vec<f32>> {
    let base = session.len();
    let mut out = Vec::with_capacity(texts.len());
    for t in texts {
        let ids = engine.tokenize(t, false)?;
        let Some((&head, _)) = ids.split_first() else {
            return Err(Error::Invalid("llm: an empty option".into()));
        };
        let mut lp = log_softmax_at(first, head)?;
        if ids.len() > 1 {
            let mut rest = Vec::with_capacity(ids.len() - 1);
            session.eval_logits(&ids[..ids.len() - 1], 0, |i, logits| {
                rest.push(log_softmax_at(logits, ids[i + 1]));
            })?;
            session.truncate(base);
            for r in rest {
                lp += r?;
            }
        }
        out.push(lp);
    }
    Ok(out)
}

/// `log softmax(logits)[t]`.
fn log_softmax_at(logits: &[f32], t: u32) -> Result<f32> {
    let x = *logits
        .get(t as usize)
        .ok_or_else(|| Error::Invalid("llm: label token outside the vocabulary".into()))?;
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    Ok(x - max - sum.ln())
}

/// `s` escaped for the inside of a JSON string.
fn json_str(s: &str) -> String {
    let quoted = Value::from(s).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_said_narrow_the_options() {
        let lamps = || {
            vec![
                names_of("Desk Lamp", &[]),
                names_of("Floor Lamp", &[]),
                names_of("Television", &["TV".into()]),
            ]
            .into_iter()
        };
        assert_eq!(named("get rid of the desk lamp", lamps()), (vec![0], true));
        assert_eq!(named("the lamp please", lamps()), (vec![0, 1], false));
        assert_eq!(named("pause the tv", lamps()), (vec![2], true));
        assert_eq!(named("hello there", lamps()), (vec![], false));
    }
}
