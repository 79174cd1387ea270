//! Docker's `json-file` log format: one JSON object per line of output,
//! `{"log":"hi\n","stream":"stdout","time":"2026-11-25T18:30:00.123456789Z"}`, a long line cut
//! into 16 KiB pieces as dockerd cuts it.

use std::io::{self, Write};
use std::time::SystemTime;

/// The longest piece of a line one record holds.
pub const MAX_PIECE: usize = 16 * 1024;

/// Which output a piece came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(serde::Serialize)]
struct Record<'a> {
    log: &'a str,
    stream: &'a str,
    time: String,
}

/// Cuts what a stream says into records: whole lines (with their `\n`), and pieces of at
/// most [`MAX_PIECE`] bytes; what is left without a newline waits for more.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Adds `data`, returning the pieces now complete.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            let cut = match self.pending.iter().position(|b| *b == b'\n') {
                Some(i) if i < MAX_PIECE => i + 1,
                _ if self.pending.len() >= MAX_PIECE => MAX_PIECE,
                _ => break,
            };
            out.push(self.pending.drain(..cut).collect());
        }
        out
    }

    /// What is left at the end of the stream.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// Writes one record for `piece` of `stream`, stamped `at`.
pub fn write_record(
    out: &mut impl Write,
    stream: Stream,
    piece: &[u8],
    at: SystemTime,
) -> io::Result<()> {
    let record = Record {
        log: &String::from_utf8_lossy(piece),
        stream: stream.name(),
        time: humantime::format_rfc3339_nanos(at).to_string(),
    };
    serde_json::to_writer(&mut *out, &record)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_at_newlines_and_at_16k() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"a\nb"), vec![b"a\n".to_vec()]);
        assert_eq!(s.push(b"c\n"), vec![b"bc\n".to_vec()]);
        let long = vec![b'x'; MAX_PIECE + 10];
        let pieces = s.push(&long);
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].len(), MAX_PIECE);
        assert_eq!(s.finish(), Some(vec![b'x'; 10]));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn records_are_dockers_json() {
        let mut out = Vec::new();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5);
        write_record(&mut out, Stream::Stderr, b"oops \"x\"\n", at).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"log\":\"oops \\\"x\\\"\\n\",\"stream\":\"stderr\",\"time\":\"2023-11-14T22:13:20.000000005Z\"}\n"
        );
    }
}
