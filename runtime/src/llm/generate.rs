//! Generation: prefill a prompt, then sample token after token, streaming text
//! pieces that always end on a UTF-8 character boundary, honouring stop tokens,
//! stop strings and cancellation.
use crate::llm::engine::Session;
use crate::llm::sampler::Sampler;
use crate::{Error, Result};
use std::ops::ControlFlow;
use std::time::Instant;

/// Generation settings.
#[derive(Clone, Debug, Default)]
pub struct GenerateOptions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Stop (and cut the text) when one of these appears in the output.
    pub stop_strings: Vec<String>,
    /// Tokens that end generation; `None` = the model's (eos, end of turn).
    pub stop_ids: Option<Vec<u32>>,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `max_tokens` reached.
    MaxTokens,
    /// A stop token was sampled (not included in the output).
    StopToken(u32),
    /// A stop string appeared (cut from the text; its tokens are in `ids`).
    StopString,
    /// The callback asked to stop.
    Cancelled,
    /// The session's context budget is used up.
    ContextFull,
}

/// What a generation produced, with timings.
#[derive(Clone, Debug)]
pub struct Generation {
    /// Generated token ids (stop token excluded).
    pub ids: Vec<u32>,
    /// Generated text (stop string excluded).
    pub text: String,
    /// Prompt tokens that actually ran (the rest came from the cache).
    pub prompt_tokens_run: usize,
    /// Prompt processing time.
    pub prompt_ms: f64,
    /// Generation time (sampling and decoding).
    pub gen_ms: f64,
    /// Why it stopped.
    pub stop: StopReason,
}

impl Generation {
    /// Generated tokens per second.
    pub fn tokens_per_s(&self) -> f64 {
        if self.gen_ms > 0.0 {
            self.ids.len() as f64 / (self.gen_ms / 1000.0)
        } else {
            0.0
        }
    }
}

/// Incremental detokenizer: turns a stream of ids into text pieces, holding back
/// bytes until they form complete UTF-8 characters (a byte-level BPE token can end
/// in the middle of one; the decoder then yields U+FFFD).
///
/// Same scheme as Hugging Face's streamers: decode a short window of recent ids and
/// emit what it adds over the window without the newest ids.
#[derive(Clone, Debug, Default)]
pub struct TextStream {
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl TextStream {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `id`; return the new complete text, if any. `decode` turns ids to text.
    pub fn step(
        &mut self,
        id: u32,
        decode: impl Fn(&[u32]) -> Result<String>,
    ) -> Result<Option<String>> {
        self.ids.push(id);
        let before = decode(&self.ids[self.prefix..self.read])?;
        let now = decode(&self.ids[self.prefix..])?;
        if now.len() > before.len()
            && !now.ends_with('\u{FFFD}')
            && now.is_char_boundary(before.len())
        {
            let piece = now[before.len()..].to_string();
            self.prefix = self.read;
            self.read = self.ids.len();
            // Keep the window short: only ids after `prefix` are ever decoded again.
            if self.prefix > 64 {
                self.ids.drain(..self.prefix);
                self.read -= self.prefix;
                self.prefix = 0;
            }
            Ok(Some(piece))
        } else {
            Ok(None)
        }
    }
}

/// Finds stop strings in streamed text, holding back any tail that could still
/// become one so a stop string is never half-printed.
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    text: String,
    emitted: usize,
}

impl StopMatcher {
    /// Watch for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..Default::default()
        }
    }

    /// Add a piece. Returns the text now safe to emit and whether a stop string
    /// was found (the returned text then ends just before it).
    pub fn push(&mut self, piece: &str) -> (&str, bool) {
        let search_from = self.emitted;
        self.text.push_str(piece);
        let found = self
            .stops
            .iter()
            .filter_map(|s| self.text[search_from..].find(s.as_str()))
            .min();
        let (end, stop) = match found {
            Some(i) => (search_from + i, true),
            None => {
                // Longest suffix of the text that is a proper prefix of a stop string.
                let hold = self
                    .stops
                    .iter()
                    .flat_map(|s| {
                        (1..s.len())
                            .filter(|&k| s.is_char_boundary(k))
                            .map(move |k| &s[..k])
                    })
                    .filter(|p| self.text[search_from..].ends_with(p))
                    .map(str::len)
                    .max()
                    .unwrap_or(0);
                (self.text.len() - hold, false)
            }
        };
        let start = self.emitted;
        self.emitted = end;
        if stop {
            self.text.truncate(end);
        }
        (&self.text[start..end], stop)
    }

    /// Text not yet emitted (held back as a possible stop-string prefix).
    pub fn flush(&mut self) -> &str {
        let start = self.emitted;
        self.emitted = self.text.len();
        &self.text[start..]
    }

    /// All text accepted so far (stop string excluded).
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Generate a reply to `prompt` (token ids) in `session`, which keeps what it has
/// cached: a prompt that extends the session's tokens only runs the new part.
/// `on_piece(text, id)` receives text as it becomes final; returning
/// `ControlFlow::Break(())` cancels.
pub fn generate(
    session: &mut Session,
    prompt: &[u32],
    sampler: &mut Sampler,
    opts: &GenerateOptions,
    mut on_piece: impl FnMut(&str, u32) -> ControlFlow<()>,
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(Error::Invalid("empty prompt".into()));
    }
    if prompt.len() >= session.capacity() {
        return Err(Error::Invalid(format!(
            "context full: the prompt has {} tokens and the context only {} (raise --ctx)",
            prompt.len(),
            session.capacity()
        )));
    }
    let engine = session.engine().clone();
    let has_tokenizer = engine.has_tokenizer();
    if !has_tokenizer && !opts.stop_strings.is_empty() {
        return Err(Error::Invalid(
            "stop strings need a tokenizer, and this model has none".into(),
        ));
    }
    let stop_ids = opts
        .stop_ids
        .clone()
        .unwrap_or_else(|| engine.info().stop_ids.clone());
    let decode = |ids: &[u32]| -> Result<String> {
        if has_tokenizer {
            engine.detokenize(ids)
        } else {
            Ok(String::new())
        }
    };

    let t0 = Instant::now();
    let cached = session
        .tokens()
        .iter()
        .zip(prompt)
        .take_while(|(a, b)| a == b)
        .count()
        .min(prompt.len() - 1);
    let prompt_tokens_run = prompt.len() - cached;
    // One copy of the logits per call (the session's buffer is overwritten by each decode).
    let mut logits = session.sync(prompt)?.to_vec();
    let prompt_ms = t0.elapsed().as_secs_f64() * 1e3;

    let t1 = Instant::now();
    let mut history: Vec<u32> = Vec::with_capacity(prompt.len() + opts.max_tokens);
    history.extend_from_slice(prompt);
    let mut ids = Vec::with_capacity(opts.max_tokens);
    let mut stream = TextStream::new();
    let mut stops = StopMatcher::new(&opts.stop_strings);
    let mut stop = StopReason::MaxTokens;
    while ids.len() < opts.max_tokens {
        let id = sampler.sample(&logits, &history);
        if stop_ids.contains(&id) {
            stop = StopReason::StopToken(id);
            break;
        }
        ids.push(id);
        history.push(id);
        if let Some(piece) = stream.step(id, decode)? {
            let (out, hit) = stops.push(&piece);
            if !out.is_empty() && on_piece(out, id).is_break() {
                stop = StopReason::Cancelled;
                break;
            }
            if hit {
                stop = StopReason::StopString;
                break;
            }
        }
        if ids.len() == opts.max_tokens {
            break;
        }
        if session.len() >= session.capacity() {
            stop = StopReason::ContextFull;
            break;
        }
        logits.copy_from_slice(session.decode(id)?);
    }
    if stop != StopReason::StopString && stop != StopReason::Cancelled {
        let rest = stops.flush().to_string();
        if !rest.is_empty() {
            let _ = on_piece(&rest, *ids.last().unwrap_or(&0));
        }
    }
    let text = if has_tokenizer {
        stops.text().to_string()
    } else {
        String::new()
    };
    Ok(Generation {
        ids,
        text,
        prompt_tokens_run,
        prompt_ms,
        gen_ms: t1.elapsed().as_secs_f64() * 1e3,
        stop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake byte-level decoder: each id is one byte, invalid UTF-8 → U+FFFD.
    fn bytes(ids: &[u32]) -> Result<String> {
        Ok(String::from_utf8_lossy(&ids.iter().map(|&i| i as u8).collect::<Vec<_>>()).into_owned())
    }

    #[test]
    fn text_stream_cuts_at_char_boundaries() {
        let text = "héllo, 世界 🙂!";
        let mut s = TextStream::new();
        let mut out = String::new();
        let mut pieces = 0;
        for &b in text.as_bytes() {
            if let Some(p) = s.step(b as u32, bytes).unwrap() {
                assert!(!p.contains('\u{FFFD}'), "partial character leaked: {p:?}");
                out.push_str(&p);
                pieces += 1;
            }
        }
        assert_eq!(out, text);
        // One piece per character: multi-byte characters come out whole.
        assert_eq!(pieces, text.chars().count());
    }

    #[test]
    fn text_stream_long_input_stays_correct() {
        let text: String = (0..500)
            .map(|i| if i % 7 == 0 { 'é' } else { 'a' })
            .collect();
        let mut s = TextStream::new();
        let mut out = String::new();
        for &b in text.as_bytes() {
            if let Some(p) = s.step(b as u32, bytes).unwrap() {
                out.push_str(&p);
            }
        }
        assert_eq!(out, text);
        assert!(s.ids.len() < 100, "window grows: {}", s.ids.len());
    }

    #[test]
    fn stop_strings_are_never_half_printed() {
        let mut m = StopMatcher::new(&["\nUser:".to_string()]);
        let mut printed = String::new();
        let mut hit = false;
        for piece in ["Hello", " there", "\n", "Us", "er", ": more"] {
            let (out, stop) = m.push(piece);
            printed.push_str(out);
            if stop {
                hit = true;
                break;
            }
        }
        assert!(hit);
        assert_eq!(printed, "Hello there");
        assert_eq!(m.text(), "Hello there");

        // A held-back prefix that does not become a stop string is released.
        let mut m = StopMatcher::new(&["STOP".to_string()]);
        let (a, _) = m.push("ab ST");
        assert_eq!(a, "ab ");
        let (b, stop) = m.push("ART");
        assert_eq!(b, "START");
        assert!(!stop);
        m.push("x S");
        assert_eq!(m.flush(), "S");
    }
}
