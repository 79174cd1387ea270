//! Between the two protobuf libraries: prost (our gRPC API, `keel_proto`) and rust-protobuf
//! (the shim protocol's messages, `containerd_shim_protos`). Same wire types, different Rust
//! types; these copy the few shared ones field by field.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::well_known_types::any::Any as ShimAny;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp as ShimTimestamp;
use containerd_shim_protos::protobuf::MessageField;
use keel_proto::task_types::Status;
use prost_types::{Any, Timestamp};

/// A prost `Any` as the shim crate's.
pub fn any_to_shim(any: &Any) -> ShimAny {
    let mut out = ShimAny::new();
    out.type_url = any.type_url.clone();
    out.value = any.value.clone();
    out
}

/// The shim crate's `Any` as prost's.
pub fn any_from_shim(any: &ShimAny) -> Any {
    Any {
        type_url: any.type_url.clone(),
        value: any.value.clone(),
    }
}

/// An optional field of the shim crate's `Any` as prost's.
pub fn any_field(any: &MessageField<ShimAny>) -> Option<Any> {
    any.as_ref().map(any_from_shim)
}

/// The shim crate's timestamp as prost's.
pub fn timestamp_from_shim(ts: &ShimTimestamp) -> Timestamp {
    Timestamp {
        seconds: ts.seconds,
        nanos: ts.nanos,
    }
}

/// An optional shim timestamp as prost's; unset stays unset.
pub fn timestamp_field(ts: &MessageField<ShimTimestamp>) -> Option<Timestamp> {
    ts.as_ref().map(timestamp_from_shim)
}

/// A time as the shim crate's timestamp.
pub fn timestamp_to_shim(at: SystemTime) -> ShimTimestamp {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut ts = ShimTimestamp::new();
    ts.seconds = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    ts.nanos = i32::try_from(since.subsec_nanos()).unwrap_or(0);
    ts
}

/// The time a shim timestamp stands for (the epoch for one before it or unset).
pub fn system_time(ts: &MessageField<ShimTimestamp>) -> SystemTime {
    ts.as_ref()
        .and_then(|ts| {
            let secs = u64::try_from(ts.seconds).ok()?;
            let nanos = u32::try_from(ts.nanos).ok()?;
            UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
        })
        .unwrap_or(UNIX_EPOCH)
}

/// A rootfs mount as the shim crate's.
pub fn mount_to_shim(mount: &keel_proto::types::Mount) -> api::Mount {
    let mut out = api::Mount::new();
    out.type_ = mount.r#type.clone();
    out.source = mount.source.clone();
    out.target = mount.target.clone();
    out.options = mount.options.clone();
    out
}

/// A process status as our API's enum.
pub fn status_from_shim(status: api::Status) -> Status {
    match status {
        api::Status::UNKNOWN => Status::Unknown,
        api::Status::CREATED => Status::Created,
        api::Status::RUNNING => Status::Running,
        api::Status::STOPPED => Status::Stopped,
        api::Status::PAUSED => Status::Paused,
        api::Status::PAUSING => Status::Pausing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_the_crossing() {
        let any = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: vec![0x32, 1, b'x'],
        };
        assert_eq!(any_from_shim(&any_to_shim(&any)), any);
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123);
        let shim = timestamp_to_shim(at);
        assert_eq!(system_time(&MessageField::some(shim.clone())), at);
        assert_eq!(
            timestamp_from_shim(&shim),
            Timestamp {
                seconds: 1_700_000_000,
                nanos: 123
            }
        );
        assert_eq!(system_time(&MessageField::none()), UNIX_EPOCH);
        assert_eq!(status_from_shim(api::Status::PAUSED), Status::Paused);
        let mount = keel_proto::types::Mount {
            r#type: "bind".into(),
            source: "/a".into(),
            target: String::new(),
            options: vec!["rbind".into()],
        };
        let shim = mount_to_shim(&mount);
        assert_eq!(
            (
                shim.type_.as_str(),
                shim.source.as_str(),
                shim.options.len()
            ),
            ("bind", "/a", 1)
        );
    }
}
