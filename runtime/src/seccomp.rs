//! `linux.seccomp`: translated into a libseccomp filter the way runc translates it, exported as
//! BPF behind runc's -ENOSYS stub, cached per profile under the runtime root, and loaded into the
//! init process with seccomp(2) right before exec.
//!
//! libseccomp needs 20-30 ms for a Docker-sized profile, and the BPF depends only on the profile
//! and the host, so [`compile`] keeps every program it builds in a cache directory: a profile
//! already compiled is read back instead of compiled again.

mod cache;
mod enosys;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use libseccomp::{error::SeccompError as LibError, ScmpSyscall};
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use nix::errno::Errno;
use nix::sys::memfd::{memfd_create, MFdFlags};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};
use serde::{Deserialize, Serialize};

/// Errors of compiling or loading a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile says something that cannot be turned into a filter.
    #[error("seccomp: {0}")]
    Invalid(String),
    /// SCMP_ACT_NOTIFY needs a seccomp agent, which the runtime does not talk to yet.
    #[error("seccomp notify is not supported yet (SCMP_ACT_NOTIFY in linux.seccomp)")]
    NotifyUnsupported,
    /// The profile is valid but this kernel or libseccomp cannot do what it asks.
    #[error("seccomp: {what} is not supported on this host: {reason}")]
    Unsupported { what: String, reason: String },
    /// libseccomp refused an operation.
    #[error("seccomp: libseccomp could not {what}: {source}")]
    Libseccomp { what: String, source: LibError },
    /// The program libseccomp generated could not be read back.
    #[error("seccomp: reading the BPF program from libseccomp: {0}")]
    Export(#[source] std::io::Error),
    /// A program that the kernel would refuse, caught before it is sent.
    #[error("seccomp: invalid BPF program: {0}")]
    BadProgram(String),
    /// seccomp(2) refused the filter.
    #[error("seccomp: loading the filter failed: {reason} ({errno})")]
    Load { errno: Errno, reason: &'static str },
    /// With TSYNC, another thread of the process could not take the filter.
    #[error("seccomp: thread {0} could not be synchronized to the filter (TSYNC)")]
    Tsync(i64),
}

/// The result of the seccomp module.
pub type Result<T> = std::result::Result<T, SeccompError>;

/// A compiled filter: the BPF program (raw `struct sock_filter` array) and seccomp(2) flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// The instructions, `struct sock_filter` in host byte order, 8 bytes each.
    pub program: Vec<u8>,
    /// `SECCOMP_FILTER_FLAG_*` bits for seccomp(2).
    pub flags: u32,
}

/// The kernel's limit on the length of one program (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;
/// Bytes of one `struct sock_filter`.
const INSN_SIZE: usize = std::mem::size_of::<libc::sock_filter>();
/// Linux syscalls take at most six arguments.
const MAX_ARGS: usize = 6;
/// runc turns on libseccomp's binary-tree dispatch above this many rules.
const OPTIMIZE_ABOVE: usize = 32;

/// Compiles `seccomp` to BPF, reusing a program cached in `cache_dir` for the same profile.
pub fn compile(seccomp: &LinuxSeccomp, cache_dir: Option<&Path>) -> Result<Filter> {
    let Some(dir) = cache_dir else {
        return compile_uncached(seccomp);
    };
    let key = cache::key(seccomp)?;
    if let Some(filter) = cache::lookup(dir, &key) {
        return Ok(filter);
    }
    let filter = compile_uncached(seccomp)?;
    // A cache that cannot be written costs time, not correctness: the container still starts.
    if let Err(err) = cache::store(dir, &key, &filter) {
        tracing::warn!(
            "seccomp: could not cache the compiled profile in {}: {err}",
            dir.display()
        );
    }
    Ok(filter)
}

/// Loads `filter` into the calling process (and, with TSYNC, its threads).
///
/// The caller must have set no_new_privs or hold CAP_SYS_ADMIN.
pub fn load(filter: &Filter) -> Result<()> {
    let mut insns = instructions(&filter.program)?;
    let len = u16::try_from(insns.len())
        .map_err(|_| SeccompError::BadProgram(format!("{} instructions", insns.len())))?;
    let prog = libc::sock_fprog {
        len,
        filter: insns.as_mut_ptr(),
    };
    install(&prog, filter.flags)
}

/// One syscall name of the profile with its action and conditions: runc's `configs.Syscall`.
struct Rule<'a> {
    name: &'a str,
    action: ScmpAction,
    args: &'a [LinuxSeccompArg],
}

fn compile_uncached(seccomp: &LinuxSeccomp) -> Result<Filter> {
    #[cfg(test)]
    tests::count_compilation();
    let default = action(seccomp.default_action(), seccomp.default_errno_ret())?;
    let rules = rules(seccomp)?;
    let archs: Vec<ScmpArch> = seccomp
        .architectures()
        .iter()
        .flatten()
        .map(|a| scmp_arch(*a))
        .collect();
    let mut ctx = context(default, &archs, rules.len())?;
    for rule in &rules {
        add_rule(&mut ctx, rule, default)?;
    }
    let names: Vec<&str> = rules.iter().map(|rule| rule.name).collect();
    let mut program = enosys::stub(default, &archs, &names)?.unwrap_or_default();
    program.extend(export(&ctx)?);
    check_length(&program)?;
    Ok(Filter {
        program,
        flags: filter_flags(seccomp)?,
    })
}

/// Expands the profile into one rule per name, as runc's spec conversion does.
fn rules(seccomp: &LinuxSeccomp) -> Result<Vec<Rule<'_>>> {
    let mut rules = Vec::new();
    for syscall in seccomp.syscalls().iter().flatten() {
        let action = action(syscall.action(), syscall.errno_ret())?;
        let args = syscall.args().as_deref().unwrap_or_default();
        rules.extend(
            syscall
                .names()
                .iter()
                .map(|name| Rule { name, action, args }),
        );
    }
    Ok(rules)
}

/// Translates an OCI action; errnoRet defaults to EPERM for ERRNO and TRACE, as in runc.
fn action(action: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<ScmpAction> {
    use LinuxSeccompAction as A;
    Ok(match action {
        A::ScmpActKill | A::ScmpActKillThread => ScmpAction::KillThread,
        A::ScmpActKillProcess => ScmpAction::KillProcess,
        A::ScmpActTrap => ScmpAction::Trap,
        A::ScmpActErrno => ScmpAction::Errno(i32::from(ret_data(errno_ret)?)),
        A::ScmpActTrace => ScmpAction::Trace(ret_data(errno_ret)?),
        A::ScmpActLog => ScmpAction::Log,
        A::ScmpActAllow => ScmpAction::Allow,
        A::ScmpActNotify => return Err(SeccompError::NotifyUnsupported),
    })
}

/// The 16 bits of SECCOMP_RET_DATA an ERRNO or TRACE action carries.
fn ret_data(errno_ret: Option<u32>) -> Result<u16> {
    let value = errno_ret.unwrap_or(libc::EPERM as u32);
    u16::try_from(value).map_err(|_| {
        SeccompError::Invalid(format!(
            "errnoRet {value} does not fit the 16 bits seccomp returns"
        ))
    })
}

/// The libseccomp token of an OCI architecture.
fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// A filter context with the profile's default action and architectures.
fn context(default: ScmpAction, archs: &[ScmpArch], rules: usize) -> Result<ScmpFilterContext> {
    let mut ctx = ScmpFilterContext::new(default).map_err(lib("create a filter"))?;
    for arch in archs {
        ctx.add_arch(*arch)
            .map_err(|err| SeccompError::Unsupported {
                what: format!("architecture {arch:?}"),
                reason: err.to_string(),
            })?;
    }
    // Older libseccomp has no binary tree; runc treats that as not fatal, and so do we.
    if rules > OPTIMIZE_ABOVE {
        if let Err(err) = ctx.set_ctl_optimize(2) {
            tracing::debug!("seccomp: binary tree optimization not available: {err}");
        }
    }
    // The runtime sets no_new_privs itself, only when the spec asks for it.
    ctx.set_ctl_nnp(false)
        .map_err(lib("clear its no_new_privs attribute"))?;
    Ok(ctx)
}

/// Adds one rule, skipping what runc skips: rules that repeat the default action (libseccomp
/// refuses them) and names this libseccomp does not know (not a syscall of this host).
fn add_rule(ctx: &mut ScmpFilterContext, rule: &Rule, default: ScmpAction) -> Result<()> {
    if rule.name.is_empty() {
        return Err(SeccompError::Invalid(
            "empty string is not a valid syscall name".into(),
        ));
    }
    if rule.action == default {
        return Ok(());
    }
    let Ok(syscall) = ScmpSyscall::from_name(rule.name) else {
        tracing::debug!("seccomp: unknown syscall {:?} ignored", rule.name);
        return Ok(());
    };
    let conditions = rule.args.iter().map(|arg| condition(rule.name, arg));
    for group in condition_groups(conditions.collect::<Result<_>>()?) {
        ctx.add_rule_conditional(rule.action, syscall, &group)
            .map_err(lib(&format!("add the rule for syscall {}", rule.name)))?;
    }
    Ok(())
}

/// Translates one argument condition, checking its index.
fn condition(name: &str, arg: &LinuxSeccompArg) -> Result<(usize, ScmpArgCompare)> {
    use LinuxSeccompOperator as O;
    let index = arg.index();
    if index >= MAX_ARGS {
        return Err(SeccompError::Invalid(format!(
            "syscall {name}: argument index {index} is out of range (syscalls have {MAX_ARGS})"
        )));
    }
    let (op, datum) = match arg.op() {
        O::ScmpCmpNe => (ScmpCompareOp::NotEqual, arg.value()),
        O::ScmpCmpLt => (ScmpCompareOp::Less, arg.value()),
        O::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, arg.value()),
        O::ScmpCmpEq => (ScmpCompareOp::Equal, arg.value()),
        O::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, arg.value()),
        O::ScmpCmpGt => (ScmpCompareOp::Greater, arg.value()),
        // OCI puts the mask in `value` and the expected bits in `valueTwo`.
        O::ScmpCmpMaskedEq => (
            ScmpCompareOp::MaskedEqual(arg.value()),
            arg.value_two().unwrap_or(0),
        ),
    };
    Ok((index, ScmpArgCompare::new(index as u32, op, datum)))
}

/// runc's grouping: all conditions ANDed in one rule, unless two test the same argument (which
/// libseccomp cannot do in one rule); then every condition is a rule of its own, ORed.
fn condition_groups(conditions: Vec<(usize, ScmpArgCompare)>) -> Vec<Vec<ScmpArgCompare>> {
    let mut seen = [false; MAX_ARGS];
    let repeated = conditions
        .iter()
        .any(|(index, _)| std::mem::replace(&mut seen[*index], true));
    let conditions = conditions.into_iter().map(|(_, cmp)| cmp);
    if repeated {
        conditions.map(|cmp| vec![cmp]).collect()
    } else {
        vec![conditions.collect()]
    }
}

/// Reads the BPF program libseccomp generates for `ctx`.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>> {
    // A memfd, not a pipe: libseccomp writes the whole program before we read, and a program
    // larger than the pipe buffer would block it.
    let fd = memfd_create(c"keel-seccomp-bpf", MFdFlags::MFD_CLOEXEC)
        .map_err(|errno| SeccompError::Export(errno.into()))?;
    let mut file = File::from(fd);
    ctx.export_bpf(&file)
        .map_err(lib("export the BPF program"))?;
    let mut program = Vec::new();
    file.seek(SeekFrom::Start(0))
        .map_err(SeccompError::Export)?;
    file.read_to_end(&mut program)
        .map_err(SeccompError::Export)?;
    Ok(program)
}

/// The seccomp(2) flags of the profile.
fn filter_flags(seccomp: &LinuxSeccomp) -> Result<u32> {
    let Some(flags) = seccomp.flags() else {
        // runc: with no flags at all (not even an empty list), SPEC_ALLOW where the kernel has it,
        // so that containers do not pay for the Speculative Store Bypass mitigation.
        let spec_allow = libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32;
        return Ok(if kernel_flag(spec_allow) == Some(true) {
            spec_allow
        } else {
            0
        });
    };
    flags
        .iter()
        .try_fold(0, |bits, flag| Ok(bits | flag_bit(*flag)?))
}

/// The bit of one flag, refused early when the kernel says it does not know it.
fn flag_bit(flag: LinuxSeccompFilterFlag) -> Result<u32> {
    use LinuxSeccompFilterFlag as F;
    let bit = match flag {
        F::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
        F::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
        F::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        // It only means something for a notify listener.
        F::SeccompFilterFlagWaitKillableRecv => return Err(SeccompError::NotifyUnsupported),
    } as u32;
    match kernel_flag(bit) {
        Some(false) => Err(SeccompError::Unsupported {
            what: format!("seccomp flag {flag}"),
            reason: "the kernel does not know it".into(),
        }),
        _ => Ok(bit),
    }
}

/// Whether the kernel knows a filter flag: Some(true) or Some(false) when it says so, None when
/// seccomp(2) itself is unavailable here (for example under a filter that forbids it).
#[allow(unsafe_code)]
fn kernel_flag(bit: u32) -> Option<bool> {
    let no_program = std::ptr::null::<libc::sock_fprog>();
    // SAFETY: nothing is installed. The kernel checks the flags first (EINVAL for one it does not
    // know) and then fails to copy the null program (EFAULT); libseccomp probes the same way.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            bit,
            no_program,
        )
    };
    match (ret, Errno::last()) {
        (-1, Errno::EFAULT) => Some(true),
        (-1, Errno::EINVAL) => Some(false),
        _ => None,
    }
}

/// Refuses a program the kernel would refuse: empty, ragged or too long.
fn check_length(program: &[u8]) -> Result<usize> {
    let count = program.len() / INSN_SIZE;
    if program.is_empty() || program.len() % INSN_SIZE != 0 {
        return Err(SeccompError::BadProgram(format!(
            "{} bytes is not a whole, non-zero number of {INSN_SIZE}-byte instructions",
            program.len()
        )));
    }
    if count > MAX_INSNS {
        return Err(SeccompError::BadProgram(format!(
            "{count} instructions, more than the kernel's limit of {MAX_INSNS}"
        )));
    }
    Ok(count)
}

/// Decodes the program bytes into aligned `sock_filter`s.
fn instructions(program: &[u8]) -> Result<Vec<libc::sock_filter>> {
    check_length(program)?;
    let insns = program.chunks_exact(INSN_SIZE).map(|b| libc::sock_filter {
        code: u16::from_ne_bytes([b[0], b[1]]),
        jt: b[2],
        jf: b[3],
        k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
    });
    Ok(insns.collect())
}

/// seccomp(SECCOMP_SET_MODE_FILTER, flags, prog).
#[allow(unsafe_code)]
fn install(prog: &libc::sock_fprog, flags: u32) -> Result<()> {
    let prog: *const libc::sock_fprog = prog;
    // SAFETY: `prog` points to `len` initialized instructions that outlive the call; the kernel
    // copies them and keeps no pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            prog,
        )
    };
    match ret {
        0 => Ok(()),
        -1 => Err(load_error(Errno::last())),
        tid => Err(SeccompError::Tsync(tid)),
    }
}

/// What a seccomp(2) failure means.
fn load_error(errno: Errno) -> SeccompError {
    let reason = match errno {
        Errno::EACCES => "the process has neither no_new_privs set nor CAP_SYS_ADMIN",
        Errno::EINVAL => "the kernel refused the program or one of its flags",
        Errno::ENOMEM => "out of memory, or the process's filters exceed the kernel's total length",
        Errno::EFAULT => "the program is not readable",
        Errno::ENOSYS => "the kernel has no seccomp filter support",
        Errno::EPERM => "a seccomp filter already on this process forbids seccomp(2)",
        _ => "seccomp(2) failed",
    };
    SeccompError::Load { errno, reason }
}

/// Wraps a libseccomp error with what was being done.
fn lib(what: &str) -> impl FnOnce(LibError) -> SeccompError + '_ {
    move |source| SeccompError::Libseccomp {
        what: what.to_string(),
        source,
    }
}
