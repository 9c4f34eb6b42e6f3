//! The HTTP / HTTPS front end (DSP0200 CIM operations over HTTP).
//!
//! `POST /cimom` with `CIMOperation: MethodCall`, `CIMMethod` and
//! `CIMObject` headers; HTTP Basic authentication (pre-emptive, as both
//! clients send it); answers `200` with `CIMOperation: MethodResponse` for
//! every decoded request (operation errors travel as `<ERROR>` in the
//! body), and `4xx`/`5xx` with a `CIMError` header for requests that are
//! not valid CIM-XML requests. Bodies are size-limited, requests
//! time-limited; nothing a client sends can panic the server.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::credentials::{self, CimUser};
use crate::error::CimError;
use crate::provider::Provider;
use crate::schema;
use crate::tls;
use crate::xml::decode::{self, Call, DecodeError};
use crate::xml::dom::Limits;
use crate::xml::encode;

/// Server configuration. [`Default`] gives the issue's defaults:
/// HTTP on 127.0.0.1:5988, HTTPS on 127.0.0.1:5989, a generated admin
/// credential and self-signed certificate in `data_dir`.
#[derive(Clone, Debug)]
pub struct CimConfig {
    /// Plain-HTTP listen addresses (empty: no HTTP).
    pub http_listen: Vec<SocketAddr>,
    /// HTTPS listen addresses (empty: no HTTPS).
    pub https_listen: Vec<SocketAddr>,
    /// PEM certificate chain and private key for HTTPS. When `None`, a
    /// self-signed pair is generated in `data_dir` on first start.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Where the generated credential and certificate live.
    pub data_dir: PathBuf,
    /// Users allowed in. When empty, an `admin` credential is generated in
    /// `data_dir` (mode 0600) on first start and used.
    pub users: Vec<CimUser>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Time limit for reading a request and answering it.
    pub request_timeout: Duration,
    /// Most connections served at once (further ones wait in the backlog).
    pub max_connections: usize,
    /// XML parser limits.
    pub xml_limits: Limits,
}

impl Default for CimConfig {
    fn default() -> Self {
        CimConfig {
            http_listen: vec![SocketAddr::from(([127, 0, 0, 1], 5988))],
            https_listen: vec![SocketAddr::from(([127, 0, 0, 1], 5989))],
            tls_cert: None,
            tls_key: None,
            data_dir: PathBuf::from("ironlun-data"),
            users: Vec::new(),
            max_body_bytes: 4 << 20,
            request_timeout: Duration::from_secs(60),
            max_connections: 256,
            xml_limits: Limits::default(),
        }
    }
}

/// The `[cim]` section of a config file, as serde reads it. Every field
/// is optional; [`CimSettings::to_config`] fills in the defaults. An empty
/// `http_listen` / `https_listen` list disables that listener.
///
/// ```toml
/// [cim]
/// http_listen = ["127.0.0.1:5988"]
/// https_listen = ["127.0.0.1:5989"]
/// tls_cert = "/etc/ironlun/cim.pem"     # with tls_key; else self-signed in the data dir
/// tls_key = "/etc/ironlun/cim.key"
/// users = [{ name = "admin", password = "..." }]   # else a generated admin credential
/// max_body_bytes = 4194304
/// request_timeout_secs = 60
/// ```
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CimSettings {
    pub http_listen: Option<Vec<SocketAddr>>,
    pub https_listen: Option<Vec<SocketAddr>>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub users: Vec<CimUser>,
    pub max_body_bytes: Option<usize>,
    pub request_timeout_secs: Option<u64>,
}

impl CimSettings {
    /// The server configuration these settings describe, with `data_dir`
    /// for the generated credential and certificate.
    pub fn to_config(&self, data_dir: &std::path::Path) -> CimConfig {
        let d = CimConfig::default();
        CimConfig {
            http_listen: self.http_listen.clone().unwrap_or(d.http_listen),
            https_listen: self.https_listen.clone().unwrap_or(d.https_listen),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            data_dir: data_dir.to_path_buf(),
            users: self.users.clone(),
            max_body_bytes: self.max_body_bytes.unwrap_or(d.max_body_bytes),
            request_timeout: self
                .request_timeout_secs
                .map(|s| Duration::from_secs(s.max(1)))
                .unwrap_or(d.request_timeout),
            ..d
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("CIM server: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("CIM server: credentials in {dir}: {source}")]
    Credentials {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("CIM server: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("CIM server: tls_cert and tls_key must be given together")]
    TlsHalfConfigured,
    #[error("CIM server: no listen address configured")]
    NoListener,
}

/// A configured, bound CIM-XML server. Create with [`CimServer::new`] (binds
/// the sockets, prepares credentials and TLS), then run [`CimServer::serve`].
pub struct CimServer {
    http: Vec<std::net::TcpListener>,
    https: Vec<std::net::TcpListener>,
    tls: Option<Arc<rustls::ServerConfig>>,
    cert_path: Option<PathBuf>,
    credential_path: Option<PathBuf>,
    max_connections: usize,
    handler: Arc<Handler>,
}

struct Handler {
    provider: Arc<dyn Provider>,
    users: Vec<CimUser>,
    max_body: usize,
    timeout: Duration,
    limits: Limits,
}

impl CimServer {
    /// Prepares the server: users (generating the admin credential when
    /// none are configured), TLS (generating a self-signed certificate when
    /// none is configured and HTTPS is enabled) and the listening sockets.
    /// Must be called from within a Tokio runtime only if `serve` is.
    pub fn new(config: CimConfig, provider: Arc<dyn Provider>) -> Result<CimServer, ServerError> {
        if config.http_listen.is_empty() && config.https_listen.is_empty() {
            return Err(ServerError::NoListener);
        }
        let mut credential_path = None;
        let users = if config.users.is_empty() {
            let (u, p) =
                credentials::ensure_admin_credential(&config.data_dir).map_err(|source| {
                    ServerError::Credentials {
                        dir: config.data_dir.clone(),
                        source,
                    }
                })?;
            tracing::info!(path = %p.display(), user = %u.name, "CIM-XML admin credential (user:password) is in this file");
            credential_path = Some(p);
            vec![u]
        } else {
            config.users.clone()
        };
        let (mut tls_cfg, mut cert_path) = (None, None);
        if !config.https_listen.is_empty() {
            let configured = match (&config.tls_cert, &config.tls_key) {
                (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
                (None, None) => None,
                _ => return Err(ServerError::TlsHalfConfigured),
            };
            let mut names = vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                "::1".to_string(),
            ];
            for a in &config.https_listen {
                let ip = a.ip().to_string();
                if !a.ip().is_unspecified() && !names.contains(&ip) {
                    names.push(ip);
                }
            }
            let (c, k, generated) = tls::ensure_cert(configured, &config.data_dir, &names)?;
            if generated {
                tracing::info!(cert = %c.display(), key = %k.display(), "generated a self-signed certificate for the CIM-XML HTTPS listener");
            } else {
                tracing::info!(cert = %c.display(), "CIM-XML HTTPS certificate");
            }
            tls_cfg = Some(tls::server_config(&c, &k)?);
            cert_path = Some(c);
        }
        let bind = |addr: &SocketAddr| -> Result<std::net::TcpListener, ServerError> {
            let l = std::net::TcpListener::bind(addr).map_err(|source| ServerError::Bind {
                addr: *addr,
                source,
            })?;
            l.set_nonblocking(true)
                .map_err(|source| ServerError::Bind {
                    addr: *addr,
                    source,
                })?;
            Ok(l)
        };
        let http = config
            .http_listen
            .iter()
            .map(bind)
            .collect::<Result<Vec<_>, _>>()?;
        let https = config
            .https_listen
            .iter()
            .map(bind)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CimServer {
            http,
            https,
            tls: tls_cfg,
            cert_path,
            credential_path,
            max_connections: config.max_connections.max(1),
            handler: Arc::new(Handler {
                provider,
                users,
                max_body: config.max_body_bytes,
                timeout: config.request_timeout,
                limits: config.xml_limits,
            }),
        })
    }

    /// Bound HTTP addresses (useful with port 0).
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.http
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Bound HTTPS addresses.
    pub fn https_addrs(&self) -> Vec<SocketAddr> {
        self.https
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The HTTPS certificate in use (PEM), if HTTPS is enabled.
    pub fn cert_path(&self) -> Option<&std::path::Path> {
        self.cert_path.as_deref()
    }

    /// The generated credential file, if no users were configured.
    pub fn credential_path(&self) -> Option<&std::path::Path> {
        self.credential_path.as_deref()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets
    /// in-flight requests finish (up to 5 s) and returns.
    pub async fn serve<F>(self, shutdown: F) -> Result<(), ServerError>
    where
        F: Future<Output = ()> + Send,
    {
        let (stop_tx, stop_rx) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(self.max_connections));
        let mut tasks = tokio::task::JoinSet::new();
        for (l, tls) in self
            .http
            .into_iter()
            .map(|l| (l, None))
            .chain(self.https.into_iter().map(|l| (l, self.tls.clone())))
        {
            let addr = l.local_addr().ok();
            let listener = TcpListener::from_std(l).map_err(|source| ServerError::Bind {
                addr: addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
                source,
            })?;
            tracing::info!(
                addr = ?addr,
                scheme = if tls.is_some() { "https" } else { "http" },
                "CIM-XML server listening"
            );
            tasks.spawn(accept_loop(
                listener,
                tls.map(tokio_rustls::TlsAcceptor::from),
                self.handler.clone(),
                permits.clone(),
                stop_rx.clone(),
            ));
        }
        shutdown.await;
        let _ = stop_tx.send(true);
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            tracing::warn!("CIM-XML server: connections still open after 5 s; dropping them");
        }
        Ok(())
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: Arc<Handler>,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "CIM-XML accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        while conns.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        conns.spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_conn(TokioIo::new(stream), handler, peer, stop).await,
                Some(acc) => {
                    match tokio::time::timeout(Duration::from_secs(10), acc.accept(stream)).await {
                        Ok(Ok(s)) => serve_conn(TokioIo::new(s), handler, peer, stop).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    conns.abort_all();
}

async fn serve_conn<I>(
    io: I,
    handler: Arc<Handler>,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let h = handler.clone();
        async move { Ok::<_, Infallible>(h.handle(req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(64 * 1024)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    let stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "CIM-XML connection ended with an error");
            }
            return;
        }
        _ = stop.changed() => conn.as_mut().graceful_shutdown(),
    }
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "CIM-XML connection ended with an error");
    }
}

fn plain(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// A non-200 answer with a DSP0200 `CIMError` header.
fn cim_error(status: StatusCode, token: &'static str, why: &str) -> Response<Full<Bytes>> {
    tracing::debug!(status = %status, cim_error = token, why, "rejected CIM-XML request");
    let mut r = plain(status);
    r.headers_mut()
        .insert("CIMError", HeaderValue::from_static(token));
    r
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// `%XX` decoding (wbemcli percent-encodes `/` and `:` in CIMObject).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Handler {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method().as_str() == "M-POST" {
            return cim_error(
                StatusCode::NOT_IMPLEMENTED,
                "unsupported-operation",
                "M-POST",
            );
        }
        if req.method() != Method::POST {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut()
                .insert("Allow", HeaderValue::from_static("POST"));
            return r;
        }
        if req.uri().path() != "/cimom" && req.uri().path() != "/" {
            return plain(StatusCode::NOT_FOUND);
        }
        let h = req.headers();
        if credentials::check_basic(h.get("authorization").map(|v| v.as_bytes()), &self.users)
            .is_none()
        {
            tracing::info!(
                credentials = h.contains_key("authorization"),
                "CIM-XML request refused: missing or wrong credentials"
            );
            let mut r = plain(StatusCode::UNAUTHORIZED);
            r.headers_mut().insert(
                "WWW-Authenticate",
                HeaderValue::from_static("Basic realm=\"ironlun\""),
            );
            return r;
        }
        match header(h, "CIMOperation") {
            Some(op) if op.eq_ignore_ascii_case("MethodCall") => {}
            _ => {
                return cim_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported-operation",
                    "CIMOperation is not MethodCall",
                )
            }
        }
        if let Some(v) = header(h, "CIMProtocolVersion") {
            if !v.starts_with("1.") {
                return cim_error(
                    StatusCode::NOT_IMPLEMENTED,
                    "unsupported-protocol-version",
                    v,
                );
            }
        }
        if let Some(ct) = header(h, "content-type") {
            let ct = ct.to_ascii_lowercase();
            if !(ct.starts_with("application/xml") || ct.starts_with("text/xml")) {
                return cim_error(
                    StatusCode::BAD_REQUEST,
                    "request-not-valid",
                    "Content-Type is not XML",
                );
            }
        }
        if let Some(len) = header(h, "content-length").and_then(|v| v.parse::<u64>().ok()) {
            if len > self.max_body as u64 {
                return cim_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request-not-valid",
                    "body too large",
                );
            }
        }
        let cim_method = header(h, "CIMMethod").map(percent_decode);
        let cim_object = header(h, "CIMObject").map(percent_decode);
        let host = header(h, "host")
            .filter(|v| !v.is_empty() && v.len() < 256)
            .unwrap_or("localhost")
            .to_string();

        let deadline = tokio::time::Instant::now() + self.timeout;
        let body = match tokio::time::timeout_at(
            deadline,
            Limited::new(req.into_body(), self.max_body).collect(),
        )
        .await
        {
            Err(_) => {
                return cim_error(
                    StatusCode::REQUEST_TIMEOUT,
                    "request-not-valid",
                    "body not received in time",
                )
            }
            Ok(Err(e)) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    return cim_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request-not-valid",
                        "body too large",
                    );
                }
                return cim_error(
                    StatusCode::BAD_REQUEST,
                    "request-not-valid",
                    "body could not be read",
                );
            }
            Ok(Ok(b)) => b.to_bytes(),
        };
        let Ok(text) = std::str::from_utf8(&body) else {
            return cim_error(
                StatusCode::BAD_REQUEST,
                "request-not-well-formed",
                "body is not UTF-8",
            );
        };
        let request = match decode::decode_request(text, &self.limits) {
            Ok(r) => r,
            Err(DecodeError::Xml(e)) => {
                return cim_error(
                    StatusCode::BAD_REQUEST,
                    "request-not-well-formed",
                    &e.to_string(),
                );
            }
            Err(DecodeError::MultipleRequests) => {
                return cim_error(
                    StatusCode::NOT_IMPLEMENTED,
                    "multiple-requests-unsupported",
                    "MULTIREQ",
                );
            }
            Err(e @ DecodeError::Invalid(_)) => {
                return cim_error(StatusCode::BAD_REQUEST, "request-not-valid", &e.to_string());
            }
        };
        if !request.protocol_version.starts_with("1.") {
            return cim_error(
                StatusCode::NOT_IMPLEMENTED,
                "unsupported-protocol-version",
                &request.protocol_version,
            );
        }
        match &cim_method {
            Some(m) if m.eq_ignore_ascii_case(request.call.name()) => {}
            _ => {
                return cim_error(
                    StatusCode::BAD_REQUEST,
                    "header-mismatch",
                    "CIMMethod differs from the body",
                )
            }
        }
        if let Some(obj) = &cim_object {
            let body_ns = match &request.call {
                Call::Intrinsic(c) => c.namespace.clone(),
                Call::Extrinsic(c) => c.target.namespace.clone().unwrap_or_default(),
            };
            let header_ns = match &request.call {
                Call::Intrinsic(_) => obj.as_str(),
                Call::Extrinsic(_) => obj.split_once(':').map(|(ns, _)| ns).unwrap_or(""),
            };
            if schema::normalize_namespace(header_ns) != schema::normalize_namespace(&body_ns) {
                return cim_error(
                    StatusCode::BAD_REQUEST,
                    "header-mismatch",
                    "CIMObject differs from the body",
                );
            }
        } else {
            return cim_error(
                StatusCode::BAD_REQUEST,
                "header-mismatch",
                "no CIMObject header",
            );
        }

        let provider = self.provider.clone();
        let req2 = request.clone();
        let job = tokio::task::spawn_blocking(move || {
            crate::ops::dispatch(provider.as_ref(), &req2, &host)
        });
        let xml = match tokio::time::timeout_at(deadline, job).await {
            Ok(Ok(xml)) => xml,
            Ok(Err(join)) => {
                tracing::error!(error = %join, op = request.call.name(), "CIM operation panicked");
                failure_document(&request, CimError::failed("internal error"))
            }
            Err(_) => {
                tracing::warn!(
                    op = request.call.name(),
                    "CIM operation exceeded the request time limit"
                );
                failure_document(
                    &request,
                    CimError::failed(
                        "the operation did not complete within the request time limit",
                    ),
                )
            }
        };
        let mut r = Response::new(Full::new(Bytes::from(xml)));
        r.headers_mut()
            .insert("CIMOperation", HeaderValue::from_static("MethodResponse"));
        r.headers_mut().insert(
            "Content-Type",
            HeaderValue::from_static("application/xml; charset=\"utf-8\""),
        );
        r
    }
}

fn failure_document(req: &decode::CimRequest, e: CimError) -> String {
    let body = match &req.call {
        Call::Intrinsic(c) => encode::imethod_response(&c.name, Err(&e)),
        Call::Extrinsic(c) => encode::method_error(&c.name, &e),
    };
    encode::document(&req.message_id, &body)
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn settings_from_toml() {
        #[derive(serde::Deserialize)]
        struct File {
            cim: super::CimSettings,
        }
        let f: File = toml::from_str(
            "[cim]\nhttp_listen = [\"127.0.0.1:15988\"]\nhttps_listen = []\nusers = [{ name = \"ops\", password = \"pw\" }]\nrequest_timeout_secs = 5\n",
        )
        .unwrap();
        let c = f.cim.to_config(std::path::Path::new("/tmp/x"));
        assert_eq!(c.http_listen, vec!["127.0.0.1:15988".parse().unwrap()]);
        assert!(c.https_listen.is_empty());
        assert_eq!(c.users[0].name, "ops");
        assert_eq!(c.request_timeout, std::time::Duration::from_secs(5));
        let d = super::CimSettings::default().to_config(std::path::Path::new("/tmp/x"));
        assert_eq!(d.https_listen, vec!["127.0.0.1:5989".parse().unwrap()]);
        assert!(toml::from_str::<File>("[cim]\nbogus = 1\n").is_err());
    }

    /// `serve` must be spawnable on a multi-threaded runtime.
    #[allow(dead_code)]
    fn serve_future_is_send(s: super::CimServer) {
        fn is_send<T: Send + 'static>(_: T) {}
        is_send(s.serve(async {}));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("root%2Fcimv2%3AX"), "root/cimv2:X");
        assert_eq!(percent_decode("a%"), "a%");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
