//! Deliveries over HTTPS: a real TLS receiver (rustls) with a certificate from a private CA
//! made by the `openssl` command line; trusted through `notify.extra_root_certificates`,
//! refused (`tls_error`) without it.

use crate::{request, skip_or_fail, test_config, Fixture};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use meridian_notify::{DeliveryId, DeliveryState, NotifyConfig};
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls;

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files in `dir`:
/// (ca.pem, server.pem, server.key). `None` when the openssl command is absent.
fn make_certificates(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl").args(args).current_dir(dir).output();
        match output {
            Ok(o) if o.status.success() => Some(()),
            Ok(o) => panic!("openssl {args:?} failed: {}", String::from_utf8_lossy(&o.stderr)),
            Err(_) => None,
        }
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(&[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=meridian test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]].concat())?;
    openssl(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]].concat())?;
    std::fs::write(dir.join("server.ext"), "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(&["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext"])?;
    Some((dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key")))
}

/// An HTTPS receiver answering 200, recording each request's webhook-id.
struct TlsReceiver {
    port: u16,
    ids: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsReceiver {
    async fn start(certificate: &Path, key: &Path) -> TlsReceiver {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_file_iter(certificate).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let ids: Arc<Mutex<Vec<String>>> = Arc::default();
        let task_ids = ids.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, ids) = (acceptor.clone(), task_ids.clone());
                tokio::spawn(async move {
                    // A client that does not trust the certificate ends the handshake.
                    let Ok(stream) = acceptor.accept(stream).await else { return };
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let ids = ids.clone();
                        async move {
                            let id = request.headers().get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                            let _ = request.into_body().collect().await;
                            ids.lock().push(id);
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        TlsReceiver { port, ids, task }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/hook", self.port)
    }
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_reach_an_https_receiver_whose_ca_is_configured_and_fail_with_tls_error_otherwise() {
    let certs = tempfile::tempdir().unwrap();
    let Some((ca, certificate, key)) = make_certificates(certs.path()) else {
        skip_or_fail("the openssl command (apt-get install openssl)");
        return;
    };
    let receiver = TlsReceiver::start(&certificate, &key).await;

    // Trusted through the configured extra root.
    let f = Fixture::start(NotifyConfig { extra_root_certificates: vec![ca], ..test_config() }).await;
    let endpoint = f.endpoint(&receiver.url(), &[]).await;
    let r = request("over-tls", "alert.firing");
    f.emit(std::slice::from_ref(&r)).await;
    let id = DeliveryId::derive(&r.id, &endpoint.id);
    let delivered = f.wait_state(&id, DeliveryState::Delivered, Duration::from_secs(10)).await;
    assert_eq!(delivered.attempts.len(), 1);
    assert_eq!(delivered.attempts[0].status, Some(200));
    assert_eq!(receiver.ids.lock().clone(), vec![id.as_str().to_owned()], "the receiver got it once, with its webhook-id");
    f.stop().await;

    // The same receiver without the CA: a failed attempt with the code tls_error, never sent.
    let f = Fixture::start(NotifyConfig { max_attempts: 1, ..test_config() }).await;
    let endpoint = f.endpoint(&receiver.url(), &[]).await;
    let r = request("untrusted", "alert.firing");
    f.emit(std::slice::from_ref(&r)).await;
    let dead = f.wait_state(&DeliveryId::derive(&r.id, &endpoint.id), DeliveryState::Dead, Duration::from_secs(10)).await;
    assert_eq!(dead.attempts[0].error_code.as_deref(), Some("tls_error"), "{:?}", dead.attempts);
    assert_eq!(dead.attempts[0].status, None);
    assert_eq!(receiver.ids.lock().len(), 1, "nothing reached the untrusted receiver");
    f.stop().await;
}
