//! The registry side of a pull, over oci-client: manifests by tag or digest, and blobs as byte
//! streams. Registries on a loopback address are spoken to in plain HTTP, as Docker treats
//! 127.0.0.0/8 as insecure by default; others in HTTPS with token auth as they ask.

use std::io;
use std::net::IpAddr;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::manifest::ACCEPTED;
use super::PullError;

/// A registry client for one image reference.
#[derive(Clone)]
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// A client for the registry `reference` names, anonymous.
    pub fn for_reference(reference: &Reference) -> Self {
        // rustls needs a process-wide crypto provider; a second install is a no-op error.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = reference.resolve_registry().to_string();
        let protocol = if is_loopback(&registry) {
            ClientProtocol::HttpsExcept(vec![registry])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            ..Default::default()
        };
        Self {
            client: Client::new(config),
            auth: RegistryAuth::Anonymous,
        }
    }

    /// The manifest document `reference` names (by tag or digest), checked against its digest:
    /// its bytes and digest.
    pub async fn manifest(&self, reference: &Reference) -> Result<(Bytes, String), PullError> {
        self.client
            .pull_manifest_raw(reference, &self.auth, ACCEPTED)
            .await
            .map_err(|e| registry_error(reference, e))
    }

    /// The blob `digest` of `reference`'s repository, as a stream.
    pub async fn blob(
        &self,
        reference: &Reference,
        digest: &str,
    ) -> Result<BoxStream<'static, io::Result<Bytes>>, PullError> {
        self.client
            .pull_blob_stream(reference, digest)
            .await
            .map(|sized| sized.stream)
            .map_err(|e| registry_error(reference, e))
    }
}

/// Whether `registry` (`host[:port]`) is on a loopback address.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A registry's refusal as Docker words it.
fn registry_error(reference: &Reference, e: OciDistributionError) -> PullError {
    let name = reference.whole();
    let repository = format!("{}/{}", reference.registry(), reference.repository());
    match &e {
        OciDistributionError::ImageManifestNotFoundError(_) => PullError::NotFound(name),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::NameUnknown | OciErrorCode::Unauthorized | OciErrorCode::Denied
                )
            }) {
                PullError::Denied(repository)
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::ManifestUnknown | OciErrorCode::NotFound))
            {
                PullError::NotFound(name)
            } else {
                PullError::Registry {
                    registry: reference.registry().to_string(),
                    message: envelope.to_string(),
                }
            }
        }
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => PullError::Denied(repository),
        OciDistributionError::ServerError { code: 404, .. } => PullError::NotFound(name),
        _ => PullError::Registry {
            registry: reference.registry().to_string(),
            message: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognised() {
        for yes in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "docker.io",
            "index.docker.io",
            "10.0.0.1:5000",
            "registry.local:5000",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }
}
