//! Splitting a byte stream into command lines with a fixed buffer: no allocation, and
//! no input can make it fail. A line longer than the buffer keeps its first
//! [`MAX_INPUT`] bytes (all the classifier reads) and reports its full length.
use hearth_quant::classifier::features::MAX_INPUT;

/// End of transmission (Ctrl-D): ends the session on a serial line, which has no EOF.
pub const EOT: u8 = 0x04;

/// One received line.
#[derive(Debug, Default)]
pub struct Line {
    /// Its first [`MAX_INPUT`] bytes, without the line ending.
    pub bytes: heapless::Vec<u8, MAX_INPUT>,
    /// Its full length in bytes (saturating).
    pub len: usize,
}

/// What a byte completed.
#[derive(Debug)]
pub enum Event {
    /// A full line (`\n`-terminated, a trailing `\r` dropped).
    Line(Line),
    /// End of input, with the unterminated last line if it had bytes.
    End(Option<Line>),
}

/// Collects bytes into lines.
#[derive(Debug, Default)]
pub struct LineReader {
    line: Line,
}

impl LineReader {
    /// Feed one byte.
    pub fn push(&mut self, b: u8) -> Option<Event> {
        match b {
            b'\n' => Some(Event::Line(self.take())),
            EOT => Some(Event::End(self.finish())),
            _ => {
                // Full buffer: the byte is dropped, the length still counts it.
                let _ = self.line.bytes.push(b);
                self.line.len = self.line.len.saturating_add(1);
                None
            }
        }
    }

    /// End of input: the pending line, if it has bytes.
    pub fn finish(&mut self) -> Option<Line> {
        (self.line.len > 0).then(|| self.take())
    }

    fn take(&mut self) -> Line {
        let mut line = core::mem::take(&mut self.line);
        if line.bytes.last() == Some(&b'\r') && line.len <= MAX_INPUT {
            line.bytes.pop();
            line.len -= 1;
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> (Vec<(Vec<u8>, usize)>, bool) {
        let mut r = LineReader::default();
        let mut out = Vec::new();
        for &b in input {
            match r.push(b) {
                Some(Event::Line(l)) => out.push((l.bytes.to_vec(), l.len)),
                Some(Event::End(l)) => {
                    out.extend(l.map(|l| (l.bytes.to_vec(), l.len)));
                    return (out, true);
                }
                None => {}
            }
        }
        out.extend(r.finish().map(|l| (l.bytes.to_vec(), l.len)));
        (out, false)
    }

    #[test]
    fn splits_lines_and_keeps_empty_ones() {
        let (l, ended) = lines(b"turn on\r\n\nlast");
        assert!(!ended);
        assert_eq!(
            l,
            vec![(b"turn on".to_vec(), 7), (vec![], 0), (b"last".to_vec(), 4)]
        );
    }

    #[test]
    fn long_lines_keep_their_head_and_length() {
        let mut input = vec![b'x'; MAX_INPUT + 100];
        input.push(b'\n');
        let (l, _) = lines(&input);
        assert_eq!(l[0].0.len(), MAX_INPUT);
        assert_eq!(l[0].1, MAX_INPUT + 100);
    }

    #[test]
    fn eot_ends_the_input() {
        let (l, ended) = lines(b"a\nb\x04c\n");
        assert!(ended);
        assert_eq!(l, vec![(b"a".to_vec(), 1), (b"b".to_vec(), 1)]);
    }

    #[test]
    fn non_utf8_bytes_pass_through() {
        let (l, _) = lines(b"\xff\xfe on\n");
        assert_eq!(l[0].0, b"\xff\xfe on");
    }
}
