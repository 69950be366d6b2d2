//! The client listener's HTTP/2 server, with a short path for the hot unary RPCs.
//!
//! Profiles of linearizable gets showed about 60% of a member's CPU in tonic's per-request
//! machinery (routing through axum and tower, boxed bodies, the streaming decoder and encoder)
//! rather than in our handlers. This module serves every connection with hyper directly:
//! etcd's KV calls are decoded, dispatched to the same handler methods and encoded here,
//! following tonic's wire behaviour (status codes, messages, trailers) so that clients cannot
//! tell the difference. Every other path (Maintenance,
//! Cluster, unknown services and methods, and requests using features the short path does not
//! implement such as `grpc-encoding`) goes to tonic's own routes unchanged.

use super::api::KvApi;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use etcdpb::etcdserverpb::kv_server::Kv;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::metadata::MetadataMap;
use tonic::service::Routes;
use tonic::{Code, Status};

/// gRPC's length-prefixed message header: compressed flag and big-endian length.
const HEADER_LEN: usize = 5;

/// The RPCs answered without tonic.
#[derive(Clone, Copy, Debug)]
enum FastMethod {
    Range,
    Put,
    DeleteRange,
    Txn,
    Compact,
}

impl FastMethod {
    fn from_path(path: &str) -> Option<FastMethod> {
        Some(match path {
            "/etcdserverpb.KV/Range" => FastMethod::Range,
            "/etcdserverpb.KV/Put" => FastMethod::Put,
            "/etcdserverpb.KV/DeleteRange" => FastMethod::DeleteRange,
            "/etcdserverpb.KV/Txn" => FastMethod::Txn,
            "/etcdserverpb.KV/Compact" => FastMethod::Compact,
            _ => return None,
        })
    }
}

/// Serves gRPC on already accepted connections: the short path for the hot unary RPCs, tonic's
/// routes for everything else.
#[derive(Clone)]
pub struct GrpcService(Arc<Shared>);

struct Shared {
    kv: KvApi,
    routes: Routes,
    /// The largest request message accepted (tonic's `max_decoding_message_size`).
    limit: usize,
}

impl std::fmt::Debug for GrpcService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcService")
            .field("limit", &self.0.limit)
            .finish_non_exhaustive()
    }
}

impl GrpcService {
    /// `routes` must serve every service (KV included, for the requests the short
    /// path hands over) with the same `limit` as their decoding limit.
    pub fn new(kv: KvApi, routes: Routes, limit: usize) -> GrpcService {
        GrpcService(Arc::new(Shared {
            kv,
            routes: routes.prepare(),
            limit,
        }))
    }

    /// The service for one connection (tonic attaches the addresses to every request it
    /// routes; handlers reached through tonic keep seeing them).
    fn connection(&self, info: tonic::transport::server::TcpConnectInfo) -> ConnectionService {
        ConnectionService {
            shared: self.0.clone(),
            info,
        }
    }
}

/// [`GrpcService`] bound to one connection.
#[derive(Clone)]
struct ConnectionService {
    shared: Arc<Shared>,
    info: tonic::transport::server::TcpConnectInfo,
}

type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<GrpcBody>, Infallible>> + Send>>;

impl hyper::service::Service<http::Request<Incoming>> for ConnectionService {
    type Response = http::Response<GrpcBody>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let shared = self.shared.clone();
        let info = self.info.clone();
        Box::pin(async move { Ok(shared.handle(request, info).await) })
    }
}

impl Shared {
    async fn handle(
        self: Arc<Self>,
        mut request: http::Request<Incoming>,
        info: tonic::transport::server::TcpConnectInfo,
    ) -> http::Response<GrpcBody> {
        // tonic's server applies the client's deadline to the whole call (GrpcTimeout).
        let timeout = grpc_timeout(request.headers());
        let method =
            FastMethod::from_path(request.uri().path()).filter(|_| !compressed(request.headers()));
        let call = async {
            match method {
                Some(method) => self.fast(method, request).await,
                None => {
                    request.extensions_mut().insert(info);
                    self.delegate(request).await
                }
            }
        };
        match timeout {
            None => call.await,
            Some(timeout) => match tokio::time::timeout(timeout, call).await {
                Ok(response) => response,
                Err(_) => Status::cancelled(tonic::TimeoutExpired(()).to_string()).into_http(),
            },
        }
    }

    async fn delegate(&self, request: http::Request<Incoming>) -> http::Response<GrpcBody> {
        use tower_service::Service;
        let mut routes = self.routes.clone();
        let request = request.map(tonic::body::Body::new);
        // axum's router is always ready; polling keeps to tower's contract all the same.
        let ready = std::future::poll_fn(|cx| {
            Service::<http::Request<tonic::body::Body>>::poll_ready(&mut routes, cx)
        });
        match ready.await {
            Ok(()) => {}
            Err(never) => match never {},
        }
        match Service::<http::Request<tonic::body::Body>>::call(&mut routes, request).await {
            Ok(response) => response.map(GrpcBody::Tonic),
            Err(never) => match never {},
        }
    }

    async fn fast(
        &self,
        method: FastMethod,
        request: http::Request<Incoming>,
    ) -> http::Response<GrpcBody> {
        let limit = self.limit;
        let kv = &self.kv;
        match method {
            FastMethod::Range => unary(request, limit, |r| kv.range(r)).await,
            FastMethod::Put => unary(request, limit, |r| kv.put(r)).await,
            FastMethod::DeleteRange => unary(request, limit, |r| kv.delete_range(r)).await,
            FastMethod::Txn => unary(request, limit, |r| kv.txn(r)).await,
            FastMethod::Compact => unary(request, limit, |r| kv.compact(r)).await,
        }
    }
}

/// Whether the request declares a message encoding other than identity: tonic answers those
/// (with its "isn't supported" status), so they take its path.
fn compressed(headers: &HeaderMap) -> bool {
    headers
        .get("grpc-encoding")
        .is_some_and(|encoding| encoding.as_bytes() != b"identity")
}

/// The client's `grpc-timeout`, parsed exactly as tonic does (at most 8 digits and a unit);
/// a malformed value is ignored, as tonic ignores it.
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    if value.is_empty() {
        return None;
    }
    let (amount, unit) = value.split_at(value.len() - 1);
    if amount.len() > 8 {
        return None;
    }
    let amount: u64 = amount.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 60 * 60),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Decodes one unary request, calls `handler` with it and encodes the answer: what tonic's
/// `Grpc::unary` does for these methods, without its streaming machinery.
async fn unary<Req, Res, F, Fut>(
    request: http::Request<Incoming>,
    limit: usize,
    handler: F,
) -> http::Response<GrpcBody>
where
    Req: prost::Message + Default,
    Res: prost::Message,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Res>, Status>>,
{
    let (parts, body) = request.into_parts();
    let (message, trailers) = match read_request::<Req>(body, limit).await {
        Ok(read) => read,
        Err(status) => return status.into_http(),
    };
    let mut headers = parts.headers;
    if let Some(trailers) = trailers {
        headers.extend(trailers);
    }
    let request = tonic::Request::from_parts(
        MetadataMap::from_headers(headers),
        parts.extensions,
        message,
    );
    match handler(request).await {
        Ok(response) => encode_response(response),
        Err(status) => status.into_http(),
    }
}

/// The headers tonic never lets a handler's metadata set on a response.
const RESERVED_HEADERS: [&str; 5] = [
    "te",
    "content-type",
    "grpc-message",
    "grpc-message-type",
    "grpc-status",
];

fn encode_response<Res: prost::Message>(
    response: tonic::Response<Res>,
) -> http::Response<GrpcBody> {
    let (metadata, message, extensions) = response.into_parts();
    let len = message.encoded_len();
    let Ok(prefix) = u32::try_from(len) else {
        return Status::resource_exhausted(format!(
            "Cannot return body with more than 4GB of data but got {len} bytes"
        ))
        .into_http();
    };
    let mut data = BytesMut::with_capacity(HEADER_LEN + len);
    data.put_u8(0);
    data.put_u32(prefix);
    message.encode_raw(&mut data);
    let mut headers = metadata.into_headers();
    if !headers.is_empty() {
        for name in RESERVED_HEADERS {
            headers.remove(name);
        }
    }
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    let mut response = http::Response::new(GrpcBody::Unary {
        data: Some(data.freeze()),
        trailers_sent: false,
    });
    *response.version_mut() = http::Version::HTTP_2;
    *response.headers_mut() = headers;
    *response.extensions_mut() = extensions;
    response
}

/// Reads a unary request body as tonic's decoder does: the first message is the request, any
/// further ones are decoded and dropped, trailers become metadata. A message is checked
/// against `limit` as soon as its header arrives, so at most one message (plus one HTTP/2
/// frame) is ever buffered.
async fn read_request<Req: prost::Message + Default>(
    mut body: Incoming,
    limit: usize,
) -> Result<(Req, Option<HeaderMap>), Status> {
    let mut decoder = Decoder::<Req> {
        buf: BytesMut::new(),
        first: None,
        limit,
    };
    let mut trailers = None;
    loop {
        match body.frame().await {
            None => {
                // tonic has consumed a complete header already: only bytes beyond it count.
                let pending = match decoder.buf.len() {
                    len if len >= HEADER_LEN => len - HEADER_LEN,
                    len => len,
                };
                if pending > 0 {
                    return Err(Status::internal("Unexpected EOF decoding stream."));
                }
                break;
            }
            Some(Err(error)) => {
                let status = Status::from_error(Box::new(error));
                // As tonic: a request body the client cancelled simply ends.
                if status.code() == Code::Cancelled {
                    break;
                }
                return Err(status);
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => decoder.push(data)?,
                Err(frame) => {
                    if let Ok(more) = frame.into_trailers() {
                        trailers = Some(more);
                        break;
                    }
                }
            },
        }
    }
    match decoder.first {
        Some(message) => Ok((message, trailers)),
        None => Err(Status::internal("Missing request message.")),
    }
}

struct Decoder<Req> {
    /// Bytes of a message that spans frames (empty while messages arrive whole).
    buf: BytesMut,
    first: Option<Req>,
    limit: usize,
}

impl<Req: prost::Message + Default> Decoder<Req> {
    fn push(&mut self, mut data: Bytes) -> Result<(), Status> {
        if self.buf.is_empty() {
            // The usual case: whole messages in one frame, decoded from it without a copy.
            while !data.is_empty() {
                match message_len(&data, self.limit)? {
                    Some(len) if data.len() >= HEADER_LEN + len => {
                        data.advance(HEADER_LEN);
                        let message = data.split_to(len);
                        self.accept(message)?;
                    }
                    Some(len) => {
                        self.buf.reserve(HEADER_LEN + len);
                        self.buf.extend_from_slice(&data);
                        return Ok(());
                    }
                    None => {
                        self.buf.extend_from_slice(&data);
                        return Ok(());
                    }
                }
            }
            return Ok(());
        }
        self.buf.extend_from_slice(&data);
        while let Some(len) = message_len(&self.buf, self.limit)? {
            if self.buf.len() < HEADER_LEN + len {
                self.buf.reserve(HEADER_LEN + len - self.buf.len());
                break;
            }
            self.buf.advance(HEADER_LEN);
            let message = self.buf.split_to(len).freeze();
            self.accept(message)?;
        }
        Ok(())
    }

    fn accept(&mut self, message: Bytes) -> Result<(), Status> {
        // tonic's prost codec reports undecodable messages as Internal.
        let message = Req::decode(message).map_err(|error| Status::internal(error.to_string()))?;
        if self.first.is_none() {
            self.first = Some(message);
        }
        Ok(())
    }
}

/// The length of the message whose header starts `buf`, once the header is complete; the
/// header's errors are tonic's.
fn message_len(buf: &[u8], limit: usize) -> Result<Option<usize>, Status> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    match header[0] {
        0 => {}
        // Compression is only negotiated with `grpc-encoding`, and those requests go to tonic.
        1 => {
            return Err(Status::internal(
                "protocol error: received message with compressed-flag but no grpc-encoding was specified",
            ));
        }
        flag => {
            return Err(Status::internal(format!(
                "protocol error: received message with invalid compression flag: {flag} (valid flags are 0 and 1), while sending request"
            )));
        }
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > limit {
        return Err(Status::out_of_range(format!(
            "Error, decoded message length too large: found {len} bytes, the limit is: {limit} bytes"
        )));
    }
    Ok(Some(len))
}

/// A response body: the short path's single message and `grpc-status: 0` trailers, or what
/// tonic answered (no boxing on the short path).
#[derive(Debug)]
pub enum GrpcBody {
    /// One encoded message, then the success trailers.
    Unary {
        /// The framed message, until sent.
        data: Option<Bytes>,
        /// Whether the trailers went out.
        trailers_sent: bool,
    },
    /// tonic's body, including its empty body for trailers-only (error) responses.
    Tonic(tonic::body::Body),
}

impl Default for GrpcBody {
    fn default() -> Self {
        GrpcBody::Tonic(tonic::body::Body::empty())
    }
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        match self.get_mut() {
            GrpcBody::Unary {
                data,
                trailers_sent,
            } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                if *trailers_sent {
                    return Poll::Ready(None);
                }
                *trailers_sent = true;
                let mut trailers = HeaderMap::with_capacity(1);
                trailers.insert("grpc-status", HeaderValue::from_static("0"));
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            GrpcBody::Tonic(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GrpcBody::Unary {
                data,
                trailers_sent,
            } => data.is_none() && *trailers_sent,
            GrpcBody::Tonic(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            // Unknown, as tonic's encoder says: hyper then sends no content-length.
            GrpcBody::Unary { .. } => SizeHint::default(),
            GrpcBody::Tonic(body) => body.size_hint(),
        }
    }
}

/// Accepts connections until `stop` resolves, then lets every connection finish its calls
/// (HTTP/2 GOAWAY) and returns once all are closed, as tonic's `serve_with_incoming_shutdown`.
pub async fn serve(listener: TcpListener, service: GrpcService, stop: impl Future<Output = ()>) {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // tonic's defaults, set the way tonic sets them (a `None` lifts hyper's own limits).
    builder
        .timer(TokioTimer::new())
        .initial_connection_window_size(None)
        .initial_stream_window_size(None)
        .max_concurrent_streams(None)
        .keep_alive_interval(None)
        .keep_alive_timeout(Duration::from_secs(20))
        .adaptive_window(false)
        .max_pending_accept_reset_streams(None)
        .max_local_error_reset_streams(None)
        .max_frame_size(None);
    let (closing, closing_rx) = watch::channel(());
    let mut stop = std::pin::pin!(stop);
    {
        // The listener is dropped as soon as accepting stops, so new clients are refused
        // rather than left waiting.
        let listener = listener;
        loop {
            let (stream, remote) = tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors or memory: retrying at once would spin; the
                        // backlog keeps the waiting clients meanwhile.
                        tracing::debug!(%error, "accepting a client connection");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            spawn_connection(stream, remote, &service, &builder, closing_rx.clone());
        }
    }
    let _ = closing.send(());
    drop(closing_rx);
    closing.closed().await;
}

fn spawn_connection(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    service: &GrpcService,
    builder: &hyper::server::conn::http2::Builder<TokioExecutor>,
    mut closing: watch::Receiver<()>,
) {
    // Small gRPC frames must not wait for the client's delayed ACK (Nagle).
    if let Err(error) = stream.set_nodelay(true) {
        tracing::warn!(%error, "setting TCP_NODELAY on a client connection");
    }
    let info = tonic::transport::server::TcpConnectInfo {
        local_addr: stream.local_addr().ok(),
        remote_addr: Some(remote),
    };
    let connection = builder.serve_connection(TokioIo::new(stream), service.connection(info));
    tokio::spawn(async move {
        {
            let mut connection = std::pin::pin!(connection);
            let mut shutting_down = false;
            loop {
                tokio::select! {
                    outcome = &mut connection => {
                        if let Err(error) = outcome {
                            tracing::debug!(%error, "client connection failed");
                        }
                        break;
                    }
                    changed = closing.changed(), if !shutting_down => {
                        // A send (or the server dropping the sender) both mean stop.
                        let _ = changed;
                        shutting_down = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        }
        // Only now, with the connection (and its handlers' references) gone, may the server
        // consider this connection closed.
        drop(closing);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout_of(value: &str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(
            "grpc-timeout",
            HeaderValue::from_str(value).expect("a valid header value"),
        );
        grpc_timeout(&headers)
    }

    #[test]
    fn grpc_timeout_parses_as_tonic_does() {
        assert_eq!(timeout_of("3H"), Some(Duration::from_secs(3 * 3600)));
        assert_eq!(timeout_of("1M"), Some(Duration::from_secs(60)));
        assert_eq!(timeout_of("42S"), Some(Duration::from_secs(42)));
        assert_eq!(timeout_of("13m"), Some(Duration::from_millis(13)));
        assert_eq!(timeout_of("2u"), Some(Duration::from_micros(2)));
        assert_eq!(timeout_of("82n"), Some(Duration::from_nanos(82)));
        assert_eq!(
            timeout_of("99999999S"),
            Some(Duration::from_secs(99_999_999))
        );
        assert_eq!(timeout_of("82f"), None);
        assert_eq!(timeout_of("123456789H"), None);
        assert_eq!(timeout_of("oneH"), None);
        assert_eq!(timeout_of("S"), None);
        assert_eq!(timeout_of(""), None);
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }

    fn framed(flag: u8, message: &[u8]) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_u8(flag);
        buf.put_u32(message.len() as u32);
        buf.put_slice(message);
        buf.freeze()
    }

    fn decoder(limit: usize) -> Decoder<etcdpb::etcdserverpb::PutRequest> {
        Decoder {
            buf: BytesMut::new(),
            first: None,
            limit,
        }
    }

    #[test]
    fn decoder_takes_whole_and_split_messages_and_keeps_the_first() {
        use prost::Message;
        let first = etcdpb::etcdserverpb::PutRequest {
            key: Bytes::from_static(b"k1"),
            value: Bytes::from(vec![7u8; 1000]),
            ..Default::default()
        };
        let second = etcdpb::etcdserverpb::PutRequest {
            key: Bytes::from_static(b"k2"),
            ..Default::default()
        };
        let mut body = BytesMut::new();
        body.put(framed(0, &first.encode_to_vec()));
        body.put(framed(0, &second.encode_to_vec()));
        let body = body.freeze();
        // Whole, and cut at every few bytes (headers and messages split across frames).
        for step in [body.len(), 1, 3, 7, 100] {
            let mut decoder = decoder(4096);
            for chunk in body.chunks(step) {
                decoder
                    .push(Bytes::copy_from_slice(chunk))
                    .expect("valid messages");
            }
            assert!(decoder.buf.is_empty(), "step {step}");
            assert_eq!(decoder.first.as_ref(), Some(&first), "step {step}");
        }
    }

    #[test]
    fn decoder_errors_are_tonics() {
        let status = decoder(10)
            .push(framed(1, b""))
            .expect_err("compressed flag");
        assert_eq!(status.code(), Code::Internal);
        let status = decoder(10).push(framed(2, b"")).expect_err("invalid flag");
        assert_eq!(status.code(), Code::Internal);
        // The length is checked from the header alone.
        let status = decoder(10)
            .push(framed(0, &[0u8; 11]).slice(..HEADER_LEN))
            .expect_err("too large");
        assert_eq!(status.code(), Code::OutOfRange);
        assert_eq!(
            status.message(),
            "Error, decoded message length too large: found 11 bytes, the limit is: 10 bytes"
        );
        let status = decoder(10)
            .push(framed(0, &[0xff, 0xff]))
            .expect_err("garbage");
        assert_eq!(status.code(), Code::Internal);
    }
}
