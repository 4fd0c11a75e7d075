//! Guest stdout and stderr, captured up to a byte budget and handed back as log lines.
//!
//! Writes past the budget are accepted and dropped (a plugin that prints too much must not crash
//! because of it); the capture remembers how much it dropped.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

#[derive(Debug, Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: u64,
}

/// A bounded, shareable capture of one output stream.
#[derive(Debug, Clone)]
pub struct OutputCapture {
    inner: Arc<Mutex<Captured>>,
    budget: usize,
}

impl OutputCapture {
    /// A capture keeping at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        OutputCapture { inner: Arc::default(), budget }
    }

    /// What was captured, as text, and how many bytes were dropped.
    pub fn take(&self) -> (String, u64) {
        match self.inner.lock() {
            Ok(mut c) => {
                let bytes = std::mem::take(&mut c.bytes);
                (String::from_utf8_lossy(&bytes).into_owned(), c.dropped)
            }
            Err(_) => (String::new(), 0),
        }
    }

    fn write(&self, buf: &[u8]) {
        if let Ok(mut c) = self.inner.lock() {
            let room = self.budget.saturating_sub(c.bytes.len());
            let kept = room.min(buf.len());
            c.bytes.extend_from_slice(&buf[..kept]);
            c.dropped += (buf.len() - kept) as u64;
        }
    }
}

impl IsTerminal for OutputCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputCapture {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for OutputCapture {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
