//! Shared test harness: runs a CimServer with the in-memory test provider
//! on free loopback ports in a background Tokio runtime.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ironlun_cim::testing::MemoryProvider;
use ironlun_cim::{CimConfig, CimServer};

pub struct TestServer {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub cert: PathBuf,
    pub user: String,
    pub password: String,
    pub dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with a generated admin credential and certificate
    /// in a fresh temporary data directory.
    pub fn start(tag: &str, tweak: impl FnOnce(&mut CimConfig)) -> TestServer {
        let dir = std::env::temp_dir().join(format!("ironlun-cim-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut config = CimConfig {
            http_listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            https_listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            data_dir: dir.clone(),
            ..CimConfig::default()
        };
        tweak(&mut config);
        let server =
            CimServer::new(config, Arc::new(MemoryProvider::demo())).expect("server starts");
        let http = server.http_addrs()[0];
        let https = server.https_addrs()[0];
        let cert = server.cert_path().expect("https enabled").to_path_buf();
        let cred = std::fs::read_to_string(server.credential_path().expect("generated credential"))
            .unwrap();
        let (user, password) = cred.trim().split_once(':').unwrap();
        let (user, password) = (user.to_string(), password.to_string());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(server.serve(async {
                let _ = rx.await;
            }))
            .unwrap();
        });
        TestServer {
            http,
            https,
            cert,
            user,
            password,
            dir,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn basic(&self) -> String {
        use base64::Engine as _;
        let b = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.user, self.password));
        format!("Basic {b}")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A raw HTTP/1.1 exchange (Connection: close). Returns status, headers
/// (lower-cased names) and body.
pub fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = head.replace('\n', "\r\n").into_bytes();
    req.extend_from_slice(body);
    // The server may answer (413, 401) before reading the whole body.
    let _ = s.write_all(&req);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (h, b) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = h.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, b.to_string())
}

/// POSTs a CIM-XML body with the usual headers.
pub fn post(
    srv: &TestServer,
    method: &str,
    object: &str,
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let head = format!(
        "POST /cimom HTTP/1.1\nHost: {}\nAuthorization: {}\nContent-Type: application/xml; charset=\"utf-8\"\nCIMOperation: MethodCall\nCIMMethod: {method}\nCIMObject: {object}\nContent-Length: {}\nConnection: close\n\n",
        srv.http,
        srv.basic(),
        body.len()
    );
    raw(srv.http, &head, body.as_bytes())
}

pub fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub const NS_XML: &str = "<LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"cimv2\"/><NAMESPACE NAME=\"storage\"/><NAMESPACE NAME=\"iscsitarget\"/></LOCALNAMESPACEPATH>";

/// An intrinsic call document.
pub fn imethod(name: &str, ns_xml: &str, params: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\" ?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"77\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><IMETHODCALL NAME=\"{name}\">{ns_xml}{params}</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"
    )
}
