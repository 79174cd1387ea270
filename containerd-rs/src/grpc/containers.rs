//! `containerd.services.containers.v1.Containers` over [`crate::containers`].

use std::sync::Arc;

use keel_proto::containers::containers_server::Containers;
use keel_proto::containers::{
    CreateContainerRequest, CreateContainerResponse, DeleteContainerRequest, GetContainerRequest,
    GetContainerResponse, ListContainerMessage, ListContainersRequest, ListContainersResponse,
    UpdateContainerRequest, UpdateContainerResponse,
};
use tonic::{Request, Response, Status};

use super::{namespace, status};
use crate::containers;
use crate::supervisor::Supervisor;

#[derive(Debug, Clone)]
pub struct ContainersService {
    supervisor: Arc<Supervisor>,
}

impl ContainersService {
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        Self { supervisor }
    }
}

/// ListStream's answer: the list, one container per message.
pub type ListStream = tokio_stream::Iter<std::vec::IntoIter<Result<ListContainerMessage, Status>>>;

#[tonic::async_trait]
impl Containers for ContainersService {
    type ListStreamStream = ListStream;

    async fn get(
        &self,
        request: Request<GetContainerRequest>,
    ) -> Result<Response<GetContainerResponse>, Status> {
        let ns = namespace(&request)?;
        let container =
            containers::get(&self.supervisor, &ns, &request.into_inner().id).map_err(status)?;
        Ok(Response::new(GetContainerResponse {
            container: Some(container),
        }))
    }

    async fn list(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let ns = namespace(&request)?;
        let containers = containers::list(&self.supervisor, &ns, &request.into_inner().filters)
            .map_err(status)?;
        Ok(Response::new(ListContainersResponse { containers }))
    }

    async fn list_stream(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<Self::ListStreamStream>, Status> {
        let ns = namespace(&request)?;
        let messages: Vec<_> =
            containers::list(&self.supervisor, &ns, &request.into_inner().filters)
                .map_err(status)?
                .into_iter()
                .map(|c| Ok(ListContainerMessage { container: Some(c) }))
                .collect();
        Ok(Response::new(tokio_stream::iter(messages)))
    }

    async fn create(
        &self,
        request: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let ns = namespace(&request)?;
        // containerd's field is not nullable: a missing container is an empty one, which
        // fails validation by its id.
        let container = request.into_inner().container.unwrap_or_default();
        let created = containers::create(&self.supervisor, &ns, container).map_err(status)?;
        Ok(Response::new(CreateContainerResponse {
            container: Some(created),
        }))
    }

    async fn update(
        &self,
        request: Request<UpdateContainerRequest>,
    ) -> Result<Response<UpdateContainerResponse>, Status> {
        let ns = namespace(&request)?;
        let req = request.into_inner();
        let container = req.container.unwrap_or_default();
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let updated =
            containers::update(&self.supervisor, &ns, container, &paths).map_err(status)?;
        Ok(Response::new(UpdateContainerResponse {
            container: Some(updated),
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteContainerRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = namespace(&request)?;
        containers::delete(&self.supervisor, &ns, &request.into_inner().id).map_err(status)?;
        Ok(Response::new(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_proto::containers::container::Runtime;
    use keel_proto::containers::Container;
    use tokio_stream::StreamExt;
    use tonic::Code;

    fn service() -> (tempfile::TempDir, ContainersService) {
        let (dir, supervisor) = crate::test_support::shared_supervisor();
        (dir, ContainersService::new(supervisor))
    }

    fn in_ns<T>(message: T) -> Request<T> {
        crate::test_support::in_namespace("ns", message)
    }

    fn container(id: &str) -> Option<Container> {
        Some(Container {
            id: id.into(),
            runtime: Some(Runtime {
                name: "io.containerd.keel.v2".into(),
                options: None,
            }),
            spec: Some(prost_types::Any::default()),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn calls_map_to_containerds_codes() {
        let (_dir, service) = service();
        for id in ["a", "b"] {
            let created = service
                .create(in_ns(CreateContainerRequest {
                    container: container(id),
                }))
                .await
                .unwrap()
                .into_inner();
            assert!(created.container.unwrap().created_at.is_some());
        }
        let mut stream = service
            .list_stream(in_ns(ListContainersRequest { filters: vec![] }))
            .await
            .unwrap()
            .into_inner();
        let mut ids = Vec::new();
        while let Some(message) = stream.next().await {
            ids.push(message.unwrap().container.unwrap().id);
        }
        assert_eq!(ids, ["a", "b"], "one container per message");

        let code = |s: Status| s.code();
        let missing = service
            .get(in_ns(GetContainerRequest { id: "zz".into() }))
            .await;
        assert_eq!(missing.map(|_| ()).map_err(code), Err(Code::NotFound));
        let duplicate = service
            .create(in_ns(CreateContainerRequest {
                container: container("a"),
            }))
            .await;
        assert_eq!(
            duplicate.map(|_| ()).map_err(code),
            Err(Code::AlreadyExists)
        );
        let empty = service
            .create(in_ns(CreateContainerRequest { container: None }))
            .await;
        assert_eq!(empty.map(|_| ()).map_err(code), Err(Code::InvalidArgument));
        let runtime = service
            .update(in_ns(UpdateContainerRequest {
                container: container("a"),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["runtime".into()],
                }),
            }))
            .await;
        assert_eq!(
            runtime.map(|_| ()).map_err(code),
            Err(Code::InvalidArgument)
        );
        let no_namespace = service
            .list(Request::new(ListContainersRequest { filters: vec![] }))
            .await;
        assert_eq!(
            no_namespace.map(|_| ()).map_err(code),
            Err(Code::FailedPrecondition)
        );
        service
            .delete(in_ns(DeleteContainerRequest { id: "a".into() }))
            .await
            .unwrap();
        let again = service
            .delete(in_ns(DeleteContainerRequest { id: "a".into() }))
            .await;
        assert_eq!(again.map(|_| ()).map_err(code), Err(Code::NotFound));
    }
}
