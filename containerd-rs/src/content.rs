//! Content: blobs addressed by digest (containerd's content store). [`store`] holds the files;
//! the gRPC service and the metadata (labels, leases, GC) come with the content issue.

pub mod store;
