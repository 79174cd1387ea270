//! The connection to a shim, and knowing when it is gone. ttrpc's client has no close
//! callback (containerd's Go client has `WithOnClose`, which is how containerd notices a dead
//! shim), so the socket is wrapped: end of file, a read or write error, or the socket being
//! dropped (the client's connection task ended) marks the connection closed, and whoever
//! watches it (the manager's dead-shim cleanup, pending calls) learns at once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio::sync::watch;

/// Connects to a shim at `address` (`unix:///path`, or a bare path).
pub async fn connect(address: &str) -> io::Result<(WatchedStream, Closed)> {
    let path = socket_path(address).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unsupported shim address {address:?}: expected unix://PATH"),
        )
    })?;
    let stream = UnixStream::connect(path).await?;
    let (tx, rx) = watch::channel(false);
    Ok((WatchedStream { stream, closed: tx }, Closed(rx)))
}

/// The socket path of a shim address: `unix:///run/x.sock` or `/run/x.sock`.
pub fn socket_path(address: &str) -> Option<&str> {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    path.starts_with('/').then_some(path)
}

/// Tells when a shim connection has closed.
#[derive(Debug, Clone)]
pub struct Closed(watch::Receiver<bool>);

impl Closed {
    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the connection has closed.
    pub async fn wait(&mut self) {
        // An error means the stream itself is gone: closed too.
        let _ = self.0.wait_for(|closed| *closed).await;
    }
}

/// A unix socket that reports its own end.
#[derive(Debug)]
pub struct WatchedStream {
    stream: UnixStream,
    closed: watch::Sender<bool>,
}

impl WatchedStream {
    fn mark_closed(&self) {
        self.closed.send_replace(true);
    }
}

impl Drop for WatchedStream {
    fn drop(&mut self) {
        self.mark_closed();
    }
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        match &poll {
            Poll::Ready(Ok(())) if wanted && buf.filled().len() == before => self.mark_closed(),
            Poll::Ready(Err(_)) => self.mark_closed(),
            _ => {}
        }
        poll
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        if let Poll::Ready(Err(_)) = &poll {
            self.mark_closed();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn addresses() {
        assert_eq!(socket_path("unix:///run/s/ab"), Some("/run/s/ab"));
        assert_eq!(socket_path("/run/s/ab"), Some("/run/s/ab"));
        assert_eq!(socket_path("vsock://3:1024"), None);
        assert_eq!(socket_path("unix://relative"), None);
    }

    #[test]
    fn the_peer_going_away_closes_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("s.sock");
            let listener = tokio::net::UnixListener::bind(&path).unwrap();
            let address = format!("unix://{}", path.display());
            let (mut stream, mut closed) = connect(&address).await.unwrap();
            let (mut peer, _) = listener.accept().await.unwrap();
            stream.write_all(b"x").await.unwrap();
            let mut byte = [0u8; 1];
            peer.read_exact(&mut byte).await.unwrap();
            assert!(!closed.is_closed());
            drop(peer);
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await.unwrap();
            closed.wait().await;
            assert!(closed.is_closed());
        });
    }
}
