//! Speech in: audio decoding and resampling, Whisper model import, speech-to-text.
//!
//! - [`audio`]: WAV files → 16 kHz mono f32 ([`load_audio`]); [`resample`]: the resampler.
//! - [`ct2`]: reader for CTranslate2 `model.bin` files (faster-whisper's format).
//! - [`import`]: CTranslate2 Whisper → whisper.cpp ggml conversion ([`import_whisper`]).
//! - [`mel`]: Whisper's Slaney mel filterbank, computed.
//! - [`vad`]: energy + zero-crossing voice activity detection ([`vad::speech_segments`]).
//! - `transcriber` (feature `whisper`): [`Transcriber`], whisper.cpp speech-to-text.
pub mod audio;
pub mod ct2;
pub mod import;
pub mod mel;
pub mod resample;
#[cfg(feature = "whisper")]
pub mod transcriber;
pub mod vad;

pub use audio::{decode_wav, load_audio, Audio, MAX_AUDIO_SECONDS, SAMPLE_RATE};
pub use import::{import_whisper, read_ggml_hparams, WhisperHparams};
#[cfg(feature = "whisper")]
pub use transcriber::{audio_ctx_for, Transcriber, TranscriberOptions, Transcript};
