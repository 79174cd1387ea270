//! `containerd.services.namespaces.v1.Namespaces` over the metadata store; changes are
//! published as `/namespaces/{create,update,delete}` in the caller's namespace, as containerd
//! does (which is why it needs the header even here).

use std::collections::HashMap;
use std::sync::Arc;

use keel_proto::events::{NamespaceCreate, NamespaceDelete, NamespaceUpdate};
use keel_proto::namespaces::namespaces_server::Namespaces;
use keel_proto::namespaces::{
    CreateNamespaceRequest, CreateNamespaceResponse, DeleteNamespaceRequest, GetNamespaceRequest,
    GetNamespaceResponse, ListNamespacesRequest, ListNamespacesResponse, Namespace,
    UpdateNamespaceRequest, UpdateNamespaceResponse,
};
use keel_proto::topics;
use tonic::{Request, Response, Status};

use super::{namespace, status};
use crate::filters::{Fields, Filter};
use crate::metadata::Labels;
use crate::supervisor::Supervisor;

#[derive(Debug, Clone)]
pub struct NamespacesService {
    supervisor: Arc<Supervisor>,
}

impl NamespacesService {
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        Self { supervisor }
    }
}

fn to_proto(name: String, labels: Labels) -> Namespace {
    Namespace {
        name,
        labels: labels.into_iter().collect(),
    }
}

/// Labels as stored: an empty value removes the label (`ctr namespaces label NS key=`).
fn labels(map: HashMap<String, String>) -> Labels {
    map.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

impl Fields for Namespace {
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [f] if f == "name" => Some(self.name.clone()),
            [f, key] if f == "labels" => self.labels.get(key).cloned(),
            _ => None,
        }
    }
}

#[tonic::async_trait]
impl Namespaces for NamespacesService {
    async fn get(
        &self,
        request: Request<GetNamespaceRequest>,
    ) -> Result<Response<GetNamespaceResponse>, Status> {
        let name = request.into_inner().name;
        let labels = self.supervisor.store.namespace(&name).map_err(status)?;
        Ok(Response::new(GetNamespaceResponse {
            namespace: Some(to_proto(name, labels)),
        }))
    }

    async fn list(
        &self,
        request: Request<ListNamespacesRequest>,
    ) -> Result<Response<ListNamespacesResponse>, Status> {
        let filter = Filter::parse_all(&[request.into_inner().filter])
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let namespaces = self
            .supervisor
            .store
            .namespaces()
            .map_err(status)?
            .into_iter()
            .map(|(name, labels)| to_proto(name, labels))
            .filter(|n| filter.matches(n))
            .collect();
        Ok(Response::new(ListNamespacesResponse { namespaces }))
    }

    async fn create(
        &self,
        request: Request<CreateNamespaceRequest>,
    ) -> Result<Response<CreateNamespaceResponse>, Status> {
        let caller = namespace(&request)?;
        let ns = request
            .into_inner()
            .namespace
            .ok_or_else(|| Status::invalid_argument("no namespace to create"))?;
        self.supervisor
            .store
            .create_namespace(&ns.name, &labels(ns.labels.clone()))
            .map_err(status)?;
        self.supervisor.publish(
            &caller,
            topics::NAMESPACE_CREATE,
            &NamespaceCreate {
                name: ns.name.clone(),
                labels: ns.labels.clone(),
            },
        );
        Ok(Response::new(CreateNamespaceResponse {
            namespace: Some(ns),
        }))
    }

    async fn update(
        &self,
        request: Request<UpdateNamespaceRequest>,
    ) -> Result<Response<UpdateNamespaceResponse>, Status> {
        let caller = namespace(&request)?;
        let req = request.into_inner();
        let ns = req
            .namespace
            .ok_or_else(|| Status::invalid_argument("no namespace to update"))?;
        let mut current = self.supervisor.store.namespace(&ns.name).map_err(status)?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            current = labels(ns.labels.clone());
        }
        for path in &paths {
            match path.split_once('.') {
                Some(("labels", key)) => match ns.labels.get(key).filter(|v| !v.is_empty()) {
                    Some(value) => {
                        current.insert(key.to_string(), value.clone());
                    }
                    None => {
                        current.remove(key);
                    }
                },
                None if path == "labels" => current = labels(ns.labels.clone()),
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "cannot update {path:?} field on namespace {:?}",
                        ns.name
                    )))
                }
            }
        }
        self.supervisor
            .store
            .update_namespace(&ns.name, &current)
            .map_err(status)?;
        // As containerd: the event carries the labels of the request, not the result.
        self.supervisor.publish(
            &caller,
            topics::NAMESPACE_UPDATE,
            &NamespaceUpdate {
                name: ns.name.clone(),
                labels: ns.labels.clone(),
            },
        );
        // containerd 1.6 answers an empty namespace here.
        Ok(Response::new(UpdateNamespaceResponse {
            namespace: Some(Namespace::default()),
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteNamespaceRequest>,
    ) -> Result<Response<()>, Status> {
        // The header is required (as containerd requires it), but containerd publishes the
        // delete in the deleted namespace itself.
        namespace(&request)?;
        let name = request.into_inner().name;
        self.supervisor
            .store
            .delete_namespace(&name)
            .map_err(status)?;
        let event = NamespaceDelete { name: name.clone() };
        self.supervisor
            .publish(&name, topics::NAMESPACE_DELETE, &event);
        Ok(Response::new(()))
    }
}
