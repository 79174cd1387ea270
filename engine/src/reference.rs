//! Image references as Docker reads them: `busybox` is `docker.io/library/busybox:latest`,
//! `127.0.0.1:5000/a/b:v1` keeps its registry, `name@sha256:...` pins a digest. Containerd
//! stores images under the full (normalized) name; the API shows the familiar one
//! (`busybox:latest`). Parsing follows distribution's reference grammar closely enough to
//! reject what dockerd rejects, with its message (`invalid reference format`).

use std::fmt;

/// Docker Hub's registry name in normalized references.
pub const DEFAULT_DOMAIN: &str = "docker.io";

/// The tag of a reference without one.
pub const DEFAULT_TAG: &str = "latest";

/// A reference that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Not a reference at all.
    #[error("invalid reference format")]
    Format,
    /// Upper case in the repository.
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
}

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry, e.g. `docker.io`, `127.0.0.1:5000`.
    pub domain: String,
    /// The repository path, e.g. `library/busybox`.
    pub path: String,
    /// The tag, if any (`latest` is filled in by [`Reference::with_default_tag`]).
    pub tag: Option<String>,
    /// The digest, e.g. `sha256:...`, if pinned.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `text` as Docker does (`ParseNormalizedNamed`), without adding a tag.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(parse_digest(digest)?)),
            None => (text, None),
        };
        let (name, tag) = split_tag(rest);
        if let Some(tag) = tag {
            check_tag(tag)?;
        }
        let (domain, path) = split_domain(name);
        check_domain(&domain)?;
        check_path(&path)?;
        Ok(Self {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The reference with `latest` as its tag when it has neither tag nor digest.
    pub fn with_default_tag(mut self) -> Self {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    /// `domain/path` (the repository, normalized).
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as Docker shows it: `busybox` for `docker.io/library/busybox`.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix("library/")
                .filter(|p| !p.contains('/'))
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.repository()
        }
    }

    /// The reference as Docker shows it: `busybox:latest`, `127.0.0.1:5000/a:v1`.
    pub fn familiar(&self) -> String {
        format!("{}{}", self.familiar_repository(), self.suffix())
    }

    fn suffix(&self) -> String {
        let mut suffix = String::new();
        if let Some(tag) = &self.tag {
            suffix.push(':');
            suffix.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            suffix.push('@');
            suffix.push_str(digest);
        }
        suffix
    }
}

/// The normalized form containerd stores: `docker.io/library/busybox:latest`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.repository(), self.suffix())
    }
}

/// `name:tag` → (`name`, `tag`); a colon before the last `/` is a registry port, not a tag.
fn split_tag(text: &str) -> (&str, Option<&str>) {
    let last_slash = text.rfind('/').map_or(0, |i| i + 1);
    match text[last_slash..].rfind(':') {
        Some(i) => (&text[..last_slash + i], Some(&text[last_slash + i + 1..])),
        None => (text, None),
    }
}

/// The registry is the first component when it looks like a host (a dot, a port, or
/// `localhost`); otherwise Docker Hub, where single names live under `library/`.
fn split_domain(name: &str) -> (String, String) {
    if let Some((first, rest)) = name.split_once('/') {
        if first.contains('.') || first.contains(':') || first == "localhost" {
            return (first.to_string(), rest.to_string());
        }
        return (DEFAULT_DOMAIN.to_string(), name.to_string());
    }
    (DEFAULT_DOMAIN.to_string(), format!("library/{name}"))
}

/// `host[:port]`, the host made of letters, digits, dots and dashes.
fn check_domain(domain: &str) -> Result<(), ReferenceError> {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(ReferenceError::Format)
    }
}

fn check_path(path: &str) -> Result<(), ReferenceError> {
    if path.is_empty() || path.len() > 255 {
        return Err(ReferenceError::Format);
    }
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ReferenceError::Uppercase(path.to_string()));
    }
    if path.split('/').all(valid_component) {
        Ok(())
    } else {
        Err(ReferenceError::Format)
    }
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or `-`s.
fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut separator = String::new();
    for b in bytes {
        if alnum(b) {
            if !matches!(separator.as_str(), "" | "." | "_" | "__")
                && !separator.bytes().all(|s| s == b'-')
            {
                return false;
            }
            separator.clear();
        } else if matches!(b, b'.' | b'_' | b'-') {
            separator.push(char::from(*b));
        } else {
            return false;
        }
    }
    true
}

fn check_tag(tag: &str) -> Result<(), ReferenceError> {
    let bytes = tag.as_bytes();
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let valid = !bytes.is_empty()
        && bytes.len() <= 128
        && bytes.first().is_some_and(word)
        && bytes.iter().all(|b| word(b) || *b == b'.' || *b == b'-');
    if valid {
        Ok(())
    } else {
        Err(ReferenceError::Format)
    }
}

/// `sha256:<64 hex>`.
pub fn parse_digest(text: &str) -> Result<String, ReferenceError> {
    let hex = text.strip_prefix("sha256:").ok_or(ReferenceError::Format)?;
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(text.to_string())
    } else {
        Err(ReferenceError::Format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(text: &str) -> String {
        Reference::parse(text)
            .unwrap()
            .with_default_tag()
            .to_string()
    }

    #[test]
    fn hub_names_are_normalized() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            norm("docker.io/library/busybox:x"),
            "docker.io/library/busybox:x"
        );
    }

    #[test]
    fn registries_keep_their_host_and_port() {
        assert_eq!(
            norm("127.0.0.1:5000/busybox:v1"),
            "127.0.0.1:5000/busybox:v1"
        );
        assert_eq!(norm("localhost/a/b"), "localhost/a/b:latest");
        assert_eq!(
            norm("registry.example.com:443/a"),
            "registry.example.com:443/a:latest"
        );
    }

    #[test]
    fn digests_are_kept_and_get_no_default_tag() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("busybox@{digest}")),
            format!("docker.io/library/busybox@{digest}")
        );
        assert!(Reference::parse("busybox@sha256:abc").is_err());
    }

    #[test]
    fn familiar_names_drop_the_hub() {
        let r = Reference::parse("busybox").unwrap().with_default_tag();
        assert_eq!(r.familiar(), "busybox:latest");
        let r = Reference::parse("docker.io/user/app:1").unwrap();
        assert_eq!(r.familiar(), "user/app:1");
        let r = Reference::parse("127.0.0.1:5000/busybox:v1").unwrap();
        assert_eq!(r.familiar(), "127.0.0.1:5000/busybox:v1");
    }

    #[test]
    fn bad_references_are_rejected_as_dockerd_words_it() {
        for bad in [
            "",
            ":tag",
            "a b",
            "busybox:",
            "busybox:-x",
            "a//b",
            "-a",
            "a-",
            "a@b",
            "a:b:c/d",
        ] {
            assert_eq!(
                Reference::parse(bad),
                Err(ReferenceError::Format),
                "{bad:?}"
            );
        }
        assert_eq!(
            Reference::parse("BusyBox").unwrap_err().to_string(),
            "invalid reference format: repository name (library/BusyBox) must be lowercase"
        );
        assert!(Reference::parse(&"a".repeat(300)).is_err());
    }

    #[test]
    fn separators_follow_the_grammar() {
        for good in ["a.b", "a_b", "a__b", "a-b", "a---b", "a1/b2"] {
            assert!(Reference::parse(good).is_ok(), "{good}");
        }
        for bad in ["a..b", "a___b", "a.-b"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
