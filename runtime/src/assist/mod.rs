//! The assistant: audio or text in, an intent out, actions run, a response said.
//!
//! ```text
//! samples ─ Transcriber ─ transcript ─ IntentEngine (template → fuzzy) ─┬─ Event ─ Actions
//!                                        └─ LlmFallback (constrained) ──┘   └─ Responses
//! ```
//!
//! [`Assistant`] holds the loaded models so the CLI (`hearth assist`), the C API and a
//! server can share one pipeline; every stage is timed.

pub mod llm;
pub mod quantity;
pub mod response;

use std::time::Instant;

use serde_json::{json, Value};

use crate::action::{Actions, Event, Outcome};
use crate::intent::{Home, IntentEngine, IntentMatch, Stage};
use llm::{LlmAnswer, LlmFallback};
use response::Responses;

/// Milliseconds spent in each stage (0 for stages that did not run).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Speech-to-text.
    pub stt_ms: f64,
    /// Template and fuzzy matching.
    pub intent_ms: f64,
    /// The LLM fallback (intent choice and/or answer).
    pub llm_ms: f64,
    /// Response rendering and the action sinks.
    pub action_ms: f64,
    /// Everything.
    pub total_ms: f64,
}

/// What the assistant did with one utterance.
#[derive(Debug, Clone)]
pub struct AssistResult {
    /// What was heard (or typed).
    pub transcript: String,
    /// The match (`intent: None` when nothing matched).
    pub matched: IntentMatch,
    /// What to say back.
    pub response: String,
    /// Each sink's outcome (empty when nothing matched).
    pub actions: Vec<Outcome>,
    /// Stage times.
    pub timings: Timings,
}

impl AssistResult {
    /// `{"transcript", "intent", "slots", "stage", "score", "response", "actions",
    /// "timings_ms": {"stt", "intent", "llm", "action", "total"}}` (`hearth assist --json`
    /// adds `"file"`).
    pub fn to_json(&self) -> Value {
        let ms = |x: f64| (x * 10.0).round() / 10.0;
        let t = &self.timings;
        json!({
            "transcript": self.transcript,
            "intent": self.matched.intent,
            "slots": self.matched.slots,
            "stage": self.matched.stage.map(Stage::as_str),
            "score": (f64::from(self.matched.score) * 1000.0).round() / 1000.0,
            "response": self.response,
            "actions": self.actions.iter().map(|o| json!({"sink": o.sink, "error": o.error})).collect::<Vec<_>>(),
            "timings_ms": {
                "stt": ms(t.stt_ms),
                "intent": ms(t.intent_ms),
                "llm": ms(t.llm_ms),
                "action": ms(t.action_ms),
                "total": ms(t.total_ms),
            },
        })
    }
}

/// The loaded pipeline.
pub struct Assistant {
    intents: IntentEngine,
    home: Home,
    responses: Responses,
    actions: Actions,
    llm: Option<LlmFallback>,
    #[cfg(feature = "whisper")]
    transcriber: Option<crate::voice::Transcriber>,
}

impl Assistant {
    /// Text-only pipeline: intents for `home`, with these sinks, no LLM.
    pub fn new(intents: IntentEngine, home: Home, actions: Actions) -> Self {
        let responses = Responses::new(intents.responses());
        Assistant {
            intents,
            home,
            responses,
            actions,
            llm: None,
            #[cfg(feature = "whisper")]
            transcriber: None,
        }
    }

    /// Adds the LLM stage (tried when templates and fuzzy matching find nothing).
    pub fn with_llm(mut self, llm: LlmFallback) -> Self {
        self.llm = Some(llm);
        self
    }

    /// Adds speech-to-text, biased towards the home's entity, area and floor names.
    #[cfg(feature = "whisper")]
    pub fn with_transcriber(mut self, t: crate::voice::Transcriber) -> Self {
        self.transcriber = Some(t.with_prompt(&home_names(&self.home)));
        self
    }

    /// The home.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// The intent engine.
    pub fn intents(&self) -> &IntentEngine {
        &self.intents
    }

    /// 16 kHz mono samples → transcript → [`Assistant::handle_text`].
    #[cfg(feature = "whisper")]
    pub fn handle_audio(&mut self, samples: &[f32]) -> crate::Result<AssistResult> {
        let start = Instant::now();
        let t = self.transcriber.as_mut().ok_or_else(|| {
            crate::Error::Invalid("the assistant has no speech-to-text model".into())
        })?;
        let transcript = t.transcribe(samples)?;
        let stt_ms = ms_since(start);
        let mut r = self.handle_text(transcript.text.trim());
        r.timings.stt_ms = stt_ms;
        r.timings.total_ms = ms_since(start);
        Ok(r)
    }

    /// Text → intent (template, fuzzy, then the LLM if any) → actions → response.
    pub fn handle_text(&mut self, text: &str) -> AssistResult {
        let start = Instant::now();
        let mut timings = Timings::default();
        let mut matched = self.intents.recognize(text);
        timings.intent_ms = ms_since(start);
        let mut answer = None;
        if matched.intent.is_none() && !text.trim().is_empty() {
            if let Some(llm) = &mut self.llm {
                let t = Instant::now();
                match llm.handle(text, &self.home, self.intents.intent_names()) {
                    Ok(LlmAnswer::Intent(m)) => matched = m,
                    Ok(LlmAnswer::Reply(r)) => {
                        // Not a command, answered: no intent, but the LLM stage spoke.
                        matched.stage = Some(Stage::Llm);
                        answer = Some(r);
                    }
                    Ok(LlmAnswer::Nothing) => {}
                    Err(e) => tracing::warn!("llm fallback: {e}"),
                }
                timings.llm_ms = ms_since(t);
            }
        }
        let t = Instant::now();
        let rendered = self.responses.render(&matched, &self.home);
        let mut actions = Vec::new();
        if let Some(event) = Event::from_match(&matched, &self.home, rendered.clone()) {
            actions = self.actions.dispatch(&event);
        }
        let response = match (&matched.intent, rendered, answer) {
            (Some(_), Some(r), _) => r,
            (Some(_), None, _) => "Done".to_string(),
            (None, _, Some(a)) => a,
            (None, _, None) => self.responses.no_intent().to_string(),
        };
        timings.action_ms = ms_since(t);
        timings.total_ms = ms_since(start);
        AssistResult {
            transcript: text.to_string(),
            matched,
            response,
            actions,
            timings,
        }
    }
}

/// Entity (exposed), area and floor names: the speech-to-text prompt.
pub fn home_names(home: &Home) -> Vec<String> {
    let mut names: Vec<String> = home
        .entities
        .iter()
        .filter(|e| e.exposed)
        .map(|e| e.name.clone())
        .chain(home.areas.iter().map(|a| a.name.clone()))
        .chain(home.floors.iter().map(|f| f.name.clone()))
        .collect();
    names.dedup();
    names
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
