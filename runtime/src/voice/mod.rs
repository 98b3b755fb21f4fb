//! Speech in: audio decoding and resampling, Whisper model import, speech-to-text.
//!
//! - [`audio`]: WAV files → 16 kHz mono f32 ([`load_audio`]); [`resample`]: the resampler.
//! - [`ct2`]: reader for CTranslate2 `model.bin` files (faster-whisper's format).
//! - [`import`]: CTranslate2 Whisper → whisper.cpp ggml conversion ([`import_whisper`]).
//! - [`mel`]: Whisper's Slaney mel filterbank, computed.
//! - [`vad`]: energy + zero-crossing voice activity detection ([`vad::Segmenter`] on a
//!   stream, [`vad::speech_segments`] on a buffer).
//! - [`capture`]: live input → utterances: the [`AudioSource`] trait, [`FileSource`], the
//!   [`Capture`] loop (resample, VAD cuts, reopen after a lost device); [`ring`]: the buffer
//!   between a sound card's callback and that loop.
//! - `mic` (feature `mic`): [`MicSource`], the microphone through `cpal`, and [`input_devices`].
//! - `transcriber` (feature `whisper`): [`Transcriber`], whisper.cpp speech-to-text.
pub mod audio;
pub mod capture;
pub mod ct2;
pub mod import;
pub mod mel;
#[cfg(feature = "mic")]
pub mod mic;
pub mod resample;
pub mod ring;
#[cfg(feature = "whisper")]
pub mod transcriber;
pub mod vad;

pub use audio::{decode_wav, load_audio, Audio, MAX_AUDIO_SECONDS, SAMPLE_RATE};
pub use capture::{AudioSource, Capture, CaptureConfig, CaptureError, FileSource, Utterance};
pub use import::{import_whisper, read_ggml_hparams, WhisperHparams};
#[cfg(feature = "mic")]
pub use mic::{input_devices, InputDevice, MicSource};
#[cfg(feature = "whisper")]
pub use transcriber::{audio_ctx_for, Transcriber, TranscriberOptions, Transcript};
