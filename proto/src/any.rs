//! Packing messages into `google.protobuf.Any` the way containerd does.
//!
//! containerd's `typeurl` names a protobuf message by its bare full name
//! (`containerd.events.TaskExit`), without the `type.googleapis.com/` prefix or even a `/`,
//! and `ctr` resolves events by exactly that string. prost's own `Any::from_msg` writes
//! `/containerd.events.TaskExit` and `Any::to_msg` refuses a URL without a `/`, so Keel packs
//! and unpacks through these two functions instead.

use prost::{Message, Name};
use prost_types::Any;

/// Packs `msg` with its full protobuf name as the type URL, as containerd does.
pub fn pack<M: Message + Name>(msg: &M) -> Any {
    Any {
        type_url: M::full_name(),
        value: msg.encode_to_vec(),
    }
}

/// Whether `any` holds an `M`: its type URL is `M`'s full name, bare or after a `/`.
pub fn is<M: Name>(any: &Any) -> bool {
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    name == M::full_name()
}

/// Unpacks an `M` from `any`, whichever of containerd's or prost's type URL forms it uses.
pub fn unpack<M: Message + Name + Default>(any: &Any) -> Result<M, UnpackError> {
    if !is::<M>(any) {
        return Err(UnpackError::WrongType {
            expected: M::full_name(),
            found: any.type_url.clone(),
        });
    }
    M::decode(any.value.as_slice()).map_err(UnpackError::Decode)
}

/// Why an `Any` could not be unpacked.
#[derive(Debug)]
pub enum UnpackError {
    /// The `Any` holds another message type.
    WrongType {
        /// The full name asked for.
        expected: String,
        /// The type URL found.
        found: String,
    },
    /// The bytes are not a valid encoding of the message.
    Decode(prost::DecodeError),
}

impl std::fmt::Display for UnpackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::WrongType { expected, found } => {
                write!(
                    f,
                    "expected a {expected} in the Any, found type URL {found:?}"
                )
            }
            Self::Decode(err) => write!(f, "the Any's value does not decode: {err}"),
        }
    }
}

impl std::error::Error for UnpackError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::WrongType { .. } => None,
            Self::Decode(err) => Some(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::TaskExit;

    #[test]
    fn packs_with_the_bare_full_name() {
        let any = pack(&TaskExit::default());
        assert_eq!(any.type_url, "containerd.events.TaskExit");
    }

    #[test]
    fn unpacks_both_url_forms() {
        let exit = TaskExit {
            container_id: "web".into(),
            exit_status: 137,
            ..Default::default()
        };
        let bare = pack(&exit);
        assert_eq!(unpack::<TaskExit>(&bare).unwrap(), exit);
        let prefixed = Any {
            type_url: format!("type.googleapis.com/{}", bare.type_url),
            value: bare.value.clone(),
        };
        assert_eq!(unpack::<TaskExit>(&prefixed).unwrap(), exit);
    }

    #[test]
    fn refuses_another_type() {
        let any = pack(&crate::events::TaskStart::default());
        let err = unpack::<TaskExit>(&any).unwrap_err();
        assert!(
            err.to_string().contains("containerd.events.TaskExit"),
            "{err}"
        );
    }
}
