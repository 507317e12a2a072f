//! The process-wide SIGBUS guard that makes [`ReadMode::Mmap`](super::ReadMode) safe to use.
//!
//! Touching a mapped page past the end of a file that shrank, or one the disk cannot read,
//! raises SIGBUS; by default that kills the process with no word of why. Only the `create` and
//! `verify` commands install this guard (library code never does): it prints one fixed line
//! and exits with status 2, and a command that writes its output after hashing writes nothing.

use std::sync::atomic::{AtomicBool, Ordering};

/// What the guard writes to stderr, byte for byte, before exiting with [`SIGBUS_EXIT_CODE`].
pub const SIGBUS_MESSAGE: &str = "ringseed: a file shrank or could not be read while it was \
being hashed (SIGBUS); nothing was written\n";

/// Exit status of a process stopped by the guard: distinct from 1, which the commands use
/// for errors they report themselves.
pub const SIGBUS_EXIT_CODE: i32 = 2;

/// Set once the handler is in place; [`ReadMode::Mmap`](super::ReadMode) is refused before.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs the guard for the whole process: from now on any SIGBUS prints [`SIGBUS_MESSAGE`]
/// to stderr and exits with [`SIGBUS_EXIT_CODE`], without unwinding, flushing or running
/// destructors. Call it at the start of a command that hashes with [`ReadMode::Mmap`]
/// (`ringseed create`, `ringseed verify`), never in a long-lived process such as the seeder,
/// where one shrinking file must not end the service. Calling it again is harmless.
///
/// [`ReadMode::Mmap`]: super::ReadMode::Mmap
pub fn install_sigbus_guard() -> std::io::Result<()> {
    // SAFETY: `action` is fully initialised (zeroed, then an empty mask and a handler that only
    // calls async-signal-safe functions) before `sigaction` reads it; we pass no old-action
    // pointer.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigbus as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = 0;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    INSTALLED.store(true, Ordering::Release);
    Ok(())
}

/// True once [`install_sigbus_guard`] succeeded in this process.
pub fn sigbus_guard_installed() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

/// The handler: `write` and `_exit` only, both async-signal-safe. No allocation, no locks, no
/// formatting: the faulting thread may hold the allocator's lock.
extern "C" fn on_sigbus(_signal: libc::c_int) {
    // SAFETY: the message is a static buffer valid for its whole length; `write` to fd 2 and
    // `_exit` are on the POSIX list of async-signal-safe functions. A short or failed write
    // is not retried: there is nothing better to do than exit.
    unsafe {
        libc::write(2, SIGBUS_MESSAGE.as_ptr().cast(), SIGBUS_MESSAGE.len());
        libc::_exit(SIGBUS_EXIT_CODE);
    }
}
