//! `containerd.services.images.v1.Images` over [`crate::images`].

use std::sync::Arc;

use keel_proto::images::images_server::Images;
use keel_proto::images::{
    CreateImageRequest, CreateImageResponse, DeleteImageRequest, GetImageRequest, GetImageResponse,
    ListImagesRequest, ListImagesResponse, UpdateImageRequest, UpdateImageResponse,
};
use tonic::{Request, Response, Status};

use super::{namespace, status};
use crate::images;
use crate::supervisor::Supervisor;

/// The images service of one daemon.
#[derive(Debug, Clone)]
pub struct ImagesService {
    supervisor: Arc<Supervisor>,
}

impl ImagesService {
    /// The service over `supervisor`'s metadata store and event exchange.
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        Self { supervisor }
    }
}

#[tonic::async_trait]
impl Images for ImagesService {
    async fn get(
        &self,
        request: Request<GetImageRequest>,
    ) -> Result<Response<GetImageResponse>, Status> {
        let ns = namespace(&request)?;
        let image =
            images::get(&self.supervisor, &ns, &request.into_inner().name).map_err(status)?;
        Ok(Response::new(GetImageResponse { image: Some(image) }))
    }

    async fn list(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let ns = namespace(&request)?;
        let images =
            images::list(&self.supervisor, &ns, &request.into_inner().filters).map_err(status)?;
        Ok(Response::new(ListImagesResponse { images }))
    }

    async fn create(
        &self,
        request: Request<CreateImageRequest>,
    ) -> Result<Response<CreateImageResponse>, Status> {
        let ns = namespace(&request)?;
        // containerd's field is not nullable: a missing image is an empty one, refused for
        // its name.
        let image = request.into_inner().image.unwrap_or_default();
        let created = images::create(&self.supervisor, &ns, image).map_err(status)?;
        Ok(Response::new(CreateImageResponse {
            image: Some(created),
        }))
    }

    async fn update(
        &self,
        request: Request<UpdateImageRequest>,
    ) -> Result<Response<UpdateImageResponse>, Status> {
        let ns = namespace(&request)?;
        let req = request.into_inner();
        let image = req.image.unwrap_or_default();
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let updated = images::update(&self.supervisor, &ns, image, &paths).map_err(status)?;
        Ok(Response::new(UpdateImageResponse {
            image: Some(updated),
        }))
    }

    /// `sync`: what only the image kept (its content, its unpacked snapshots) is gone before
    /// the answer, as containerd collects before answering.
    async fn delete(&self, request: Request<DeleteImageRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&request)?;
        let req = request.into_inner();
        images::delete(&self.supervisor, &ns, &req.name).map_err(status)?;
        if req.sync {
            super::collect_now(&self.supervisor).await?;
        }
        Ok(Response::new(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_proto::images::Image;
    use keel_proto::types::Descriptor;
    use tonic::Code;

    fn in_ns<T>(message: T) -> Request<T> {
        crate::test_support::in_namespace("ns", message)
    }

    fn image(name: &str) -> Option<Image> {
        Some(Image {
            name: name.into(),
            target: Some(Descriptor {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                digest: format!("sha256:{}", "0".repeat(64)),
                size: 1,
                annotations: Default::default(),
            }),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn calls_map_to_containerds_codes() {
        let (_dir, supervisor) = crate::test_support::shared_supervisor();
        let service = ImagesService::new(supervisor);
        let code = |s: Status| s.code();
        let created = service
            .create(in_ns(CreateImageRequest { image: image("a") }))
            .await
            .unwrap()
            .into_inner();
        assert!(created.image.unwrap().created_at.is_some());
        let duplicate = service
            .create(in_ns(CreateImageRequest { image: image("a") }))
            .await;
        assert_eq!(
            duplicate.map(|_| ()).map_err(code),
            Err(Code::AlreadyExists)
        );
        let empty = service
            .create(in_ns(CreateImageRequest { image: None }))
            .await;
        assert_eq!(empty.map(|_| ()).map_err(code), Err(Code::InvalidArgument));
        let missing = service
            .get(in_ns(GetImageRequest { name: "z".into() }))
            .await;
        assert_eq!(missing.map(|_| ()).map_err(code), Err(Code::NotFound));
        let bad_mask = service
            .update(in_ns(UpdateImageRequest {
                image: image("a"),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
            }))
            .await;
        assert_eq!(
            bad_mask.map(|_| ()).map_err(code),
            Err(Code::InvalidArgument)
        );
        let no_namespace = service
            .list(Request::new(ListImagesRequest { filters: vec![] }))
            .await;
        assert_eq!(
            no_namespace.map(|_| ()).map_err(code),
            Err(Code::FailedPrecondition)
        );
        let listed = service
            .list(in_ns(ListImagesRequest { filters: vec![] }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.images.len(), 1);
        let delete = |name: &str| {
            service.delete(in_ns(DeleteImageRequest {
                name: name.into(),
                sync: true,
            }))
        };
        delete("a").await.unwrap();
        assert_eq!(
            delete("a").await.map(|_| ()).map_err(code),
            Err(Code::NotFound)
        );
    }
}
