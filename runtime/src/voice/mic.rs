//! The microphone: [`MicSource`], an [`AudioSource`] over a `cpal` input stream (ALSA on
//! Linux), and the device list ([`input_devices`]).
//!
//! cpal calls back on its own real-time thread with interleaved samples in the device's
//! format; the callback mixes them to mono f32 and appends them to a [`SampleRing`], which
//! [`MicSource::read`] drains. A stream error that means the device is gone, or a stall (no
//! samples for [`STALL`]), is reported as [`CaptureError::Lost`], and the capture loop
//! reopens the device.
use std::sync::Arc;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{ErrorKind, FromSample, SampleFormat, SizedSample};

use super::audio::SAMPLE_RATE;
use super::capture::{AudioSource, CaptureError};
use super::ring::{Popped, SampleRing};

/// Seconds of audio the ring holds while the consumer is busy (speech-to-text, the LLM).
const RING_SECONDS: u32 = 30;
/// No samples for this long from a running stream: treat the device as lost.
pub const STALL: Duration = Duration::from_secs(3);

/// An input device, as listed by [`input_devices`].
#[derive(Clone, Debug)]
pub struct InputDevice {
    /// What `--device` matches: the backend's id (ALSA: the PCM name, e.g. `default`,
    /// `plughw:CARD=1,DEV=0`).
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// The system's default input.
    pub is_default: bool,
}

fn backend(e: cpal::Error) -> CaptureError {
    match e.kind() {
        ErrorKind::DeviceNotAvailable | ErrorKind::HostUnavailable => CaptureError::NoDevice(
            format!("audio input not available: {e} (`hearth devices` lists the inputs)"),
        ),
        ErrorKind::UnsupportedConfig => CaptureError::Unsupported(format!(
            "the audio input does not support its own default format: {e}"
        )),
        _ => CaptureError::Other(crate::Error::Invalid(format!("audio input: {e}"))),
    }
}

fn device_id(d: &cpal::Device) -> String {
    d.id()
        .map_or_else(|_| d.to_string(), |id| id.id().to_string())
}

fn device_name(d: &cpal::Device) -> String {
    d.description()
        .map_or_else(|_| device_id(d), |desc| desc.name().to_string())
}

/// The input devices the default audio host knows, the default one first.
pub fn input_devices() -> Result<Vec<InputDevice>, CaptureError> {
    let host = cpal::default_host();
    let default = host.default_input_device().map(|d| device_id(&d));
    let mut out: Vec<InputDevice> = host
        .input_devices()
        .map_err(backend)?
        .map(|d| {
            let id = device_id(&d);
            InputDevice {
                is_default: default.as_deref() == Some(id.as_str()),
                name: device_name(&d),
                id,
            }
        })
        .collect();
    // ALSA lists `default` only when the configuration gives it a hint.
    if let Some(id) = default.filter(|id| !out.iter().any(|d| &d.id == id)) {
        out.push(InputDevice {
            name: "Default audio input".into(),
            id,
            is_default: true,
        });
    }
    out.sort_by_key(|d| !d.is_default);
    Ok(out)
}

/// Finds a device by id or name: exact match first, then a unique case-insensitive
/// substring. `None`: the default input.
fn find_device(host: &cpal::Host, wanted: Option<&str>) -> Result<cpal::Device, CaptureError> {
    let Some(wanted) = wanted else {
        return host.default_input_device().ok_or_else(|| {
            CaptureError::NoDevice("no default audio input device (see `hearth devices`)".into())
        });
    };
    let devices: Vec<cpal::Device> = host.input_devices().map_err(backend)?.collect();
    let exact = devices
        .iter()
        .position(|d| device_id(d) == wanted || device_name(d) == wanted);
    let lower = wanted.to_lowercase();
    let partial: Vec<usize> = (0..devices.len())
        .filter(|&i| {
            device_id(&devices[i]).to_lowercase().contains(&lower)
                || device_name(&devices[i]).to_lowercase().contains(&lower)
        })
        .collect();
    let index = match (exact, partial.as_slice()) {
        (Some(i), _) | (None, &[i]) => i,
        (None, []) => {
            return Err(CaptureError::NoDevice(format!(
                "no audio input device matches {wanted:?} (`hearth devices` lists them)"
            )))
        }
        (None, many) => {
            let ids: Vec<String> = many.iter().map(|&i| device_id(&devices[i])).collect();
            return Err(CaptureError::NoDevice(format!(
                "{wanted:?} matches several audio inputs: {}",
                ids.join(", ")
            )));
        }
    };
    Ok(devices
        .into_iter()
        .nth(index)
        .expect("index from this list"))
}

/// A live microphone.
pub struct MicSource {
    wanted: Option<String>,
    ring: Arc<SampleRing>,
    /// The running stream; dropping it stops capture. (`cpal::Stream` is not `Send` on
    /// every platform, so a `MicSource` stays on the thread that opened it.)
    stream: Option<cpal::Stream>,
    rate: u32,
}

impl MicSource {
    /// Opens the named input device (id or name, see [`input_devices`]), or the default.
    pub fn open(device: Option<&str>) -> Result<Self, CaptureError> {
        let mut mic = Self {
            wanted: device.map(str::to_string),
            ring: Arc::new(SampleRing::new(1)),
            stream: None,
            rate: 0,
        };
        mic.start()?;
        Ok(mic)
    }

    /// (Re)opens the device and starts its stream.
    fn start(&mut self) -> Result<(), CaptureError> {
        self.stream = None;
        let host = cpal::default_host();
        let device = find_device(&host, self.wanted.as_deref())?;
        let supported = choose_config(&device)?;
        let config = supported.config();
        if config.channels == 0 || config.sample_rate == 0 {
            return Err(CaptureError::Unsupported(format!(
                "audio input {} reports {} channels at {} Hz",
                device_id(&device),
                config.channels,
                config.sample_rate
            )));
        }
        let ring = Arc::new(SampleRing::new(
            (config.sample_rate * RING_SECONDS) as usize,
        ));
        let stream = match supported.sample_format() {
            SampleFormat::I8 => build::<i8>(&device, config, &ring),
            SampleFormat::I16 => build::<i16>(&device, config, &ring),
            SampleFormat::I24 => build::<cpal::I24>(&device, config, &ring),
            SampleFormat::I32 => build::<i32>(&device, config, &ring),
            SampleFormat::I64 => build::<i64>(&device, config, &ring),
            SampleFormat::U8 => build::<u8>(&device, config, &ring),
            SampleFormat::U16 => build::<u16>(&device, config, &ring),
            SampleFormat::U24 => build::<cpal::U24>(&device, config, &ring),
            SampleFormat::U32 => build::<u32>(&device, config, &ring),
            SampleFormat::U64 => build::<u64>(&device, config, &ring),
            SampleFormat::F32 => build::<f32>(&device, config, &ring),
            SampleFormat::F64 => build::<f64>(&device, config, &ring),
            other => {
                return Err(CaptureError::Unsupported(format!(
                    "audio input {} delivers {other:?} samples, which this program cannot read",
                    device_id(&device)
                )))
            }
        }?;
        stream.play().map_err(backend)?;
        tracing::info!(
            "audio input {} ({}): {} Hz, {} channel(s), {:?}",
            device_id(&device),
            device_name(&device),
            config.sample_rate,
            config.channels,
            supported.sample_format()
        );
        self.ring = ring;
        self.rate = config.sample_rate;
        self.stream = Some(stream);
        Ok(())
    }
}

/// Whisper's own format — 16 kHz mono — when the device offers it (no resampling or
/// down-mixing here; on a board, less CPU), else the device's default. Sample formats are
/// ranked by how cheaply they convert.
fn choose_config(device: &cpal::Device) -> Result<cpal::SupportedStreamConfig, CaptureError> {
    let rank = |f: SampleFormat| match f {
        SampleFormat::I16 => 0,
        SampleFormat::F32 => 1,
        SampleFormat::I32 => 2,
        _ => 3,
    };
    let whisper_like = device.supported_input_configs().ok().and_then(|ranges| {
        ranges
            .filter(|r| r.channels() == 1 && rank(r.sample_format()) < 3)
            .filter_map(|r| r.try_with_sample_rate(SAMPLE_RATE))
            .min_by_key(|c| rank(c.sample_format()))
    });
    match whisper_like {
        Some(c) => Ok(c),
        None => device.default_input_config().map_err(backend),
    }
}

/// Builds a stream whose callback mixes each frame to mono f32 and queues it.
fn build<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    ring: &Arc<SampleRing>,
) -> Result<cpal::Stream, CaptureError>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels);
    let data_ring = Arc::clone(ring);
    let error_ring = Arc::clone(ring);
    let mut mono = Vec::new();
    device
        .build_input_stream::<T, _, _>(
            config,
            move |data: &[T], _| {
                mono.clear();
                mono.extend(data.chunks_exact(channels).map(|frame| {
                    frame.iter().map(|&s| f32::from_sample_(s)).sum::<f32>() / channels as f32
                }));
                if !data_ring.push(&mono) {
                    // The consumer is far behind and samples are being dropped anyway. A
                    // source that is not paced in real time (ALSA's `file` plugin) would
                    // otherwise spin here at full speed and starve the consumer of CPU.
                    std::thread::sleep(Duration::from_millis(10));
                }
            },
            move |e: cpal::Error| match e.kind() {
                ErrorKind::DeviceNotAvailable
                | ErrorKind::StreamInvalidated
                | ErrorKind::HostUnavailable => error_ring.fail(e.to_string()),
                ErrorKind::Xrun => tracing::debug!("audio input: {e}"),
                _ => tracing::warn!("audio input: {e}"),
            },
            None,
        )
        .map_err(backend)
}

impl AudioSource for MicSource {
    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn read(&mut self) -> Result<Option<Vec<f32>>, CaptureError> {
        if self.stream.is_none() {
            return Err(CaptureError::Lost("the input stream is closed".into()));
        }
        match self.ring.pop(self.rate as usize / 10, STALL) {
            Popped::Samples(s) => Ok(Some(s)),
            Popped::Failed(why) => {
                self.stream = None;
                Err(CaptureError::Lost(why))
            }
            Popped::Timeout => {
                self.stream = None;
                Err(CaptureError::Lost(format!(
                    "no audio for {} s",
                    STALL.as_secs()
                )))
            }
        }
    }

    fn reopen(&mut self) -> Result<(), CaptureError> {
        self.start()
    }
}
