//! A CA and a `localhost` certificate it signed, made on the spot: what the simulator's
//! TLS mode serves in tests and benchmarks, and what their clients trust.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::server::SimError;

/// A certificate for `localhost` and `127.0.0.1`, the CA that signed it, and its key, all
/// PEM.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use gateway_sim::{Sim, TestPki};
///
/// let pki = TestPki::generate()?;
/// let sim = Sim::builder().tls(pki.cert_pem, pki.key_pem).start().await?;
/// assert!(sim.base_url().starts_with("https://localhost:"));
/// // A client trusts `pki.ca_pem`.
/// # Ok::<(), gateway_sim::SimError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct TestPki {
    /// The CA's certificate, for a client to trust.
    pub ca_pem: String,
    /// The server's certificate, signed by the CA.
    pub cert_pem: String,
    /// The server's private key.
    pub key_pem: String,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

impl TestPki {
    /// Makes a new CA and a certificate for `localhost` and `127.0.0.1` signed by it.
    pub fn generate() -> Result<Self, SimError> {
        let tls = |e: rcgen::Error| SimError::Tls(e.to_string());
        let mut ca_params = CertificateParams::new(Vec::new()).map_err(tls)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "gateway-sim test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().map_err(tls)?;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(tls)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let mut leaf = CertificateParams::new(names).map_err(tls)?;
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf_key = KeyPair::generate().map_err(tls)?;
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(tls)?;
        Ok(Self {
            ca_pem: ca_cert.pem(),
            cert_pem: leaf_cert.pem(),
            key_pem: leaf_key.serialize_pem(),
        })
    }
}
