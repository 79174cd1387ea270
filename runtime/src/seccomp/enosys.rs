//! runc's -ENOSYS stub (libcontainer/seccomp/patchbpf), put in front of libseccomp's program.
//!
//! A syscall newer than every syscall the profile names is one the profile's authors could not
//! know about; it gets ENOSYS instead of the default action's EPERM, so that libc sees "not
//! implemented" and falls back to an older syscall (glibc does this for clone3, faccessat2...).
//! The stub checks the architecture, then compares the syscall number with the largest one the
//! profile names for that architecture. It is built back to front, as runc builds it, because
//! jumps are counted from the end.

use std::collections::BTreeMap;

use libseccomp::{ScmpAction, ScmpArch, ScmpSyscall};

use super::{Result, SeccompError};

/// SCMP_ACT_ERRNO(ENOSYS): SECCOMP_RET_ERRNO with ENOSYS as its data.
const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
/// x32 syscalls are x86_64 syscalls with this bit set in their number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
/// The audit architecture shared by x86_64 and x32.
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// On s390(x), syscall 0 multiplexes syscall numbers the kernel does not know.
const S390_MULTIPLEX_SYSCALL: u32 = 0;

/// One classic BPF instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JMP_JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const JMP_JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JMP_JGT: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JMP_JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

fn load(offset: u32) -> Insn {
    Insn {
        code: LD_W_ABS,
        jt: 0,
        jf: 0,
        k: offset,
    }
}
fn ja(skip: u32) -> Insn {
    Insn {
        code: JMP_JA,
        jt: 0,
        jf: 0,
        k: skip,
    }
}
fn jeq(k: u32, jt: u8, jf: u8) -> Insn {
    Insn {
        code: JMP_JEQ,
        jt,
        jf,
        k,
    }
}
fn jgt(k: u32, jt: u8, jf: u8) -> Insn {
    Insn {
        code: JMP_JGT,
        jt,
        jf,
        k,
    }
}
fn jset(k: u32, jt: u8, jf: u8) -> Insn {
    Insn {
        code: JMP_JSET,
        jt,
        jf,
        k,
    }
}
fn ret(k: u32) -> Insn {
    Insn {
        code: RET_K,
        jt: 0,
        jf: 0,
        k,
    }
}

impl Insn {
    /// The instruction as the kernel reads it: `struct sock_filter` in host byte order.
    pub(super) fn bytes(self) -> [u8; 8] {
        let [c0, c1] = self.code.to_ne_bytes();
        let [k0, k1, k2, k3] = self.k.to_ne_bytes();
        [c0, c1, self.jt, self.jf, k0, k1, k2, k3]
    }
}

/// The largest syscall number the profile names, per audit architecture and libseccomp token
/// (x86_64 and x32 share an audit architecture).
type LastSyscalls = BTreeMap<u32, Vec<(ScmpArch, u32)>>;

/// The stub for a profile, as bytes, or None where runc adds none: a permissive default action
/// (a tracer handles new syscalls itself) or a default that already answers ENOSYS.
pub(super) fn stub(
    default: ScmpAction,
    archs: &[ScmpArch],
    names: &[&str],
) -> Result<Option<Vec<u8>>> {
    let enosys = ScmpAction::Errno(libc::ENOSYS);
    if matches!(
        default,
        ScmpAction::Allow | ScmpAction::Log | ScmpAction::Trace(_)
    ) || default == enosys
    {
        return Ok(None);
    }
    let program = generate(&last_syscalls(archs, names)?)?;
    Ok(Some(program.into_iter().flat_map(Insn::bytes).collect()))
}

/// The profile's architectures plus the native one (runc adds it: Docker omits it on some hosts).
fn architectures(archs: &[ScmpArch]) -> Vec<ScmpArch> {
    let mut all: Vec<ScmpArch> = Vec::new();
    for arch in archs.iter().copied().chain(native_arch()) {
        let arch = if arch == ScmpArch::Native {
            native_arch().unwrap_or(arch)
        } else {
            arch
        };
        if !all.contains(&arch) {
            all.push(arch);
        }
    }
    all
}

fn last_syscalls(archs: &[ScmpArch], names: &[&str]) -> Result<LastSyscalls> {
    let mut last = LastSyscalls::new();
    for arch in architectures(archs) {
        let audit = audit_arch(arch).ok_or_else(|| SeccompError::Unsupported {
            what: format!("architecture {arch:?}"),
            reason: "runc's -ENOSYS stub has no audit architecture for it".into(),
        })?;
        // Names this arch lacks resolve to an error or a negative pseudo-syscall: both skipped.
        let largest = names
            .iter()
            .filter_map(|name| ScmpSyscall::from_name_by_arch(name, arch).ok())
            .filter_map(|nr| u32::try_from(nr.as_raw_syscall()).ok())
            .max();
        match largest {
            Some(nr) if nr > 0 => last.entry(audit).or_default().push((arch, nr)),
            _ => tracing::warn!("seccomp: no syscalls of the profile exist on {arch:?}"),
        }
    }
    Ok(last)
}

/// Builds the stub (runc's generateEnosysStub), architectures in a fixed order.
fn generate(last: &LastSyscalls) -> Result<Vec<Insn>> {
    // Fall through into the filter; jumps that land on the second instruction get ENOSYS.
    let mut tail = vec![ja(1), ret(RET_ENOSYS)];
    let mut from_end = BTreeMap::new();
    for (&audit, maxes) in last {
        let base_enosys = len32(&tail) - 1;
        let mut section = vec![load(DATA_NR)];
        match maxes.as_slice() {
            [(arch, nr)] => section.extend(one_arch(audit, *arch, *nr, base_enosys)?),
            [_, _] => section.extend(x86_64_and_x32(audit, maxes, base_enosys)?),
            _ => return Err(overlap(audit)),
        }
        tail.splice(0..0, section);
        from_end.insert(audit, len32(&tail));
    }
    // Architectures without a section go straight to the filter (which handles bad arches).
    tail.insert(0, ja(len32(&tail)));
    for (&audit, &section_from_end) in &from_end {
        let jump = len32(&tail) - section_from_end;
        match u8::try_from(jump) {
            Ok(short) => tail.insert(0, jeq(audit, short, 0)),
            Err(_) => drop(tail.splice(0..0, [jeq(audit, 0, 1), ja(jump)])),
        }
    }
    tail.insert(0, load(DATA_ARCH));
    Ok(tail)
}

/// The section of an architecture with one largest syscall.
fn one_arch(audit: u32, arch: ScmpArch, nr: u32, base_enosys: u32) -> Result<Vec<Insn>> {
    let base_filter = base_enosys + 1;
    let mut section = Vec::new();
    if matches!(arch, ScmpArch::S390 | ScmpArch::S390X) {
        section.extend([jeq(S390_MULTIPLEX_SYSCALL, 0, 1), ret(RET_ENOSYS)]);
    }
    let mut tail = match u8::try_from(base_enosys + 1) {
        Ok(to_enosys) => vec![jgt(nr, to_enosys, 0), ja(base_filter)],
        Err(_) => vec![jgt(nr, 0, 1), ret(RET_ENOSYS), ja(base_filter)],
    };
    if audit == AUDIT_ARCH_X86_64 {
        // Skip the comparison for the other ABI of the same audit architecture.
        let skip = (tail.len() - 1) as u8;
        let mode = match arch {
            ScmpArch::X8664 => jset(X32_SYSCALL_BIT, skip, 0),
            ScmpArch::X32 => jset(X32_SYSCALL_BIT, 0, skip),
            _ => return Err(overlap(audit)),
        };
        tail.insert(0, mode);
    }
    section.extend(tail);
    Ok(section)
}

/// The section of x86_64 with both its ABIs, told apart by the x32 bit.
fn x86_64_and_x32(audit: u32, maxes: &[(ScmpArch, u32)], base_enosys: u32) -> Result<Vec<Insn>> {
    let max_of = |wanted| {
        maxes
            .iter()
            .find(|(arch, _)| *arch == wanted)
            .map(|(_, nr)| *nr)
    };
    let (Some(x86_64), Some(x32), AUDIT_ARCH_X86_64) =
        (max_of(ScmpArch::X8664), max_of(ScmpArch::X32), audit)
    else {
        return Err(overlap(audit));
    };
    let base_filter = base_enosys + 1;
    Ok(
        match (u8::try_from(base_enosys + 2), u8::try_from(base_enosys + 1)) {
            (Ok(x86_64_to_enosys), Ok(x32_to_enosys)) => vec![
                jset(X32_SYSCALL_BIT, 1, 0),
                jgt(x86_64, x86_64_to_enosys, 1),
                jgt(x32, x32_to_enosys, 0),
                ja(base_filter),
            ],
            _ => vec![
                jset(X32_SYSCALL_BIT, 1, 0),
                jgt(x86_64, 1, 2),
                jgt(x32, 0, 1),
                ret(RET_ENOSYS),
                ja(base_filter),
            ],
        },
    )
}

fn overlap(audit: u32) -> SeccompError {
    SeccompError::Invalid(format!(
        "-ENOSYS stub: unexpected architectures on audit arch {audit:#x}"
    ))
}

fn len32(program: &[Insn]) -> u32 {
    // The stub is a few dozen instructions; the whole program is checked against 4096 later.
    program.len() as u32
}

/// The host's architecture, as libseccomp calls it.
fn native_arch() -> Option<ScmpArch> {
    if cfg!(target_arch = "x86_64") {
        Some(ScmpArch::X8664)
    } else if cfg!(target_arch = "x86") {
        Some(ScmpArch::X86)
    } else if cfg!(target_arch = "aarch64") {
        Some(ScmpArch::Aarch64)
    } else if cfg!(target_arch = "arm") {
        Some(ScmpArch::Arm)
    } else if cfg!(target_arch = "riscv64") {
        Some(ScmpArch::Riscv64)
    } else if cfg!(target_arch = "s390x") {
        Some(ScmpArch::S390X)
    } else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
        Some(ScmpArch::Ppc64Le)
    } else if cfg!(target_arch = "powerpc64") {
        Some(ScmpArch::Ppc64)
    } else {
        None
    }
}

/// The AUDIT_ARCH_* value the kernel puts in `seccomp_data.arch` (runc's scmpArchToAuditArch).
fn audit_arch(arch: ScmpArch) -> Option<u32> {
    Some(match arch {
        ScmpArch::X86 => 0x4000_0003,
        ScmpArch::X8664 | ScmpArch::X32 => AUDIT_ARCH_X86_64,
        ScmpArch::Arm => 0x4000_0028,
        ScmpArch::Aarch64 => 0xC000_00B7,
        ScmpArch::Mips => 0x0000_0008,
        ScmpArch::Mips64 => 0x8000_0008,
        ScmpArch::Mips64N32 => 0xA000_0008,
        ScmpArch::Mipsel => 0x4000_0008,
        ScmpArch::Mipsel64 => 0xC000_0008,
        ScmpArch::Mipsel64N32 => 0xE000_0008,
        ScmpArch::Ppc => 0x0000_0014,
        ScmpArch::Ppc64 => 0x8000_0015,
        ScmpArch::Ppc64Le => 0xC000_0015,
        ScmpArch::S390 => 0x0000_0016,
        ScmpArch::S390X => 0x8000_0016,
        ScmpArch::Riscv64 => 0xC000_00F3,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissive_defaults_and_enosys_default_get_no_stub() {
        for default in [
            ScmpAction::Allow,
            ScmpAction::Log,
            ScmpAction::Trace(1),
            ScmpAction::Errno(38),
        ] {
            assert_eq!(
                stub(default, &[], &["getpid"]).unwrap(),
                None,
                "{default:?}"
            );
        }
        let stub = stub(ScmpAction::Errno(1), &[], &["getpid"])
            .unwrap()
            .unwrap();
        assert_eq!(
            &stub[..8],
            &load(DATA_ARCH).bytes(),
            "the stub starts by loading the arch"
        );
    }

    #[test]
    fn one_arch_stub_has_runcs_shape() {
        let last = LastSyscalls::from([(0xC000_00B7, vec![(ScmpArch::Aarch64, 293)])]);
        let expected = vec![
            load(DATA_ARCH),
            jeq(0xC000_00B7, 1, 0),
            ja(5),
            load(DATA_NR),
            jgt(293, 2, 0),
            ja(2),
            ja(1),
            ret(RET_ENOSYS),
        ];
        assert_eq!(generate(&last).unwrap(), expected);
    }

    #[test]
    fn x86_64_and_x32_are_told_apart_by_the_x32_bit() {
        let last = LastSyscalls::from([(
            AUDIT_ARCH_X86_64,
            vec![
                (ScmpArch::X8664, 334),
                (ScmpArch::X32, X32_SYSCALL_BIT | 547),
            ],
        )]);
        let expected = vec![
            load(DATA_ARCH),
            jeq(AUDIT_ARCH_X86_64, 1, 0),
            ja(7),
            load(DATA_NR),
            jset(X32_SYSCALL_BIT, 1, 0),
            jgt(334, 3, 1),
            jgt(X32_SYSCALL_BIT | 547, 2, 0),
            ja(2),
            ja(1),
            ret(RET_ENOSYS),
        ];
        assert_eq!(generate(&last).unwrap(), expected);
    }

    #[test]
    fn native_arch_is_always_covered() {
        let Some(native) = native_arch() else { return };
        let last = last_syscalls(&[], &["read", "write", "exit_group"]).unwrap();
        let audit = audit_arch(native).unwrap();
        assert!(last
            .get(&audit)
            .is_some_and(|m| m.iter().any(|(arch, _)| *arch == native)));
    }

    #[test]
    fn arch_without_audit_value_is_an_error() {
        let err = last_syscalls(&[ScmpArch::Parisc], &["read"]).unwrap_err();
        assert!(err.to_string().contains("Parisc"), "{err}");
    }
}
