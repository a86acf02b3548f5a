//! The byte stream a connection runs over: TCP today, TLS and WebSocket layered on it.
//!
//! Owns the [`Transport`] trait, which a connection task needs from its stream: write
//! (`AsyncWrite`), wait until reading can make progress *without holding a buffer*,
//! then read what is there without waiting. Waiting without a buffer is what keeps an
//! idle connection small; plain `AsyncRead` would make the task hold a read buffer
//! across every idle await. [`Polled`] gives any `AsyncRead + AsyncWrite` stream
//! (TLS, WebSocket adapters, in-memory pipes in tests) that shape by peeking one byte.
//! This module never decodes MQTT and never holds more than that one byte.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A stream a connection can run over.
pub trait Transport: AsyncWrite + Unpin + Send {
    /// Ready when [`Transport::try_read_buf`] will return bytes, end of stream or an
    /// error. Holds no read buffer while pending.
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Reads what is available now into `buf` (which has spare capacity); `Ok(0)` is the
    /// end of the stream, `WouldBlock` means nothing is there yet.
    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize>;

    /// The user name proved by the transport itself: the client certificate's Common Name
    /// on a TLS listener with `use_identity_as_username`. `None` for everything else.
    fn identity(&self) -> Option<&str> {
        None
    }

    /// Waits until the stream is readable (see [`Transport::poll_readable`]).
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send
    where
        Self: Sized,
    {
        std::future::poll_fn(move |cx| self.poll_readable(cx))
    }
}

impl Transport for TcpStream {
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        TcpStream::try_read_buf(self, buf)
    }
}

/// Any `AsyncRead + AsyncWrite` stream as a [`Transport`]: readiness is learnt by
/// reading one byte, which is handed out first by the next read.
#[derive(Debug)]
pub struct Polled<S> {
    inner: S,
    /// A byte read while waiting for readiness, not yet handed out.
    peeked: Option<u8>,
    /// The end of the stream was seen while waiting.
    eof: bool,
    /// See [`Transport::identity`].
    identity: Option<String>,
}

impl<S> Polled<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Polled<S> {
        Polled {
            inner,
            peeked: None,
            eof: false,
            identity: None,
        }
    }

    /// Wraps `inner`, whose peer proved the user name `identity` (a certificate's CN).
    pub fn with_identity(inner: S, identity: Option<String>) -> Polled<S> {
        Polled {
            identity,
            ..Polled::new(inner)
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Transport for Polled<S> {
    fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.peeked.is_some() || self.eof {
            return Poll::Ready(Ok(()));
        }
        let mut one = [0u8; 1];
        let mut rb = ReadBuf::new(&mut one);
        match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                match rb.filled().first() {
                    Some(&b) => self.peeked = Some(b),
                    None => self.eof = true,
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let mut n = 0;
        if let Some(b) = self.peeked.take() {
            buf.put_u8(b);
            n = 1;
        }
        if self.eof {
            return Ok(n);
        }
        // Read on without waiting: a Pending here registers a waker that is never
        // woken, which is fine because the caller waits in `poll_readable` next. The
        // chunk lives on the stack of this synchronous call only.
        let mut cx = Context::from_waker(Waker::noop());
        let mut chunk = [0u8; 4096];
        loop {
            let room = buf.capacity() - buf.len();
            if room == 0 {
                return Ok(n);
            }
            let take = room.min(chunk.len());
            let mut rb = ReadBuf::new(chunk.get_mut(..take).unwrap_or_default());
            match Pin::new(&mut self.inner).poll_read(&mut cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let got = rb.filled();
                    if got.is_empty() {
                        self.eof = n > 0;
                        return Ok(n);
                    }
                    buf.extend_from_slice(got);
                    n += got.len();
                }
                Poll::Ready(Err(e)) if n == 0 => return Err(e),
                Poll::Ready(Err(_)) => return Ok(n),
                Poll::Pending if n == 0 => return Err(io::ErrorKind::WouldBlock.into()),
                Poll::Pending => return Ok(n),
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Polled<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(b) = self.peeked.take() {
            buf.put_slice(&[b]);
            return Poll::Ready(Ok(()));
        }
        if self.eof {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Polled<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
