//! `linux.personality`: the execution domain (`LINUX`, `LINUX32`) and flags of personality(2).
//!
//! The kernel keeps a personality across fork and exec (bar the flags it clears for a setuid
//! binary), so setting it in the init before it execs covers every process of the container.
//!
//! The spec lists no flag values yet ("currently no flag values are supported"); this accepts
//! the kernel's own flag names (`ADDR_NO_RANDOMIZE`, ...) and refuses any other.

use nix::sys::personality::{self, Persona};
use oci_spec::runtime::{LinuxPersonality, LinuxPersonalityDomain};

/// Errors applying `linux.personality`.
#[derive(Debug, thiserror::Error)]
pub enum PersonalityError {
    /// A flag that is not one of personality(2)'s.
    #[error("linux.personality.flags: unknown flag {0:?}: use personality(2) names ({names})", names = flag_names())]
    UnknownFlag(String),
    /// The kernel refused the personality.
    #[error("linux.personality: personality {domain}: {source}")]
    Set {
        domain: LinuxPersonalityDomain,
        source: nix::Error,
    },
}

/// The result of this module.
pub type Result<T> = std::result::Result<T, PersonalityError>;

/// Execution domains (`include/uapi/linux/personality.h`).
const PER_LINUX: i32 = 0x0000;
const PER_LINUX32: i32 = 0x0008;

/// personality(2)'s flags (`include/uapi/linux/personality.h`), by name.
const FLAGS: [(&str, i32); 11] = [
    ("UNAME26", 0x002_0000),
    ("ADDR_NO_RANDOMIZE", 0x004_0000),
    ("FDPIC_FUNCPTRS", 0x008_0000),
    ("MMAP_PAGE_ZERO", 0x010_0000),
    ("ADDR_COMPAT_LAYOUT", 0x020_0000),
    ("READ_IMPLIES_EXEC", 0x040_0000),
    ("ADDR_LIMIT_32BIT", 0x080_0000),
    ("SHORT_INODE", 0x100_0000),
    ("WHOLE_SECONDS", 0x200_0000),
    ("STICKY_TIMEOUTS", 0x400_0000),
    ("ADDR_LIMIT_3GB", 0x800_0000),
];

/// Sets the calling process's personality to `linux.personality`.
pub fn apply(config: &LinuxPersonality) -> Result<()> {
    let persona = persona(config)?;
    personality::set(persona)
        .map(drop)
        .map_err(|source| PersonalityError::Set {
            domain: config.domain(),
            source,
        })
}

/// Checks `linux.personality` without applying it, so `create` can refuse it up front.
pub fn check(config: &LinuxPersonality) -> Result<()> {
    persona(config).map(drop)
}

/// The personality(2) argument: the domain with the flags or'ed in.
fn persona(config: &LinuxPersonality) -> Result<Persona> {
    let domain = match config.domain() {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    };
    let mut flags = config.flags().iter().flatten();
    flags.try_fold(Persona::from_bits_retain(domain), |persona, name| {
        Ok(persona | Persona::from_bits_retain(flag(name)?))
    })
}

fn flag(name: &str) -> Result<i32> {
    FLAGS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|&(_, bits)| bits)
        .ok_or_else(|| PersonalityError::UnknownFlag(name.to_string()))
}

fn flag_names() -> String {
    let names: Vec<&str> = FLAGS.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forked;
    use serde_json::json;

    fn config(doc: serde_json::Value) -> LinuxPersonality {
        serde_json::from_value(doc).expect("personality json")
    }

    #[test]
    fn domains_and_flags() {
        let bits = |doc| persona(&config(doc)).map(|p| p.bits()).ok();
        assert_eq!(bits(json!({"domain": "LINUX"})), Some(0));
        assert_eq!(bits(json!({"domain": "LINUX32"})), Some(8));
        let flags = json!({"domain": "LINUX32", "flags": ["ADDR_NO_RANDOMIZE", "UNAME26"]});
        assert_eq!(bits(flags), Some(0x006_0008));
    }

    #[test]
    fn unknown_flag_is_refused() {
        let bad = config(json!({"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE", "NOPE"]}));
        let err = check(&bad).expect_err("unknown flag").to_string();
        assert!(
            err.starts_with("linux.personality.flags: unknown flag \"NOPE\""),
            "{err}"
        );
        assert!(err.contains("ADDR_NO_RANDOMIZE"), "{err}");
    }

    #[test]
    fn unknown_domain_does_not_parse() {
        let doc = json!({"domain": "SVR4"});
        assert!(serde_json::from_value::<LinuxPersonality>(doc).is_err());
    }

    #[test]
    fn personality_is_set_on_the_process() {
        fn child() -> i32 {
            let linux32 = config(json!({"domain": "LINUX32", "flags": ["ADDR_NO_RANDOMIZE"]}));
            if apply(&linux32).is_err() {
                return 1;
            }
            match std::fs::read_to_string("/proc/self/personality") {
                Ok(text) if text.trim() == "00040008" => 0,
                Ok(_) => 2,
                Err(_) => 3,
            }
        }
        assert_eq!(forked::run(child), 0);
    }
}
