//! Choosing the manifest of the host's platform from an index, as Docker does: same OS and
//! architecture, the variant when the host has one.

use oci_spec::image::{Arch, Descriptor, ImageIndex, Os};

use super::PullError;

/// A platform in the OCI (Go) spelling: `linux/amd64`, `linux/arm/v7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this engine runs on.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Self {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(String::from),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// The entry of `index` for `platform`: an exact variant match first, then any variant.
pub fn select<'a>(index: &'a ImageIndex, platform: &Platform) -> Result<&'a Descriptor, PullError> {
    let matches = |d: &&Descriptor, exact: bool| {
        let Some(p) = d.platform() else {
            return false;
        };
        let variant_ok = !exact || p.variant().as_deref() == platform.variant.as_deref();
        os_name(p.os()) == platform.os
            && arch_name(p.architecture()) == platform.architecture
            && variant_ok
    };
    let manifests = index.manifests();
    manifests
        .iter()
        .find(|d| matches(d, true))
        .or_else(|| manifests.iter().find(|d| matches(d, false)))
        .ok_or_else(|| PullError::NoMatchingPlatform {
            platform: platform.to_string(),
        })
}

fn os_name(os: &Os) -> String {
    os.to_string()
}

fn arch_name(arch: &Arch) -> String {
    arch.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant))| {
                let mut platform = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    platform["variant"] = serde_json::json!(v);
                }
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{}", format!("{i}").repeat(64)),
                    "size": 10,
                    "platform": platform,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap()
    }

    #[test]
    fn the_hosts_entry_is_chosen() {
        let idx = index(&[("linux", "arm64", Some("v8")), ("linux", "amd64", None)]);
        let amd64 = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        assert!(select(&idx, &amd64)
            .unwrap()
            .digest()
            .to_string()
            .contains("11111"));
    }

    #[test]
    fn a_variant_is_preferred_but_not_required() {
        let idx = index(&[("linux", "arm", Some("v6")), ("linux", "arm", Some("v7"))]);
        let v7 = Platform {
            os: "linux".into(),
            architecture: "arm".into(),
            variant: Some("v7".into()),
        };
        assert!(select(&idx, &v7)
            .unwrap()
            .digest()
            .to_string()
            .contains("11111"));
        let v8 = Platform {
            variant: Some("v8".into()),
            ..v7
        };
        assert!(select(&idx, &v8)
            .unwrap()
            .digest()
            .to_string()
            .contains("00000"));
    }

    #[test]
    fn no_entry_for_the_host_is_dockers_error() {
        let idx = index(&[("windows", "amd64", None)]);
        let host = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        let e = select(&idx, &host).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no matching manifest for linux/amd64 in the manifest list entries"
        );
    }
}
