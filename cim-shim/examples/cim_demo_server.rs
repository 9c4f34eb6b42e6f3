//! Runs the CIM-XML server with the in-memory **test** provider (not the
//! replication engine), for trying pywbemcli / wbemcli by hand:
//!
//! ```text
//! cargo run -p ironlun-cim --example cim_demo_server -- [DATA_DIR] [HTTP_PORT] [HTTPS_PORT]
//! ```
//! Prints the ports, the credential file and the certificate path; stops on
//! Ctrl-C or when standard input closes.

use std::net::SocketAddr;
use std::sync::Arc;

use ironlun_cim::testing::MemoryProvider;
use ironlun_cim::{CimConfig, CimServer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let data_dir = args.next().unwrap_or_else(|| "ironlun-data".into());
    let http: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(5988);
    let https: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(5989);
    let config = CimConfig {
        http_listen: vec![SocketAddr::from(([127, 0, 0, 1], http))],
        https_listen: vec![SocketAddr::from(([127, 0, 0, 1], https))],
        data_dir: data_dir.into(),
        ..CimConfig::default()
    };
    let server = CimServer::new(config, Arc::new(MemoryProvider::demo()))?;
    println!("http {}", server.http_addrs()[0].port());
    println!("https {}", server.https_addrs()[0].port());
    println!(
        "credential {}",
        server
            .credential_path()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    println!(
        "cert {}",
        server
            .cert_path()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    println!("ready");
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            sink.clear();
        }
    });
    server
        .serve(async {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = stdin_closed => {}
            }
        })
        .await?;
    Ok(())
}
