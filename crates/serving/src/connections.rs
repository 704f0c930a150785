//! Accepting TCP connections and speaking HTTP/1.1 on them, with limits on slow clients.
//!
//! `axum::serve` gives no access to hyper's connection settings, so the accept loop is here:
//! each connection is a hyper HTTP/1 connection running the axum router. The one setting that
//! matters is the **header-read timeout**: hyper starts it whenever it waits for a request head,
//! which covers both a client that trickles its request line and headers (slow loris) and an idle
//! keep-alive connection waiting for its next request; when it fires the connection is closed.
//! Slow *bodies* are bounded by [`crate::body`] (a body-read timeout, a minimum rate and a cap
//! on slow bodies per client address, which is why each request carries its client's address),
//! so no connection can hold its task, socket and buffers for ever without sending complete
//! requests.
//!
//! Shutdown: stop accepting (the listener is dropped, so new connections are refused), close idle
//! connections, let requests in flight finish, then return once every connection has ended.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// Default for `--header-read-timeout`: generous for any real client on a slow link, short
/// enough that idle or stalled connections do not pile up.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the accept loop pauses after a failure that is not about one connection (such as
/// running out of file descriptors), instead of spinning on it.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Serves `app` on every connection `listener` accepts until `shutdown` resolves, then finishes
/// the requests in flight and returns when all connections are closed.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    tracing::error!(%error, "cannot accept connections; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Answers are small and latency matters more than packet count.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        // The client's address goes with every request, for the per-client limits of `body`.
        let service = app
            .clone()
            .map_request(move |mut request: axum::extract::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Closed by the client, a timed-out header read, a malformed request: all end only
            // this connection, and hyper has already answered what deserved an answer.
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Errors that concern only the connection being accepted (the peer gave up early).
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
