//! A test PKI: one CA and leaf certificates it signs, or self-signed certificates, made in
//! process with rcgen (P-256 keys), written as PEM files for the roles' configs.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// A certificate and its private key, as PEM.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl Leaf {
    /// Writes `cert.pem` and `key.pem` into `dir`, each replaced atomically (a role that
    /// reloads its certificate never reads half a file). Returns (cert, key) paths.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        for (path, text) in [(&key, &self.key_pem), (&cert, &self.cert_pem)] {
            let tmp = path.with_extension("pem.tmp");
            std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
            std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        (cert, key)
    }
}

/// A test CA.
#[derive(Debug)]
pub struct TestPki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

fn params(cn: &str, names: &[&str]) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut p = CertificateParams::new(names).expect("valid subject names");
    p.distinguished_name.push(DnType::CommonName, cn);
    p
}

impl TestPki {
    /// A new CA (`CN=vdbnet test CA`).
    pub fn new() -> Self {
        let mut p = params("vdbnet test CA", &[]);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("a CA key");
        Self {
            ca: CertifiedIssuer::self_signed(p, key).expect("a CA certificate"),
        }
    }

    /// The CA certificate (what a client is told to trust).
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// Writes the CA certificate to `path`.
    pub fn write_ca(&self, path: &Path) {
        std::fs::write(path, self.ca_pem()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// A leaf for `names` (DNS names or IP addresses), signed by the CA.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().expect("a leaf key");
        let cert = params(names.first().copied().unwrap_or("leaf"), names)
            .signed_by(&key, &self.ca)
            .expect("a leaf certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A self-signed certificate with subject `CN=<cn>` valid for `cn` (a DNS name).
pub fn self_signed(cn: &str) -> Leaf {
    let key = KeyPair::generate().expect("a key");
    let cert = params(cn, &[cn]).self_signed(&key).expect("a certificate");
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}
