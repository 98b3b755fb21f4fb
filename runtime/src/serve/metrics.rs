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

    /// The series' lines (the caller writes `# HELP`/`# TYPE` once per name).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
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

/// One model's generation metrics (the `model` label).
#[derive(Default)]
pub struct LlmMetrics {
    /// The model's name.
    pub model: String,
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
}

impl LlmMetrics {
    /// Empty metrics of the model `model`.
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_string(),
            ..Default::default()
        }
    }

    /// Sets the last generation's decode speed.
    pub fn set_tokens_per_s(&self, tps: f64) {
        self.last_tokens_per_s.store(tps.to_bits(), Relaxed);
    }

    fn label(&self) -> String {
        format!("model=\"{}\"", self.model.replace(['"', '\\', '\n'], "_"))
    }
}

/// Everything `/metrics` reports. Shared by the HTTP and Wyoming sides.
#[derive(Default)]
pub struct Metrics {
    /// Per model, in the order they were loaded.
    pub llms: Vec<std::sync::Arc<LlmMetrics>>,
    /// HTTP responses by (route, status).
    http: Mutex<BTreeMap<(String, u16), u64>>,
    /// Speech-to-text wall time, and seconds of audio transcribed.
    pub asr: Histogram,
    asr_audio_ms: AtomicU64,
    /// Open Wyoming connections and events received.
    pub wyoming_connections: AtomicI64,
    pub wyoming_events: AtomicU64,
}

/// A per-model series: name, type, help, value.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&LlmMetrics) -> String,
);

const LLM_SERIES: [Series; 8] = [
    (
        "hearth_llm_queue_depth",
        "gauge",
        "Generation requests waiting for the model.",
        |m| m.queue_depth.load(Relaxed).max(0).to_string(),
    ),
    (
        "hearth_llm_queue_capacity",
        "gauge",
        "Most generation requests that may wait.",
        |m| m.queue_capacity.load(Relaxed).to_string(),
    ),
    (
        "hearth_llm_rejected_total",
        "counter",
        "Generation requests refused because the queue was full.",
        |m| m.rejected.load(Relaxed).to_string(),
    ),
    (
        "hearth_llm_cancelled_total",
        "counter",
        "Generations stopped or skipped because the client went away.",
        |m| m.cancelled.load(Relaxed).to_string(),
    ),
    (
        "hearth_llm_requests_total",
        "counter",
        "Generations run to completion.",
        |m| m.completed.load(Relaxed).to_string(),
    ),
    (
        "hearth_llm_prompt_tokens_total",
        "counter",
        "Prompt tokens evaluated.",
        |m| m.prompt_tokens.load(Relaxed).to_string(),
    ),
    (
        "hearth_llm_completion_tokens_total",
        "counter",
        "Tokens generated.",
        |m| m.completion_tokens.load(Relaxed).to_string(),
    ),
    (
        "hearth_llm_tokens_per_second",
        "gauge",
        "Decode speed of the last generation.",
        |m| f64::from_bits(m.last_tokens_per_s.load(Relaxed)).to_string(),
    ),
];

impl Metrics {
    /// Empty metrics over these models' series.
    pub fn new(llms: Vec<std::sync::Arc<LlmMetrics>>) -> Self {
        Self {
            llms,
            ..Default::default()
        }
    }

    /// Counts one HTTP response.
    pub fn http_response(&self, route: &str, status: u16) {
        let mut m = self.http.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((route.to_string(), status)).or_default() += 1;
    }

    /// Adds transcribed audio.
    pub fn asr_audio(&self, seconds: f32) {
        self.asr_audio_ms
            .fetch_add((f64::from(seconds) * 1e3) as u64, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::new();
        for (name, kind, help, value) in LLM_SERIES {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for m in &self.llms {
                let _ = writeln!(o, "{name}{{{}}} {}", m.label(), value(m));
            }
        }
        let mut line = |name: &str, kind: &str, help: &str, v: String| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        line(
            "hearth_asr_audio_seconds_total",
            "counter",
            "Seconds of audio transcribed.",
            (self.asr_audio_ms.load(Relaxed) as f64 / 1e3).to_string(),
        );
        line(
            "hearth_wyoming_connections",
            "gauge",
            "Open Wyoming connections.",
            self.wyoming_connections.load(Relaxed).to_string(),
        );
        line(
            "hearth_wyoming_events_total",
            "counter",
            "Wyoming events received.",
            self.wyoming_events.load(Relaxed).to_string(),
        );
        type Pick = fn(&LlmMetrics) -> &Histogram;
        let hists: [(&str, &str, Pick); 2] = [
            (
                "hearth_llm_queue_wait_seconds",
                "Time a generation request waited for the model.",
                |m| &m.queue_wait,
            ),
            (
                "hearth_llm_generation_seconds",
                "Time spent generating (prompt + decode).",
                |m| &m.generation,
            ),
        ];
        for (name, help, pick) in hists {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} histogram");
            for m in &self.llms {
                pick(m).render(&mut o, name, &m.label());
            }
        }
        let name = "hearth_asr_seconds";
        let _ = writeln!(
            o,
            "# HELP {name} Speech-to-text time per request.\n# TYPE {name} histogram"
        );
        self.asr.render(&mut o, name, "");
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
        let llm = std::sync::Arc::new(LlmMetrics::new("m"));
        let other = std::sync::Arc::new(LlmMetrics::new("n"));
        let m = Metrics::new(vec![llm.clone(), other]);
        llm.generation.observe(Duration::from_millis(30));
        llm.generation.observe(Duration::from_secs(3));
        m.http_response("/health", 200);
        let t = m.render();
        assert!(t.contains("hearth_llm_generation_seconds_bucket{model=\"m\",le=\"0.05\"} 1"));
        assert!(t.contains("hearth_llm_generation_seconds_bucket{model=\"m\",le=\"5\"} 2"));
        assert!(t.contains("hearth_llm_generation_seconds_count{model=\"m\"} 2"));
        assert!(t.contains("hearth_http_responses_total{route=\"/health\",status=\"200\"} 1"));
        assert!(t.contains(
            "# TYPE hearth_llm_queue_depth gauge\nhearth_llm_queue_depth{model=\"m\"} 0\nhearth_llm_queue_depth{model=\"n\"} 0\n"
        ));
        assert!(t.contains("hearth_llm_generation_seconds_count{model=\"n\"} 0"));
        assert_eq!(
            t.matches("# TYPE hearth_llm_generation_seconds histogram")
                .count(),
            1
        );
    }
}
