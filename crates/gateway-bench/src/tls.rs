//! A CA and a `localhost` certificate made for one benchmark run, so the simulator can
//! serve TLS (and HTTP/2 by ALPN) and the router can trust it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The files of a test PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate (PEM), for the router to trust.
    pub ca: PathBuf,
    /// The server certificate (PEM), signed by the CA, for `localhost` and `127.0.0.1`.
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
}

impl TestPki {
    /// Makes a CA and a server certificate ([`gateway_sim::TestPki`]) and writes them
    /// to `dir`.
    pub fn write(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let made = gateway_sim::TestPki::generate()?;
        let pki = Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        for (path, pem) in [
            (&pki.ca, made.ca_pem),
            (&pki.cert, made.cert_pem),
            (&pki.key, made.key_pem),
        ] {
            std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(pki)
    }

    /// The `gateway-bench sim` arguments that serve TLS with this certificate.
    pub fn sim_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}
