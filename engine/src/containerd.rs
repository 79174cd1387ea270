//! The engine as a containerd client: one tonic channel over the supervisor's unix socket, every
//! call made in the engine's containerd namespace (`--containerd-namespace`, [`NAMESPACE`] by
//! default; the `containerd-namespace` gRPC header, as containerd's own clients send it), and a typed wrapper ([`Containerd`]) with one method per
//! call the engine makes, so handlers never build gRPC requests themselves.
//!
//! The channel is lazy and reconnects by itself: a supervisor restarted under a running engine
//! is picked up on the next call, and a supervisor that is down turns into
//! [`ContainerdError::Call`] with `Unavailable`, which the API reports as 503.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use keel_proto::containers::containers_client::ContainersClient;
use keel_proto::containers::{Container, ListContainersRequest};
use keel_proto::content::content_client::ContentClient;
use keel_proto::content::ReadContentRequest;
use keel_proto::images::images_client::ImagesClient;
use keel_proto::images::{
    CreateImageRequest, DeleteImageRequest, GetImageRequest, Image, ListImagesRequest,
    UpdateImageRequest,
};
use keel_proto::task_types::Process;
use keel_proto::tasks::tasks_client::TasksClient;
use keel_proto::tasks::ListTasksRequest;
use keel_proto::version::version_client::VersionClient;
use keel_proto::NAMESPACE_METADATA_KEY;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

/// The default containerd namespace of the engine's containers and images (dockerd's is `moby`).
pub const NAMESPACE: &str = "keel";

/// How long one call may take before the engine gives up on the supervisor.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed exchange with the supervisor.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    /// The endpoint could not even be set up (a bug, not a runtime condition).
    #[error("setting up the containerd client: {0}")]
    Endpoint(#[source] tonic::transport::Error),
    /// Nothing answers on the socket.
    #[error("cannot connect to containerd at {}: {source}", address.display())]
    Connect {
        address: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    /// The namespace cannot be sent as gRPC metadata (config validation prevents this).
    #[error("containerd namespace {0:?} is not valid metadata")]
    Namespace(String),
    /// The supervisor answered with an error; its gRPC code is kept for the API's status.
    #[error("containerd {what}: {}", status.message())]
    Call {
        what: &'static str,
        status: tonic::Status,
    },
}

/// The result of a supervisor call.
pub type Result<T> = std::result::Result<T, ContainerdError>;

/// The supervisor's version, as its Version service reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorVersion {
    /// e.g. `v1.6.20`, or keel-containerd's own version.
    pub version: String,
    /// The source revision it was built from.
    pub revision: String,
}

/// A client of the supervisor's gRPC API in the engine's namespace; cheap to clone.
#[derive(Debug, Clone)]
pub struct Containerd {
    channel: Channel,
    address: PathBuf,
    namespace: MetadataValue<tonic::metadata::Ascii>,
}

impl Containerd {
    /// A client for the socket at `address` in `namespace`; connects on first use.
    pub fn lazy(address: &Path, namespace: &str) -> Result<Self> {
        let channel = endpoint()?.connect_with_connector_lazy(connector(address));
        Ok(Self {
            channel,
            address: address.to_path_buf(),
            namespace: metadata(namespace)?,
        })
    }

    /// A client for the socket at `address` (in the default namespace), connected now: fails
    /// if nothing answers.
    pub async fn connect(address: &Path) -> Result<Self> {
        let channel = endpoint()?
            .connect_with_connector(connector(address))
            .await
            .map_err(|source| ContainerdError::Connect {
                address: address.to_path_buf(),
                source,
            })?;
        Ok(Self {
            channel,
            address: address.to_path_buf(),
            namespace: MetadataValue::from_static(NAMESPACE),
        })
    }

    /// The channel, for clients made elsewhere (the pull's).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The namespace calls are made in.
    pub fn namespace(&self) -> &str {
        self.namespace.to_str().unwrap_or(NAMESPACE)
    }

    /// The supervisor's socket.
    pub fn address(&self) -> &Path {
        &self.address
    }

    /// The supervisor's version (namespace-independent).
    pub async fn version(&self) -> Result<SupervisorVersion> {
        let reply = VersionClient::new(self.channel.clone())
            .version(self.request(()))
            .await
            .map_err(|status| call("version", status))?
            .into_inner();
        Ok(SupervisorVersion {
            version: reply.version,
            revision: reply.revision,
        })
    }

    /// Every container of the engine's namespace.
    pub async fn containers(&self) -> Result<Vec<Container>> {
        let reply = ContainersClient::new(self.channel.clone())
            .list(self.request(ListContainersRequest::default()))
            .await
            .map_err(|status| call("containers.list", status))?;
        Ok(reply.into_inner().containers)
    }

    /// Every task (a container's init process) of the engine's namespace.
    pub async fn tasks(&self) -> Result<Vec<Process>> {
        let reply = TasksClient::new(self.channel.clone())
            .list(self.request(ListTasksRequest::default()))
            .await
            .map_err(|status| call("tasks.list", status))?;
        Ok(reply.into_inner().tasks)
    }

    /// Every image record of the engine's namespace.
    pub async fn images(&self) -> Result<Vec<Image>> {
        let reply = ImagesClient::new(self.channel.clone())
            .list(self.request(ListImagesRequest::default()))
            .await
            .map_err(|status| call("images.list", status))?;
        Ok(reply.into_inner().images)
    }

    /// The image record named `name` (normalized), `NotFound` if none.
    pub async fn image(&self, name: &str) -> Result<Image> {
        let reply = ImagesClient::new(self.channel.clone())
            .get(self.request(GetImageRequest {
                name: name.to_string(),
            }))
            .await
            .map_err(|status| call("images.get", status))?;
        reply.into_inner().image.ok_or_else(|| {
            call(
                "images.get",
                tonic::Status::not_found(format!("image {name:?} not found")),
            )
        })
    }

    /// Creates the image record, or replaces the one of the same name (a tag moves).
    pub async fn put_image(&self, image: Image) -> Result<()> {
        let mut client = ImagesClient::new(self.channel.clone());
        let created = client
            .create(self.request(CreateImageRequest {
                image: Some(image.clone()),
            }))
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::AlreadyExists => client
                .update(self.request(UpdateImageRequest {
                    image: Some(image),
                    ..Default::default()
                }))
                .await
                .map(|_| ())
                .map_err(|status| call("images.update", status)),
            Err(status) => Err(call("images.create", status)),
        }
    }

    /// Deletes the image record `name` (its content goes with garbage collection).
    pub async fn delete_image(&self, name: &str) -> Result<()> {
        ImagesClient::new(self.channel.clone())
            .delete(self.request(DeleteImageRequest {
                name: name.to_string(),
                sync: false,
            }))
            .await
            .map(|_| ())
            .map_err(|status| call("images.delete", status))
    }

    /// The whole blob `digest` from the content store, refused past `max` bytes (manifests
    /// and configs are small; a huge one is not an image's).
    pub async fn read_blob(&self, digest: &str, max: usize) -> Result<Vec<u8>> {
        let mut stream = ContentClient::new(self.channel.clone())
            .read(self.request(ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            }))
            .await
            .map_err(|status| call("content.read", status))?
            .into_inner();
        let mut data = Vec::new();
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|status| call("content.read", status))?
        {
            if data.len() + chunk.data.len() > max {
                return Err(call(
                    "content.read",
                    tonic::Status::out_of_range(format!("{digest} is larger than {max} bytes")),
                ));
            }
            data.extend_from_slice(&chunk.data);
        }
        Ok(data)
    }

    /// `message` as a request in the engine's namespace, with the call timeout.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(CALL_TIMEOUT);
        request
            .metadata_mut()
            .insert(NAMESPACE_METADATA_KEY, self.namespace.clone());
        request
    }
}

fn metadata(namespace: &str) -> Result<MetadataValue<tonic::metadata::Ascii>> {
    MetadataValue::try_from(namespace)
        .map_err(|_| ContainerdError::Namespace(namespace.to_string()))
}

fn call(what: &'static str, status: tonic::Status) -> ContainerdError {
    ContainerdError::Call { what, status }
}

/// The URI is required by tonic and ignored: the connector below dials the unix socket.
fn endpoint() -> Result<Endpoint> {
    Endpoint::try_from("http://[::]:50051")
        .map(|e| e.connect_timeout(Duration::from_secs(5)))
        .map_err(ContainerdError::Endpoint)
}

type Connecting = std::pin::Pin<
    Box<dyn std::future::Future<Output = std::io::Result<TokioIo<tokio::net::UnixStream>>> + Send>,
>;

fn connector(
    address: &Path,
) -> impl tower::Service<
    tonic::transport::Uri,
    Response = TokioIo<tokio::net::UnixStream>,
    Error = std::io::Error,
    Future = Connecting,
> + Clone {
    let address = address.to_path_buf();
    tower::service_fn(move |_: tonic::transport::Uri| -> Connecting {
        let address = address.clone();
        Box::pin(async move {
            Ok(TokioIo::new(
                tokio::net::UnixStream::connect(address).await?,
            ))
        })
    })
}
