//! `containerd.services.leases.v1.Leases` over [`crate::leases`].

use std::sync::Arc;

use keel_proto::leases::leases_server::Leases;
use keel_proto::leases::{
    AddResourceRequest, CreateRequest, CreateResponse, DeleteRequest, DeleteResourceRequest,
    ListRequest, ListResourcesRequest, ListResourcesResponse, ListResponse,
};
use tonic::{Request, Response, Status};

use super::{namespace, status};
use crate::leases::{self, LeaseError};
use crate::supervisor::Supervisor;

#[derive(Debug, Clone)]
pub struct LeasesService {
    supervisor: Arc<Supervisor>,
}

impl LeasesService {
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        Self { supervisor }
    }
}

fn lease_status(e: LeaseError) -> Status {
    match e {
        LeaseError::Metadata(e) => status(e),
        e @ LeaseError::UnknownType(_) => Status::unimplemented(e.to_string()),
    }
}

#[tonic::async_trait]
impl Leases for LeasesService {
    async fn create(
        &self,
        request: Request<CreateRequest>,
    ) -> Result<Response<CreateResponse>, Status> {
        let ns = namespace(&request)?;
        let req = request.into_inner();
        let _hold = self.supervisor.gc.hold();
        let lease = leases::create(
            &self.supervisor.store,
            &ns,
            &req.id,
            req.labels.into_iter().collect(),
        )
        .map_err(lease_status)?;
        Ok(Response::new(CreateResponse { lease: Some(lease) }))
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&request)?;
        let req = request.into_inner();
        {
            let _hold = self.supervisor.gc.hold();
            leases::delete(&self.supervisor.store, &ns, &req.id).map_err(lease_status)?;
        }
        // `sync`: what the lease alone kept is gone before the answer.
        if req.sync {
            super::collect_now(&self.supervisor).await?;
        } else {
            self.supervisor.gc.deleted();
        }
        Ok(Response::new(()))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let ns = namespace(&request)?;
        let leases = leases::list(&self.supervisor.store, &ns, &request.into_inner().filters)
            .map_err(lease_status)?;
        Ok(Response::new(ListResponse { leases }))
    }

    async fn add_resource(
        &self,
        request: Request<AddResourceRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = namespace(&request)?;
        let req = request.into_inner();
        let resource = req.resource.unwrap_or_default();
        let _hold = self.supervisor.gc.hold();
        leases::add_resource(&self.supervisor.store, &ns, &req.id, &resource)
            .map_err(lease_status)?;
        Ok(Response::new(()))
    }

    async fn delete_resource(
        &self,
        request: Request<DeleteResourceRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = namespace(&request)?;
        let req = request.into_inner();
        let resource = req.resource.unwrap_or_default();
        {
            let _hold = self.supervisor.gc.hold();
            leases::delete_resource(&self.supervisor.store, &ns, &req.id, &resource)
                .map_err(lease_status)?;
        }
        self.supervisor.gc.deleted();
        Ok(Response::new(()))
    }

    async fn list_resources(
        &self,
        request: Request<ListResourcesRequest>,
    ) -> Result<Response<ListResourcesResponse>, Status> {
        let ns = namespace(&request)?;
        let resources =
            leases::list_resources(&self.supervisor.store, &ns, &request.into_inner().id)
                .map_err(lease_status)?;
        Ok(Response::new(ListResourcesResponse { resources }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_proto::leases::Resource;
    use tonic::Code;

    fn service() -> (tempfile::TempDir, LeasesService) {
        let (dir, supervisor) = crate::test_support::shared_supervisor();
        (dir, LeasesService::new(supervisor))
    }

    fn in_ns<T>(message: T) -> Request<T> {
        crate::test_support::in_namespace("ns", message)
    }

    fn add(id: &str, kind: &str) -> Request<AddResourceRequest> {
        in_ns(AddResourceRequest {
            id: id.into(),
            resource: Some(Resource {
                id: "key".into(),
                r#type: kind.into(),
            }),
        })
    }

    #[tokio::test]
    async fn calls_map_to_containerds_codes() {
        let (_dir, service) = service();
        let lease = service
            .create(in_ns(CreateRequest {
                id: String::new(),
                labels: [("a".to_string(), "1".to_string())].into_iter().collect(),
            }))
            .await
            .unwrap()
            .into_inner()
            .lease
            .unwrap();
        assert!(!lease.id.is_empty(), "a random id");
        assert!(lease.created_at.is_some());
        service
            .add_resource(add(&lease.id, "snapshots/overlayfs"))
            .await
            .unwrap();
        let code = |r: Result<Response<()>, Status>| r.map(|_| ()).map_err(|s| s.code());
        assert_eq!(
            code(service.add_resource(add(&lease.id, "images")).await),
            Err(Code::Unimplemented)
        );
        assert_eq!(
            code(service.add_resource(add(&lease.id, "snapshots")).await),
            Err(Code::InvalidArgument)
        );
        assert_eq!(
            code(service.add_resource(add("nope", "ingests")).await),
            Err(Code::NotFound)
        );
        let resources = service
            .list_resources(in_ns(ListResourcesRequest {
                id: lease.id.clone(),
            }))
            .await
            .unwrap()
            .into_inner()
            .resources;
        assert_eq!(resources.len(), 1);
        let listed = service
            .list(in_ns(ListRequest {
                filters: vec!["labels.a==1".into()],
            }))
            .await
            .unwrap()
            .into_inner()
            .leases;
        assert_eq!(listed, std::slice::from_ref(&lease));
        let delete = |id: &str| {
            service.delete(in_ns(DeleteRequest {
                id: id.into(),
                sync: true,
            }))
        };
        assert_eq!(code(delete(&lease.id).await), Ok(()));
        assert_eq!(code(delete(&lease.id).await), Err(Code::NotFound));
    }
}
