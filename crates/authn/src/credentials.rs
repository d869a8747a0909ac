//! Integration credentials beside tokens: API keys (kept only as SHA-256 hashes, compared in
//! constant time, two valid at once during rotation) and TLS client certificates (matched by the
//! DNS name they are valid for; the listener has already checked them against the client CA).

use rustls::pki_types::{CertificateDer, ServerName};

use crate::config::{ApiKeyAccount, MtlsAccount};
use crate::error::AuthnError;
use crate::principal::{AuthMethod, Principal};

/// The integration accounts configured with API keys or client certificates.
pub(crate) struct IntegrationAccounts {
    api_keys: Vec<(ApiKeyAccount, Vec<Vec<u8>>)>,
    mtls: Vec<MtlsAccount>,
}

/// Lowercase hex SHA-256 of an API key, as the configuration stores it.
pub fn api_key_hash(key: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl IntegrationAccounts {
    pub(crate) fn new(api_keys: &[ApiKeyAccount], mtls: &[MtlsAccount]) -> Self {
        let api_keys = api_keys
            .iter()
            .map(|account| {
                let hashes = account
                    .sha256
                    .iter()
                    .filter_map(|h| hex::decode(h).ok())
                    .collect();
                (account.clone(), hashes)
            })
            .collect();
        Self {
            api_keys,
            mtls: mtls.to_vec(),
        }
    }

    /// How many API-key accounts there are.
    pub(crate) fn api_key_accounts(&self) -> usize {
        self.api_keys.len()
    }

    /// How many API-key hashes are accepted (an account may have two while a key rotates).
    pub(crate) fn api_key_hashes(&self) -> usize {
        self.api_keys.iter().map(|(_, hashes)| hashes.len()).sum()
    }

    /// How many mTLS accounts there are.
    pub(crate) fn mtls_accounts(&self) -> usize {
        self.mtls.len()
    }

    /// The account whose key this is. Every stored hash is compared, in constant time.
    pub(crate) fn by_api_key(&self, presented: &[u8]) -> Result<Principal, AuthnError> {
        let presented = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, presented);
        let mut found = None;
        for (account, hashes) in &self.api_keys {
            for hash in hashes {
                let equal =
                    aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_ref(), hash)
                        .is_ok();
                if equal && found.is_none() {
                    found = Some(account);
                }
            }
        }
        let account = found.ok_or(AuthnError::BadApiKey)?;
        Ok(Principal::integration(
            &account.account,
            &account.scopes,
            AuthMethod::ApiKey,
        ))
    }

    /// The account this (already CA-verified) client certificate belongs to.
    pub(crate) fn by_certificate(
        &self,
        certificate: &CertificateDer<'_>,
    ) -> Result<Principal, AuthnError> {
        let cert = webpki::EndEntityCert::try_from(certificate)
            .map_err(|_| AuthnError::UnknownClientCertificate)?;
        self.mtls
            .iter()
            .find(|account| {
                ServerName::try_from(account.dns_name.as_str())
                    .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
            })
            .map(|account| {
                Principal::integration(
                    &account.account,
                    &account.scopes,
                    AuthMethod::ClientCertificate,
                )
            })
            .ok_or(AuthnError::UnknownClientCertificate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_match_either_of_two_hashes() {
        let accounts = IntegrationAccounts::new(
            &[ApiKeyAccount {
                account: "legacy-batch".into(),
                scopes: vec!["invoices:read".into()],
                sha256: vec![api_key_hash("old-key"), api_key_hash("new-key")],
            }],
            &[],
        );
        assert_eq!(accounts.by_api_key(b"old-key").unwrap().id, "legacy-batch");
        assert_eq!(
            accounts.by_api_key(b"new-key").unwrap().scopes,
            ["invoices:read"]
        );
        assert!(matches!(
            accounts.by_api_key(b"other"),
            Err(AuthnError::BadApiKey)
        ));
        assert_eq!(
            api_key_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
