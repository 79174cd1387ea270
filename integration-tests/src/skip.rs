//! Skipping tests the machine cannot run, with a message that says why.

/// Whether the tests run as root (uid 0).
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Prints why the running test is skipped (to stderr, which `cargo test` shows with
/// `--nocapture`). The test is named by its thread, as libtest names it; else by `module`.
pub fn skip(module: &str, why: &str) {
    let thread = std::thread::current();
    let test = thread.name().filter(|n| *n != "main").unwrap_or(module);
    eprintln!("SKIPPED {test}: {why}");
}

/// Returns `Ok(())` from the calling test, with a message, unless the tests run as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::skip::is_root() {
            $crate::skip::skip(module_path!(), "needs root (namespaces, cgroups, mounts)");
            return Ok(());
        }
    };
}

/// Returns `Ok(())` from the calling test, with `why`, when `cond` is false.
#[macro_export]
macro_rules! require {
    ($cond:expr, $why:expr) => {
        if !$cond {
            $crate::skip::skip(module_path!(), $why);
            return Ok(());
        }
    };
}

/// Returns `Ok(())` from the calling test, saying why, unless skopeo can push the images the
/// builder makes (the registry tests' one tool beyond the registry itself).
#[macro_export]
macro_rules! require_skopeo {
    () => {
        if let Err(why) = $crate::image_builder::skopeo_available() {
            $crate::skip::skip(module_path!(), &why);
            return Ok(());
        }
    };
}

/// Returns `Ok(())` from the calling test, saying why, unless runc (containerd's runtime for
/// `ctr run`) is installed.
#[macro_export]
macro_rules! require_runc {
    () => {
        $crate::require!(
            $crate::binary::has_runc(),
            "runc is not installed (containerd's runtime for ctr run)"
        )
    };
}
