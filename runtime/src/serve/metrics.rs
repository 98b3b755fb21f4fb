//! Counters, gauges and latency histograms for `/metrics` (Prometheus text format 0.0.4).
//! Plain atomics and one small mutex per histogram: no metrics crate for a dozen series.
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets: 10 ms … 2 min.
const BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

/// A cumulative latency histogram.
#[derive(Default)]
pub struct Histogram {
    inner: Mutex<HistogramData>,
}

#[derive(Default)]
struct HistogramData {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (c, &le) in h.counts.iter_mut().zip(&BUCKETS) {
            if s <= le {
                *c += 1;
            }
        }
        h.count += 1;
        h.sum += s;
    }

    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let sep = if labels.is_empty() { "" } else { "," };
        for (c, le) in h.counts.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", h.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", h.count);
    }
}

/// Everything `/metrics` reports. Shared by the HTTP and Wyoming sides.
#[derive(Default)]
pub struct Metrics {
    /// The LLM's name (the `model` label).
    pub model: String,
    /// HTTP responses by (route, status).
    http: Mutex<BTreeMap<(String, u16), u64>>,
    /// Generation requests waiting in the queue (not yet running).
    pub queue_depth: AtomicI64,
    /// The queue's capacity.
    pub queue_capacity: AtomicI64,
    /// Requests turned away because the queue was full.
    pub rejected: AtomicU64,
    /// Generations stopped because their client went away.
    pub cancelled: AtomicU64,
    /// Generations run to the end.
    pub completed: AtomicU64,
    /// Prompt tokens evaluated, tokens generated.
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    /// Decode speed of the last generation, tokens/s (f64 bits).
    last_tokens_per_s: AtomicU64,
    /// Time from enqueue to start, and time spent generating.
    pub queue_wait: Histogram,
    pub generation: Histogram,
    /// Speech-to-text wall time, and seconds of audio transcribed.
    pub asr: Histogram,
    asr_audio_ms: AtomicU64,
    /// Open Wyoming connections and events received.
    pub wyoming_connections: AtomicI64,
    pub wyoming_events: AtomicU64,
}

impl Metrics {
    /// Empty metrics labelled with the LLM's name.
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_string(),
            ..Default::default()
        }
    }

    /// Counts one HTTP response.
    pub fn http_response(&self, route: &str, status: u16) {
        let mut m = self.http.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((route.to_string(), status)).or_default() += 1;
    }

    /// Sets the last generation's decode speed.
    pub fn set_tokens_per_s(&self, tps: f64) {
        self.last_tokens_per_s.store(tps.to_bits(), Relaxed);
    }

    /// Adds transcribed audio.
    pub fn asr_audio(&self, seconds: f32) {
        self.asr_audio_ms
            .fetch_add((f64::from(seconds) * 1e3) as u64, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let model = format!("model=\"{}\"", self.model.replace(['"', '\\', '\n'], "_"));
        let mut line = |name: &str, kind: &str, help: &str, labels: &str, v: String| {
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{labels}}}")
            };
            let _ = writeln!(
                o,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{labels} {v}"
            );
        };
        line(
            "hearth_llm_queue_depth",
            "gauge",
            "Generation requests waiting for the model.",
            &model,
            self.queue_depth.load(Relaxed).max(0).to_string(),
        );
        line(
            "hearth_llm_queue_capacity",
            "gauge",
            "Most generation requests that may wait.",
            &model,
            self.queue_capacity.load(Relaxed).to_string(),
        );
        line(
            "hearth_llm_rejected_total",
            "counter",
            "Generation requests refused because the queue was full.",
            &model,
            self.rejected.load(Relaxed).to_string(),
        );
        line(
            "hearth_llm_cancelled_total",
            "counter",
            "Generations stopped or skipped because the client went away.",
            &model,
            self.cancelled.load(Relaxed).to_string(),
        );
        line(
            "hearth_llm_requests_total",
            "counter",
            "Generations run to completion.",
            &model,
            self.completed.load(Relaxed).to_string(),
        );
        line(
            "hearth_llm_prompt_tokens_total",
            "counter",
            "Prompt tokens evaluated.",
            &model,
            self.prompt_tokens.load(Relaxed).to_string(),
        );
        line(
            "hearth_llm_completion_tokens_total",
            "counter",
            "Tokens generated.",
            &model,
            self.completion_tokens.load(Relaxed).to_string(),
        );
        line(
            "hearth_llm_tokens_per_second",
            "gauge",
            "Decode speed of the last generation.",
            &model,
            f64::from_bits(self.last_tokens_per_s.load(Relaxed)).to_string(),
        );
        line(
            "hearth_asr_audio_seconds_total",
            "counter",
            "Seconds of audio transcribed.",
            "",
            (self.asr_audio_ms.load(Relaxed) as f64 / 1e3).to_string(),
        );
        line(
            "hearth_wyoming_connections",
            "gauge",
            "Open Wyoming connections.",
            "",
            self.wyoming_connections.load(Relaxed).to_string(),
        );
        line(
            "hearth_wyoming_events_total",
            "counter",
            "Wyoming events received.",
            "",
            self.wyoming_events.load(Relaxed).to_string(),
        );
        self.queue_wait.render(
            &mut o,
            "hearth_llm_queue_wait_seconds",
            "Time a generation request waited for the model.",
            &model,
        );
        self.generation.render(
            &mut o,
            "hearth_llm_generation_seconds",
            "Time spent generating (prompt + decode).",
            &model,
        );
        self.asr.render(
            &mut o,
            "hearth_asr_seconds",
            "Speech-to-text time per request.",
            "",
        );
        let _ = writeln!(
            o,
            "# HELP hearth_http_responses_total HTTP responses by route and status.\n# TYPE hearth_http_responses_total counter"
        );
        let http = self.http.lock().unwrap_or_else(|e| e.into_inner());
        for ((route, status), n) in http.iter() {
            let _ = writeln!(
                o,
                "hearth_http_responses_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_text_is_prometheus() {
        let m = Metrics::new("m");
        m.generation.observe(Duration::from_millis(30));
        m.generation.observe(Duration::from_secs(3));
        m.http_response("/health", 200);
        let t = m.render();
        assert!(t.contains("hearth_llm_generation_seconds_bucket{model=\"m\",le=\"0.05\"} 1"));
        assert!(t.contains("hearth_llm_generation_seconds_bucket{model=\"m\",le=\"5\"} 2"));
        assert!(t.contains("hearth_llm_generation_seconds_count{model=\"m\"} 2"));
        assert!(t.contains("hearth_http_responses_total{route=\"/health\",status=\"200\"} 1"));
        assert!(t.contains(
            "# TYPE hearth_llm_queue_depth gauge\nhearth_llm_queue_depth{model=\"m\"} 0"
        ));
    }
}
