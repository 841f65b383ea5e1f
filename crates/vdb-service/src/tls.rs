//! TLS: a PEM certificate chain and key, reloaded when the files change or on SIGHUP.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

/// Why a certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("{}: no PEM certificate in it", .0.display())]
    NoCertificate(PathBuf),
    /// The key file holds no PEM private key.
    #[error("{}: no PEM private key in it", .0.display())]
    NoKey(PathBuf),
    /// The key does not fit the certificate, or rustls refuses them.
    #[error("{} and {}: {source}", cert.display(), key.display())]
    Unusable {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        source: rustls::Error,
    },
}

/// A server certificate that follows its files: [`Tls::reload`] (or [`Tls::watch`]) picks up a
/// renewed pair; a broken pair is logged and the old one kept.
#[derive(Debug, Clone)]
pub struct Tls {
    inner: Arc<Reloader>,
}

#[derive(Debug)]
struct Reloader {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    stamp: Mutex<Option<(SystemTime, SystemTime)>>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::NoCertificate(cert.to_owned()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let key_pem = read(key)?;
    let k = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::NoKey(key.to_owned()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(certs, k, &provider).map_err(|source| TlsError::Unusable {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    })
}

impl Tls {
    /// Loads the PEM certificate chain `cert` and private key `key`.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let ck = load(cert, key)?;
        Ok(Self {
            inner: Arc::new(Reloader {
                cert: cert.to_owned(),
                key: key.to_owned(),
                current: RwLock::new(Arc::new(ck)),
                stamp: Mutex::new(mtime(cert).zip(mtime(key))),
            }),
        })
    }

    /// Reloads the pair when the files changed (or always, with `force`); keeps the old pair
    /// on error. Returns whether a new pair is in use.
    pub fn reload(&self, force: bool) -> bool {
        let r = &self.inner;
        let now = mtime(&r.cert).zip(mtime(&r.key));
        let mut stamp = r.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if !force && now == *stamp {
            return false;
        }
        match load(&r.cert, &r.key) {
            Ok(ck) => {
                *r.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ck);
                *stamp = now;
                tracing::info!(cert = %r.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate reload failed; keeping the old one");
                false
            }
        }
    }

    /// Reloads when the files change (checked every two seconds) and on SIGHUP, until
    /// `cancel`.
    pub async fn watch(self, cancel: CancellationToken) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup()).ok();
        loop {
            let forced = tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(2)) => false,
                Some(()) = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
            };
            let t = self.clone();
            let _ = tokio::task::spawn_blocking(move || t.reload(forced)).await;
        }
    }

    /// The acceptor (HTTP/1.1 over TLS 1.2 or 1.3) that always presents the current pair.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the default provider supports the safe default versions")
            .with_no_client_auth()
            .with_cert_resolver(self.inner.clone());
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
    }
}

impl ResolvesServerCert for Reloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}
