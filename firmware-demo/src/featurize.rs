//! Byte-trigram hashing: any byte string (UTF-8 or not, empty or not) becomes a
//! fixed-size feature vector, with no allocation and no string decoding.
//!
//! This is the classic "hashing trick" front end of a small intent classifier: bytes
//! are lowercased (ASCII only), padded with a space at each end so word boundaries
//! count, and every window of three bytes is hashed (FNV-1a) into one of
//! [`FEATURES`] buckets with a ±1 sign taken from the hash. The vector is divided by
//! the number of trigrams so long and short commands have comparable scale.
use crate::model::FEATURES;

/// Bytes of a command the device keeps; longer input is cut here.
pub const MAX_INPUT: usize = 48;

/// A command as received: at most [`MAX_INPUT`] lowercased bytes, on the stack.
#[derive(Clone, Debug, Default)]
pub struct Command {
    bytes: heapless::Vec<u8, MAX_INPUT>,
    truncated: bool,
}

impl Command {
    /// Take up to [`MAX_INPUT`] bytes of `raw`, ASCII-lowercased. Never fails: a
    /// longer command is truncated (and says so), non-UTF-8 bytes are kept as bytes.
    pub fn new(raw: &[u8]) -> Self {
        let mut cmd = Self::default();
        for &b in raw {
            if cmd.bytes.push(b.to_ascii_lowercase()).is_err() {
                cmd.truncated = true;
                break;
            }
        }
        cmd
    }

    /// The kept bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the input was longer than [`MAX_INPUT`].
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Whether the kept bytes are valid UTF-8 (informational: featurizing works on bytes).
    pub fn is_utf8(&self) -> bool {
        core::str::from_utf8(&self.bytes).is_ok()
    }

    /// The hashed-trigram features. All zeros for an empty command.
    pub fn features(&self) -> [f32; FEATURES] {
        let mut x = [0.0f32; FEATURES];
        let n = self.bytes.len();
        if n == 0 {
            return x;
        }
        // Position `i` of the padded sequence " <bytes> " (length n + 2).
        let at = |i: usize| {
            if i == 0 || i == n + 1 {
                b' '
            } else {
                self.bytes[i - 1]
            }
        };
        for i in 0..n {
            let h = fnv1a([at(i), at(i + 1), at(i + 2)]);
            let bucket = h as usize % FEATURES;
            x[bucket] += if h >> 31 == 0 { 1.0 } else { -1.0 };
        }
        // n trigrams; n ≤ MAX_INPUT, exact in f32. One division, then multiplies: the
        // same IEEE operations on the host and the Cortex-M, so the bits agree.
        let inv = 1.0 / n as f32;
        for v in &mut x {
            *v *= inv;
        }
        x
    }
}

/// 32-bit FNV-1a of three bytes.
fn fnv1a(bytes: [u8; 3]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_input_is_truncated_to_the_buffer() {
        let raw = [b'a'; MAX_INPUT + 10];
        let c = Command::new(&raw);
        assert!(c.truncated());
        assert_eq!(c.bytes().len(), MAX_INPUT);
        let exact = Command::new(&raw[..MAX_INPUT]);
        assert!(!exact.truncated());
        assert_eq!(exact.features(), c.features());
    }

    #[test]
    fn empty_input_has_zero_features() {
        let c = Command::new(b"");
        assert!(!c.truncated());
        assert!(c.is_utf8());
        assert!(c.features().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn non_utf8_bytes_are_featurized() {
        let c = Command::new(b"lights \xff\xfe on");
        assert!(!c.is_utf8());
        let x = c.features();
        assert!(x.iter().any(|&v| v != 0.0));
        // A different invalid byte changes the features: bytes are not replaced.
        assert_ne!(x, Command::new(b"lights \xff\xfd on").features());
    }

    #[test]
    fn features_are_case_insensitive_and_bounded() {
        let a = Command::new(b"Turn ON the Lights").features();
        assert_eq!(a, Command::new(b"turn on the lights").features());
        // n trigrams of weight ±1/n: the L1 norm is at most 1.
        let l1: f32 = a.iter().map(|v| v.abs()).sum();
        assert!(l1 > 0.0 && l1 <= 1.0 + 1e-6, "l1 = {l1}");
    }
}
