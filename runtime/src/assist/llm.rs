//! The LLM stage: when no template matches, the on-device LLM picks an intent and
//! its target under constrained decoding, or answers an open question.
//!
//! The reply is JSON of a fixed shape, built from forced text and choice points:
//!
//! ```text
//! {"intent": ⟨ "HassTurnOn", | … | null} ⟩ "name": ⟨ "Desk Lamp"} | … | null, ⟩ "area": ⟨ "Office", | … ⟩ "domain": ⟨ "light"} | … ⟩
//! ```
//!
//! At a choice point each option is a token sequence (tokenized on its own: every
//! option starts with a space and ends in punctuation, where the byte-level BPE's
//! pre-tokenizer splits anyway, so the pieces are the tokens the whole text would
//! get). Decoding walks the options' trie: at each step the logits are masked to the
//! tokens that continue some live option, the best is taken, and options that
//! disagree drop out. The result is therefore always valid JSON naming a real intent
//! and real home names; nothing is parsed back from free text. Running out of
//! context is a clean no-match.
//!
//! An intent of `null` means "not a command": with `answer_questions`, the model
//! then answers in a sentence with its own chat prompt.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use serde_json::Value;

use crate::intent::{Home, IntentMatch, Stage};
use crate::llm::{
    generate, ChatMessage, ChatTemplate, Engine, GenerateOptions, Role, Sampler, SamplerConfig,
    Session,
};
use crate::{Error, Result};

/// Intents the LLM may choose, with the words the prompt describes them by, and
/// whether they target a device/area. Intents needing numbers (brightness, timers,
/// temperatures) are left to the templates, which parse numbers exactly.
const CHOICES: &[(&str, &str, bool)] = &[
    ("HassTurnOn", "switch on, open or start a device", true),
    ("HassTurnOff", "switch off, close or stop a device", true),
    ("HassToggle", "toggle a device", true),
    (
        "HassGetState",
        "ask whether a device is on, off, open or closed",
        true,
    ),
    ("HassGetCurrentTime", "ask the time", false),
    ("HassGetCurrentDate", "ask the date", false),
    ("HassGetWeather", "ask about the weather", false),
    ("HassMediaPause", "pause the music or TV", false),
    ("HassMediaUnpause", "resume the music or TV", false),
    ("HassMediaNext", "skip to the next track", false),
    ("HassMediaPrevious", "go back to the previous track", false),
    ("HassNevermind", "cancel, never mind", false),
];

/// Options of the LLM stage.
#[derive(Debug, Clone)]
pub struct LlmOptions {
    /// Answer questions that are not commands (else they are no match).
    pub answer_questions: bool,
    /// Longest answer, in tokens.
    pub max_answer_tokens: usize,
    /// KV cache budget in tokens.
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

/// The LLM stage: an engine and one session, whose cache keeps the fixed prompt
/// prefix between utterances.
pub struct LlmFallback {
    engine: Engine,
    session: Session,
    template: ChatTemplate,
    opts: LlmOptions,
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
        let ctx = opts.context.min(engine.hparams().context_length);
        let session = engine.new_session(ctx)?;
        Ok(LlmFallback {
            engine,
            session,
            template,
            opts,
        })
    }

    /// Classifies `text` among `available` intents (those the data defines) for `home`.
    pub fn handle(&mut self, text: &str, home: &Home, available: &[String]) -> Result<LlmAnswer> {
        let intents: Vec<&(&str, &str, bool)> = CHOICES
            .iter()
            .filter(|(n, _, _)| available.iter().any(|a| a == n))
            .collect();
        if intents.is_empty() {
            return Ok(LlmAnswer::Nothing);
        }
        match self.classify(text, home, &intents) {
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

    fn classify(
        &mut self,
        text: &str,
        home: &Home,
        intents: &[&(&str, &str, bool)],
    ) -> Result<Option<IntentMatch>> {
        let entities: Vec<&crate::intent::home::Entity> =
            home.entities.iter().filter(|e| e.exposed).collect();
        let prompt = self.prompt(text, home, intents, &entities);
        let mut ids = self.engine.tokenize(&prompt, self.engine.info().add_bos)?;
        ids.extend(self.engine.tokenize("{\"intent\":", false)?);
        let mut logits = self.session.sync(&ids)?.to_vec();

        // The intent (or null, which ends the object).
        let mut texts: Vec<String> = intents
            .iter()
            .map(|(n, _, _)| format!(" \"{n}\","))
            .collect();
        texts.push(" null}".into());
        let pick = self.choose(&logits, &self.choice(texts)?)?;
        let Some(&&(intent, _, targeted)) = intents.get(pick) else {
            return Ok(None);
        };
        let mut slots = BTreeMap::new();
        if targeted && !entities.is_empty() {
            // The device, or null to name an area (and a kind of device) instead.
            logits = self.feed(" \"name\":")?;
            let mut texts: Vec<String> = entities
                .iter()
                .map(|e| format!(" \"{}\"}}", json_str(&e.name)))
                .collect();
            texts.push(" null,".into());
            let pick = self.choose(&logits, &self.choice(texts)?)?;
            if let Some(e) = entities.get(pick) {
                slots.insert("name".into(), Value::from(e.name.clone()));
            } else if !home.areas.is_empty() {
                logits = self.feed(" \"area\":")?;
                let texts = home
                    .areas
                    .iter()
                    .map(|a| format!(" \"{}\",", json_str(&a.name)))
                    .collect();
                let pick = self.choose(&logits, &self.choice(texts)?)?;
                slots.insert("area".into(), Value::from(home.areas[pick].name.clone()));
                let mut domains: Vec<&str> = entities.iter().map(|e| e.domain.as_str()).collect();
                domains.sort_unstable();
                domains.dedup();
                logits = self.feed(" \"domain\":")?;
                let texts = domains.iter().map(|d| format!(" \"{d}\"}}")).collect();
                let pick = self.choose(&logits, &self.choice(texts)?)?;
                slots.insert("domain".into(), Value::from(domains[pick]));
            }
        }
        Ok(Some(IntentMatch {
            text: text.to_string(),
            intent: Some(intent.to_string()),
            slots,
            stage: Some(Stage::Llm),
            score: 0.5,
            response: None,
        }))
    }

    /// The chat prompt: the task, the intents, the home, worked examples drawn
    /// from the home, then the utterance. Everything before the utterance is the same
    /// every time, so the session's cache keeps it.
    fn prompt(
        &self,
        text: &str,
        home: &Home,
        intents: &[&(&str, &str, bool)],
        entities: &[&crate::intent::home::Entity],
    ) -> String {
        let mut sys = String::from(
            "You control a smart home. Turn the user's request into JSON with the intent and the device. If the request is not a command for the home, the intent is null.\nIntents:\n",
        );
        for (name, what, _) in intents {
            sys.push_str(&format!("- {name}: {what}\n"));
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
        // One worked command and one question. (More examples, on devices spread
        // over the list, made SmolLM2-135M worse: it copied their intents.)
        if let Some(e) = entities.first() {
            let name = e.name.to_lowercase();
            msgs.push(ChatMessage::new(
                Role::User,
                format!("could you get the {name} going"),
            ));
            msgs.push(ChatMessage::new(
                Role::Assistant,
                format!(
                    "{{\"intent\": \"HassTurnOn\", \"name\": \"{}\"}}",
                    json_str(&e.name)
                ),
            ));
        }
        msgs.push(ChatMessage::new(Role::User, "who wrote romeo and juliet"));
        msgs.push(ChatMessage::new(Role::Assistant, "{\"intent\": null}"));
        msgs.push(ChatMessage::new(Role::User, text));
        self.template.render(&msgs, true)
    }

    fn choice(&self, texts: Vec<String>) -> Result<Choice> {
        let tokens = texts
            .iter()
            .map(|t| self.engine.tokenize(t, false))
            .collect::<Result<Vec<_>>>()?;
        Ok(Choice { texts, tokens })
    }

    /// Appends forced text; returns the logits after it.
    fn feed(&mut self, text: &str) -> Result<Vec<f32>> {
        let ids = self.engine.tokenize(text, false)?;
        Ok(self.session.prefill(&ids)?.to_vec())
    }

    /// Walks the options' token trie from `logits`, feeding the chosen tokens. Returns
    /// the chosen option's index.
    fn choose(&mut self, logits: &[f32], choice: &Choice) -> Result<usize> {
        let mut alive: Vec<usize> = (0..choice.tokens.len())
            .filter(|&i| !choice.tokens[i].is_empty())
            .collect();
        if alive.is_empty() {
            return Err(Error::Invalid("llm: a choice with no options".into()));
        }
        let mut logits = logits.to_vec();
        let mut pos = 0;
        loop {
            if let [i] = alive[..] {
                let rest = &choice.tokens[i][pos..];
                if !rest.is_empty() {
                    self.session.prefill(rest)?;
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
            let best = alive
                .iter()
                .map(|&i| choice.tokens[i][pos])
                .filter(|&t| (t as usize) < logits.len())
                .max_by(|&a, &b| logits[a as usize].total_cmp(&logits[b as usize]))
                .ok_or_else(|| Error::Invalid("llm: option token outside the vocabulary".into()))?;
            alive.retain(|&i| choice.tokens[i][pos] == best);
            logits = self.session.decode(best)?.to_vec();
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
        let g = generate(&mut self.session, &prompt, &mut sampler, &opts, |_, _| {
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

/// `s` escaped for the inside of a JSON string.
fn json_str(s: &str) -> String {
    let quoted = Value::from(s).to_string();
    quoted[1..quoted.len() - 1].to_string()
}
