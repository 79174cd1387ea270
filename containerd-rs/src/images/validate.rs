//! containerd's `validateImage`: what every stored image must have, worded as containerd 1.6
//! words it (go-digest's messages for a bad target digest).

use keel_proto::types::Descriptor;

use super::invalid;
use crate::metadata::Result;
use keel_proto::images::Image;

/// containerd's limit on a label's key and value together.
const MAX_LABEL_SIZE: usize = 4096;

/// The digest algorithms go-digest can check, with their hex lengths.
const ALGORITHMS: [(&str, usize); 3] = [("sha256", 64), ("sha384", 96), ("sha512", 128)];

/// A name, labels within size, and a well-formed target.
pub fn image(image: &Image) -> Result<()> {
    if image.name.is_empty() {
        return Err(invalid("image name must not be empty"));
    }
    // containerd's bolt keys take any bytes; our record keys use NUL as a separator.
    if image.name.contains('\0') {
        return Err(invalid("image name must not contain NUL"));
    }
    for (key, value) in &image.labels {
        if key.len() + value.len() > MAX_LABEL_SIZE {
            let short: String = key.chars().take(10).collect();
            return Err(invalid(format!(
                "image.Labels: label key and value greater than maximum size \
                 ({MAX_LABEL_SIZE} bytes), key: {short}"
            )));
        }
    }
    target(image.target.as_ref().unwrap_or(&Descriptor::default()))
}

/// containerd's `validateTarget`: a valid digest, a positive size, a media type.
fn target(target: &Descriptor) -> Result<()> {
    if let Err(e) = digest(&target.digest) {
        return Err(invalid(format!(
            "Target.Digest {:?} invalid: {e}",
            target.digest
        )));
    }
    if target.size <= 0 {
        return Err(invalid("Target.Size must be greater than zero"));
    }
    if target.media_type.is_empty() {
        return Err(invalid("Target.MediaType must be set"));
    }
    Ok(())
}

/// go-digest's `Digest.Validate`, returning its error text.
pub fn digest(digest: &str) -> std::result::Result<(), &'static str> {
    const FORMAT: &str = "invalid checksum digest format";
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return Err(FORMAT);
    };
    if algorithm.is_empty() || encoded.is_empty() {
        return Err(FORMAT);
    }
    let Some((_, length)) = ALGORITHMS.iter().find(|(name, _)| *name == algorithm) else {
        return Err(if well_formed(algorithm, encoded) {
            "unsupported digest algorithm"
        } else {
            FORMAT
        });
    };
    if encoded.len() != *length {
        return Err("invalid checksum digest length");
    }
    if !encoded
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(FORMAT);
    }
    Ok(())
}

/// go-digest's grammar for any digest: `[a-z0-9]+([.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+`.
fn well_formed(algorithm: &str, encoded: &str) -> bool {
    let component =
        |c: &str| !c.is_empty() && c.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9'));
    let algorithm_ok = algorithm.split(['.', '+', '_', '-']).all(component);
    let encoded_ok = encoded
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'));
    algorithm_ok && encoded_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_as_go_digest_checks_them() {
        let hex = "a".repeat(64);
        assert_eq!(digest(&format!("sha256:{hex}")), Ok(()));
        assert_eq!(digest(&format!("sha512:{}", "0".repeat(128))), Ok(()));
        for (bad, why) in [
            ("", "invalid checksum digest format"),
            ("sha256", "invalid checksum digest format"),
            ("sha256:", "invalid checksum digest format"),
            (":abc", "invalid checksum digest format"),
            ("sha256:abc", "invalid checksum digest length"),
            ("md5:abc", "unsupported digest algorithm"),
            ("MD5:abc", "invalid checksum digest format"),
        ] {
            assert_eq!(digest(bad), Err(why), "{bad:?}");
        }
        let upper = format!("sha256:{}", "A".repeat(64));
        assert_eq!(digest(&upper), Err("invalid checksum digest format"));
    }
}
