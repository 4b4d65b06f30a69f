//! HTTP(S) serving with limits, shared by the scheduler extender and the metrics server: every
//! socket MOM listens on is reachable by any pod, so no client can hold it open, fill memory or
//! crowd out the scheduler. (And the other way round, [`capped_body`]: answers of the servers
//! MOM calls are read with a cap.)
//!
//! Per [`Limits`]: at most `max_connections` connections (further ones are closed at once);
//! a TLS handshake must finish within `handshake_timeout`; a request's headers — and, on a
//! kept-alive connection, the next request — must arrive within `header_timeout` (hyper's
//! header-read timer also runs while the connection is idle); reading the body and answering
//! must finish within `request_timeout` (408 otherwise); bodies above `max_body_bytes` get 413;
//! at most `max_concurrent_requests` requests are handled at once (503 beyond). Worst-case
//! memory held by bodies is therefore `max_concurrent_requests × max_body_bytes`.
//!
//! Each request carries the [`Caller`] its connection authenticated as (a client certificate
//! verified during the TLS handshake, or nobody), for the routes that require one.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::Service;

/// The limits of one server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_concurrent_requests: usize,
}

impl Default for Limits {
    /// 256 connections, 10 s for a handshake and for headers, 10 s per request, 4 MiB bodies,
    /// 64 requests at once. A kube-scheduler sends one filter/prioritize at a time and binds
    /// in a few parallel goroutines; a 500-node `Nodes` list is about 2.5 MB.
    fn default() -> Self {
        Self {
            max_connections: 256,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 4 << 20,
            max_concurrent_requests: 64,
        }
    }
}

/// Who sent a request, as the transport established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No client certificate (plain HTTP, or TLS without one).
    Anonymous,
    /// The connection presented a client certificate that chains to the configured client CA
    /// (rustls verified it during the handshake; unverifiable ones fail the handshake).
    VerifiedCertificate,
}

/// Guards every request: the concurrency limit (503) and the request deadline (408), which
/// covers reading the body since extractors run inside `next`.
async fn guard(State(limits): State<(Arc<Semaphore>, Duration)>, req: Request, next: Next) -> Response {
    let (slots, deadline) = limits;
    let Ok(_slot) = slots.try_acquire() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many requests in flight; retry").into_response();
    };
    match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            format!("the request did not finish within {} s", deadline.as_secs()),
        )
            .into_response(),
    }
}

/// `router` with the per-request limits applied.
pub fn limited(router: Router, limits: &Limits) -> Router {
    let slots = Arc::new(Semaphore::new(limits.max_concurrent_requests));
    router
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            (slots, limits.request_timeout),
            guard,
        ))
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown` turns true; then stops
/// accepting, lets in-flight requests finish for up to 5 s and closes the rest. `what` names
/// the server in logs.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
) {
    let router = limited(router, &limits);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut shutdown) => break,
        };
        // Reap finished connection tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(server = what, error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!(server = what, %peer, "connection limit reached; closing the new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let _permit = permit;
            match tls {
                None => connection(stream, Caller::Anonymous, router, limits, shutdown, peer, what).await,
                Some(acceptor) => match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => {
                        let caller = match tls_stream.get_ref().1.peer_certificates() {
                            Some(chain) if !chain.is_empty() => Caller::VerifiedCertificate,
                            _ => Caller::Anonymous,
                        };
                        connection(tls_stream, caller, router, limits, shutdown, peer, what).await
                    }
                    Ok(Err(err)) => tracing::info!(server = what, %peer, error = %err, "TLS handshake failed"),
                    Err(_) => tracing::info!(server = what, %peer, "TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    // In-flight connections saw `shutdown` too and are closing gracefully.
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
    }
}

/// Resolves once `shutdown` is true (or its sender is gone), holding no borrow of it.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// One connection: HTTP/1.1 with the header timer, each request tagged with `caller`.
async fn connection<IO>(
    io: IO,
    caller: Caller,
    router: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    peer: SocketAddr,
    what: &'static str,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(caller.clone());
        let mut router = router.clone();
        async move { Ok::<_, Infallible>(router.call(req.map(axum::body::Body::new)).await.into_response()) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 << 10);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(server = what, %peer, error = %err, "connection closed with an error");
    }
}

/// The body of an answer from a server MOM calls, at most `limit` bytes: a larger one is an
/// error naming the limit, never an allocation of its size.
pub async fn capped_body<B>(body: B, limit: usize) -> Result<Vec<u8>, String>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt as _;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(format!("the answer is larger than {limit} bytes")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(limits: Limits) -> (SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/echo",
                post(|body: axum::body::Bytes| async move { body.len().to_string() }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    "late"
                }),
            );
        let (tx, rx) = watch::channel(false);
        tokio::spawn(serve(listener, None, router, limits, rx, "test"));
        (addr, tx)
    }

    /// Reads until the server closes the connection; returns what it sent.
    async fn read_to_close(stream: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    fn short() -> Limits {
        Limits {
            header_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_millis(300),
            ..Limits::default()
        }
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_disconnected() {
        let (addr, _tx) = start(short()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        // Read returns once the server closes the socket (the test would hang otherwise).
        let answer = read_to_close(&mut s).await;
        assert!(!answer.contains("200 OK"), "{answer}");
        // Positive control: a complete request on a new connection is answered.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(read_to_close(&mut s).await.starts_with("HTTP/1.1 200 OK"));
    }

    #[tokio::test]
    async fn an_idle_kept_alive_connection_is_closed() {
        let (addr, _tx) = start(short()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        // The answer comes, then the idle connection is closed by the server.
        let answer = read_to_close(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    }

    #[tokio::test]
    async fn a_stalled_body_gets_408_and_a_complete_one_is_read() {
        let (addr, _tx) = start(short()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part")
            .await
            .unwrap();
        let answer = read_to_close(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello")
            .await
            .unwrap();
        let answer = read_to_close(&mut s).await;
        assert!(
            answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("\r\n5"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn a_body_above_the_limit_gets_413() {
        let (addr, _tx) = start(Limits {
            max_body_bytes: 16,
            ..short()
        })
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 17\r\n\r\n01234567890123456",
        )
        .await
        .unwrap();
        let answer = read_to_close(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_at_once_and_a_freed_slot_is_reused() {
        let (addr, _tx) = start(Limits {
            max_connections: 2,
            header_timeout: Duration::from_secs(30),
            ..Limits::default()
        })
        .await;
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        // Give the server a moment to accept both (connect completes in the kernel backlog).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok();
        assert_eq!(read_to_close(&mut c).await, "");
        drop(_a);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut d = TcpStream::connect(addr).await.unwrap();
        d.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(read_to_close(&mut d).await.starts_with("HTTP/1.1 200 OK"));
    }

    #[tokio::test]
    async fn requests_beyond_the_concurrency_limit_get_503() {
        let (addr, _tx) = start(Limits {
            max_concurrent_requests: 1,
            request_timeout: Duration::from_secs(30),
            ..Limits::default()
        })
        .await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(read_to_close(&mut s).await.starts_with("HTTP/1.1 503"));
        // Once the slow request is answered its slot is free again.
        let mut first = [0u8; 12];
        slow.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(read_to_close(&mut s).await.starts_with("HTTP/1.1 200 OK"));
    }

    #[tokio::test]
    async fn shutdown_stops_accepting() {
        let (addr, tx) = start(short()).await;
        tx.send_replace(true);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
