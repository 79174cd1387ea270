//! containerd calls made for one pull: in one namespace, under one lease (the headers
//! containerd reads them from), with clients sized for content chunks.

use std::time::{Duration, SystemTime};

use keel_proto::content::content_client::ContentClient;
use keel_proto::diff::diff_client::DiffClient;
use keel_proto::images::images_client::ImagesClient;
use keel_proto::leases::leases_client::LeasesClient;
use keel_proto::leases::{CreateRequest, DeleteRequest};
use keel_proto::snapshots::snapshots_client::SnapshotsClient;
use tonic::transport::Channel;
use tonic::Request;

/// How long a pull's lease outlives a crashed engine (containerd's clients use 24 hours).
const LEASE_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);

/// Large enough for containerd's 1 MiB content chunks and then some.
const MAX_MESSAGE: usize = 16 << 20;

/// Where calls go and in which namespace and lease.
#[derive(Debug, Clone)]
pub struct Scope {
    channel: Channel,
    namespace: String,
    lease: Option<String>,
}

impl Scope {
    /// Calls in `namespace` over `channel`.
    pub fn new(channel: Channel, namespace: &str) -> Self {
        Self {
            channel,
            namespace: namespace.to_string(),
            lease: None,
        }
    }

    /// The same calls, under `lease`.
    pub fn under(&self, lease: &str) -> Self {
        Self {
            lease: Some(lease.to_string()),
            ..self.clone()
        }
    }

    /// `message` with the namespace (and lease) headers.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        let headers = request.metadata_mut();
        if let Ok(ns) = self.namespace.parse() {
            headers.insert(keel_proto::NAMESPACE_METADATA_KEY, ns);
        }
        if let Some(Ok(lease)) = self.lease.as_deref().map(str::parse) {
            headers.insert("containerd-lease", lease);
        }
        request
    }

    pub fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }

    pub fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }

    pub fn diff(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone())
    }

    pub fn leases(&self) -> LeasesClient<Channel> {
        LeasesClient::new(self.channel.clone())
    }

    /// A lease for what a pull writes until its image record holds it, expiring by itself
    /// should the engine die meanwhile.
    pub async fn create_lease(&self) -> Result<String, tonic::Status> {
        let now = SystemTime::now();
        let nanos = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let expire = humantime::format_rfc3339_seconds(now + LEASE_EXPIRY).to_string();
        let request = CreateRequest {
            id: format!("keel-pull-{nanos}"),
            labels: [("containerd.io/gc.expire".to_string(), expire)].into(),
        };
        let lease = self.leases().create(self.request(request)).await?;
        Ok(lease.into_inner().lease.map(|l| l.id).unwrap_or_default())
    }

    /// Ends `lease`; what it alone held is collected.
    pub async fn delete_lease(&self, lease: &str) -> Result<(), tonic::Status> {
        let request = DeleteRequest {
            id: lease.to_string(),
            sync: false,
        };
        self.leases().delete(self.request(request)).await.map(drop)
    }
}
