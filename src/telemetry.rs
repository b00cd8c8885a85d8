//! Logging: `tracing` with an `EnvFilter` from `RUST_LOG` (default `info`), human-readable on
//! a terminal and JSON lines otherwise, always on stderr so stdout stays for command output.
//!
//! Logged values come from requests (namespaces, names, annotation values). JSON escapes
//! them; the text format writes a message as is, so its writer ([`OneLine`]) escapes every
//! control character but the event's final newline: a `\n` in a value cannot start a forged
//! log line, nor an escape sequence repaint the terminal.

use std::io::{self, IsTerminal, Write};

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// `--log-format`: JSON lines, text, or text on a terminal and JSON elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    let registry = tracing_subscriber::registry().with(filter);
    // try_init: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = if json {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
    } else {
        // Colours only on a terminal; then ESC is the formatter's and must pass through.
        registry
            .with(
                fmt::layer()
                    .with_ansi(terminal)
                    .with_writer(move || OneLine::new(std::io::stderr(), terminal)),
            )
            .try_init()
    };
}

/// A writer for one formatted text event (the fmt layer writes each event with one
/// `write_all`): control characters inside it are written escaped (`\n`, `\r`, `\x1b`, ...),
/// so the event stays one line whatever the values it carries.
pub struct OneLine<W> {
    inner: W,
    /// Let ESC through (the formatter's own colours).
    keep_escape: bool,
}

impl<W: Write> OneLine<W> {
    pub fn new(inner: W, keep_escape: bool) -> Self {
        Self { inner, keep_escape }
    }

    fn needs_escape(&self, b: u8) -> bool {
        (b.is_ascii_control() && b != b'\t' && !(self.keep_escape && b == 0x1b)) || b == 0x7f
    }
}

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let (body, end): (&[u8], &[u8]) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, b"\n"),
            None => (buf, b""),
        };
        if !body.iter().any(|&b| self.needs_escape(b)) {
            return self.inner.write_all(buf);
        }
        let mut out = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b if self.needs_escape(b) => {
                    out.extend_from_slice(format!("\\x{b:02x}").as_bytes())
                }
                b => out.push(b),
            }
        }
        out.extend_from_slice(end);
        self.inner.write_all(&out)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_newline_in_a_logged_value_cannot_forge_a_line() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(
            fmt::layer()
                .with_ansi(false)
                .with_writer(move || OneLine::new(writer.clone(), false)),
        );
        let namespace = "team-a\nERROR forged: all credentials leaked\r\x1b[2J";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(namespace, "ServiceAccount {namespace}/app not found");
            tracing::info!("second");
        });
        let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].contains(r"team-a\nERROR forged"), "{out}");
        assert!(lines[0].contains(r"\r\x1b[2J"), "{out}");
        assert!(lines[1].ends_with("second"), "{out}");
    }

    #[test]
    fn escapes_only_what_needs_it() {
        let mut out = Vec::new();
        OneLine::new(&mut out, true)
            .write_all("a\tb é \x1b[1m\x07\n".as_bytes())
            .unwrap();
        assert_eq!(out, "a\tb é \x1b[1m\\x07\n".as_bytes());
    }
}
