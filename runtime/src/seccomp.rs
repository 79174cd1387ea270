//! `linux.seccomp`: translated into a libseccomp filter the way runc translates it, exported as
//! BPF behind runc's -ENOSYS stub, cached per profile under the runtime root, and loaded into the
//! init process with seccomp(2) right before exec.
//!
//! libseccomp needs 20-30 ms for a Docker-sized profile, and the BPF depends only on the profile
//! and the host, so [`compile`] keeps every program it builds in a cache directory: a profile
//! already compiled is read back instead of compiled again.
//!
//! SCMP_ACT_NOTIFY (seccomp user notification) works as in runc: a filter with such rules is
//! loaded with SECCOMP_FILTER_FLAG_NEW_LISTENER, [`load`] returns the listener fd, init hands it
//! to the runtime process, and [`send_listener`] passes it on to the seccomp agent listening at
//! `linux.seccomp.listenerPath`.

mod cache;
mod enosys;
mod notify;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use libseccomp::{error::SeccompError as LibError, ScmpSyscall};
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use nix::errno::Errno;
use nix::sys::memfd::{memfd_create, MFdFlags};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};
use serde::{Deserialize, Serialize};

pub use notify::{notify_agent, send_listener, ListenerState};

/// Errors of compiling or loading a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile says something that cannot be turned into a filter.
    #[error("seccomp: {0}")]
    Invalid(String),
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
    /// The listener of a SCMP_ACT_NOTIFY filter could not be handed to the seccomp agent.
    #[error("seccomp: sending the notify listener to the agent at {}: {what}: {source}", path.display())]
    Listener {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
}

/// The result of the seccomp module.
pub type Result<T> = std::result::Result<T, SeccompError>;

/// A compiled filter: the BPF program (raw `struct sock_filter` array) and seccomp(2) flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// The instructions, `struct sock_filter` in host byte order, 8 bytes each.
    pub program: Vec<u8>,
    /// `SECCOMP_FILTER_FLAG_*` bits for seccomp(2); with `notify`, NEW_LISTENER among them.
    pub flags: u32,
    /// Whether the profile has SCMP_ACT_NOTIFY rules: [`load`] then returns a listener fd.
    #[serde(default)]
    pub notify: bool,
}

/// The kernel's limit on the length of one program (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;
/// Bytes of one `struct sock_filter`.
const INSN_SIZE: usize = std::mem::size_of::<libc::sock_filter>();
/// Linux syscalls take at most six arguments.
const MAX_ARGS: usize = 6;
/// runc turns on libseccomp's binary-tree dispatch above this many rules.
const OPTIMIZE_ABOVE: usize = 32;

/// Syscalls init makes after loading the filter and before the runtime process holds the
/// listener (the channel's sendmsg, and write for the rest of a frame). Notifying one would wait
/// for an agent that cannot have the listener yet: init would hang. runc refuses `write`, for
/// the same reason.
const NOT_NOTIFIABLE: [&str; 2] = ["write", "sendmsg"];

/// Compiles `seccomp` to BPF, reusing a program cached in `cache_dir` for the same profile.
pub fn compile(seccomp: &LinuxSeccomp, cache_dir: Option<&Path>) -> Result<Filter> {
    // Before the cache: the key leaves out the listener fields this checks.
    check_notify(seccomp)?;
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

/// Loads `filter` into the calling process (and, with TSYNC, its threads); for a `notify`
/// filter, returns its listener (close-on-exec), which must reach the seccomp agent before
/// the process makes a notified syscall.
///
/// The caller must have set no_new_privs or hold CAP_SYS_ADMIN.
pub fn load(filter: &Filter) -> Result<Option<OwnedFd>> {
    let flags = load_flags(filter)?;
    let mut insns = instructions(&filter.program)?;
    let len = u16::try_from(insns.len())
        .map_err(|_| SeccompError::BadProgram(format!("{} instructions", insns.len())))?;
    let prog = libc::sock_fprog {
        len,
        filter: insns.as_mut_ptr(),
    };
    let ret = install(&prog, flags, filter.notify)?;
    if !filter.notify {
        return Ok(None);
    }
    let fd = RawFd::try_from(ret)
        .map_err(|_| SeccompError::BadProgram(format!("seccomp(2) returned {ret} as listener")))?;
    Ok(Some(take_listener(fd)))
}

/// The seccomp(2) flags for `filter`: a listener is asked for exactly when it has NOTIFY rules,
/// so that no listener fd is made that nobody takes.
fn load_flags(filter: &Filter) -> Result<u32> {
    let new_listener = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;
    match (filter.notify, filter.flags & new_listener != 0) {
        (true, _) => Ok(listener_flags(filter.flags)),
        (false, true) => Err(SeccompError::BadProgram(
            "SECCOMP_FILTER_FLAG_NEW_LISTENER on a filter without SCMP_ACT_NOTIFY".into(),
        )),
        (false, false) => Ok(filter.flags),
    }
}

/// `flags` plus NEW_LISTENER, and TSYNC_ESRCH with TSYNC: seccomp(2) returns the listener fd,
/// so the kernel refuses TSYNC's "thread id of the failure" unless told to fail with ESRCH
/// instead (libseccomp does the same).
fn listener_flags(flags: u32) -> u32 {
    let mut flags = flags | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;
    if flags & libc::SECCOMP_FILTER_FLAG_TSYNC as u32 != 0 {
        flags |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH as u32;
    }
    flags
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
    let notify = rules.iter().any(|rule| rule.action == ScmpAction::Notify);
    Ok(Filter {
        program,
        flags: filter_flags(seccomp, notify)?,
        notify,
    })
}

/// runc's rules for SCMP_ACT_NOTIFY, and the spec's for the listener fields: not the default
/// action nor on a syscall init needs to hand the listener over ([`NOT_NOTIFIABLE`]), only with
/// a `listenerPath` to send it to, and no `listenerMetadata` without one.
fn check_notify(seccomp: &LinuxSeccomp) -> Result<()> {
    let path = seccomp
        .listener_path()
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty());
    if seccomp.listener_metadata().is_some() && path.is_none() {
        return Err(SeccompError::Invalid(
            "listenerMetadata is set but listenerPath is not".into(),
        ));
    }
    if seccomp.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::Invalid(
            "SCMP_ACT_NOTIFY cannot be used as default action: init's own syscalls, which hand \
             the listener to the runtime, would wait for an agent that does not have it yet"
                .into(),
        ));
    }
    let notified: Vec<_> = seccomp
        .syscalls()
        .iter()
        .flatten()
        .filter(|syscall| syscall.action() == LinuxSeccompAction::ScmpActNotify)
        .collect();
    let mut names = notified.iter().flat_map(|syscall| syscall.names());
    if let Some(name) = names.find(|name| NOT_NOTIFIABLE.contains(&name.as_str())) {
        return Err(SeccompError::Invalid(format!(
            "SCMP_ACT_NOTIFY cannot be used for the {name} syscall: init uses it to hand the \
             listener to the runtime, before the agent can answer"
        )));
    }
    if !notified.is_empty() && path.is_none() {
        return Err(SeccompError::Invalid(
            "SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath, the socket of the agent that \
             answers the notifications"
                .into(),
        ));
    }
    Ok(())
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
        A::ScmpActNotify => ScmpAction::Notify,
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

/// The seccomp(2) flags of the profile, with those of a listener when it has NOTIFY rules.
fn filter_flags(seccomp: &LinuxSeccomp, notify: bool) -> Result<u32> {
    let bits = spec_flags(seccomp)?;
    if !notify {
        // Killable waits only concern a listener; libseccomp drops the flag without one too.
        return Ok(bits & !(libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV as u32));
    }
    let bits = listener_flags(bits);
    match kernel_flag(bits) {
        Some(false) => Err(SeccompError::Unsupported {
            what: format!("SCMP_ACT_NOTIFY with seccomp flags {bits:#x}"),
            reason: "the kernel refuses this combination (user notification needs Linux 5.0, \
                     with TSYNC 5.7)"
                .into(),
        }),
        _ => Ok(bits),
    }
}

/// The flags the profile names.
fn spec_flags(seccomp: &LinuxSeccomp) -> Result<u32> {
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
    let (bit, probe) = match flag {
        F::SeccompFilterFlagTsync => (libc::SECCOMP_FILTER_FLAG_TSYNC, 0),
        F::SeccompFilterFlagLog => (libc::SECCOMP_FILTER_FLAG_LOG, 0),
        F::SeccompFilterFlagSpecAllow => (libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW, 0),
        // The kernel refuses it without a listener, so it is probed with one.
        F::SeccompFilterFlagWaitKillableRecv => (
            libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
        ),
    };
    match kernel_flag((bit | probe) as u32) {
        Some(false) => Err(SeccompError::Unsupported {
            what: format!("seccomp flag {flag}"),
            reason: "the kernel does not know it".into(),
        }),
        _ => Ok(bit as u32),
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
    if program.is_empty() || !program.len().is_multiple_of(INSN_SIZE) {
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

/// seccomp(SECCOMP_SET_MODE_FILTER, flags, prog): its return value, the listener fd when
/// `listener` (NEW_LISTENER is among the flags).
#[allow(unsafe_code)]
fn install(prog: &libc::sock_fprog, flags: u32, listener: bool) -> Result<libc::c_long> {
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
        -1 => Err(load_error(Errno::last())),
        fd if listener => Ok(fd),
        0 => Ok(0),
        tid => Err(SeccompError::Tsync(tid)),
    }
}

/// Takes ownership of the listener fd seccomp(2) just returned.
#[allow(unsafe_code)]
fn take_listener(fd: RawFd) -> OwnedFd {
    // SAFETY: the kernel has just opened `fd` for this call (close-on-exec); nothing else in the
    // process knows it, so this is its only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
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
        Errno::EBUSY => "a seccomp filter already on this process has a listener (only one may)",
        Errno::ESRCH => "another thread of the process could not be synchronized (TSYNC)",
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
