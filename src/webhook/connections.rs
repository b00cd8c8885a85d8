//! Limits on the connections of both ports: how many may be open, how long a client may take
//! to send a request head, how long an idle connection stays. Without them, slow or idle
//! clients (1 byte/s headers, thousands of idle TLS connections) hold file descriptors and
//! memory until they choose to leave.
//!
//! What each limit covers:
//! - TLS handshake: [`ConnectionLimits::handshake_timeout`] (the admission port);
//! - the first request after accepting (also an HTTP/2 connection that never sends one):
//!   [`ConnectionLimits::header_read_timeout`];
//! - HTTP/1 request heads, and HTTP/1 keep-alive connections waiting for their next request
//!   (hyper times both from the moment it waits for a head): the same timeout;
//! - HTTP/2 connections after their first request: pings every
//!   [`ConnectionLimits::h2_keep_alive`] close dead peers; a live client that keeps an idle
//!   HTTP/2 connection open (the API server does, on purpose) is bounded by the connection
//!   cap, not by a timer;
//! - everything: at most [`ConnectionLimits::max_connections`] open at once per port; a
//!   connection beyond it is closed as soon as it is accepted, before any TLS work.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum_server::accept::Accept;
use futures::future::BoxFuture;
use hyper_util::rt::TokioTimer;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{OwnedSemaphorePermit, Semaphore},
};

/// The limits of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// A request head (and the first request of a connection) must arrive within this; an
    /// HTTP/1 connection idle this long between requests is closed.
    pub header_read_timeout: Duration,
    /// HTTP/2 ping interval, and how long to wait for the answer.
    pub h2_keep_alive: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The admission port. The API server keeps a few connections per instance (HTTP/2
    /// multiplexes); 1024 leaves room for many API server replicas and for load tests, and
    /// stays far below a container's usual file-descriptor limit. 30s is hyper's own default
    /// for request heads and longer than a Go client's wait before reusing a connection.
    pub const ADMISSION: Self = Self {
        handshake_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(30),
        h2_keep_alive: Duration::from_secs(20),
        max_connections: 1024,
    };

    /// The admin port: the kubelet's probes and a few Prometheus scrapers.
    pub const ADMIN: Self = Self {
        max_connections: 64,
        ..Self::ADMISSION
    };

    /// Applies the timeouts to a server's HTTP builder and caps its connections.
    pub(crate) fn apply<A, Acc>(
        &self,
        server: axum_server::Server<A, Acc>,
    ) -> axum_server::Server<A, Acc>
    where
        A: axum_server::Address,
    {
        let mut server = server.first_request_timeout(self.header_read_timeout);
        let builder = server.http_builder();
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.h2_keep_alive)
            .keep_alive_timeout(self.h2_keep_alive);
        server
    }
}

/// An acceptor that admits at most as many connections as its semaphore has permits: the
/// stream carries its permit and returns it when closed. Over the cap, the connection is
/// dropped at once (its file descriptor freed), before the inner acceptor (TLS) runs.
#[derive(Debug, Clone)]
pub struct Capped<A> {
    inner: A,
    slots: Arc<Semaphore>,
}

impl<A> Capped<A> {
    pub fn new(inner: A, max_connections: usize) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(max_connections)),
        }
    }
}

impl<A, I, S> Accept<I, S> for Capped<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = Counted<A::Stream>;
    type Service = A::Service;
    type Future = BoxFuture<'static, io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            drop(stream);
            return Box::pin(futures::future::ready(Err(io::Error::other(
                "connection limit reached; connection closed",
            ))));
        };
        let accepting = self.inner.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = accepting.await?;
            Ok((
                Counted {
                    inner: stream,
                    _permit: permit,
                },
                service,
            ))
        })
    }
}

/// A stream holding one connection slot.
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    _permit: OwnedSemaphorePermit,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
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

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
