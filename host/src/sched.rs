//! Scheduling hints for the calling thread: its nice value and the time slice it asks the kernel
//! for. Both are per thread on Linux and need no privilege in the direction used here; elsewhere
//! they report `Unsupported` and the caller carries on without them.

use std::time::Duration;

/// The slice the REST API's threads ask for (`host run --api-slice-us`): the kernel's shortest.
pub const DEFAULT_API_SLICE: Duration = Duration::from_micros(100);

/// Sets the calling thread's nice value (raising it needs no privilege).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn set_thread_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: both calls take and return plain integers and touch no memory of ours.
    let done = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    if done == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Sets the calling thread's nice value (Linux only).
#[cfg(not(target_os = "linux"))]
pub fn set_thread_nice(_nice: i32) -> std::io::Result<()> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "per-thread nice values are Linux only"))
}

/// The calling thread's nice value.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn thread_nice() -> i32 {
    // SAFETY: plain integers in and out. (-1 is also a valid nice value; errors cannot occur for
    // the calling thread.)
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

/// The calling thread's nice value (0 where threads have none of their own).
#[cfg(not(target_os = "linux"))]
pub fn thread_nice() -> i32 {
    0
}

/// `struct sched_attr` of `<linux/sched/types.h>`, its first version (48 bytes), which every
/// kernel with `sched_setattr` accepts.
#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// Asks the kernel to give the calling thread slices of `slice` (clamped by the kernel to 0.1 to
/// 100 ms) under its ordinary policy, at its nice value; `Duration::ZERO` returns it to the
/// default slice.
///
/// Linux's EEVDF scheduler (6.6 and later) orders runnable threads of equal weight by virtual
/// deadline, which is their start plus their slice. A thread that sleeps most of the time and asks
/// for a short slice gets an early deadline when it wakes, so its wake-up preempts a thread in
/// the middle of a longer slice (since 6.12) instead of waiting for that slice to end: the wait
/// that a request to a server whose cores are busy meets. It gets no more CPU than before: its
/// share is set by its weight, and a short slice only means it runs sooner, for less at a time.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn request_slice(slice: Duration) -> std::io::Result<()> {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        nice: thread_nice(),
        runtime: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
        ..SchedAttr::default()
    };
    // SAFETY: `sched_setattr(0, attr, 0)` reads `attr.size` bytes from a live, initialised
    // `#[repr(C)]` struct of that size and changes only the calling thread's scheduling.
    let done = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &raw const attr, 0) };
    if done == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Asks for a slice of `slice` (Linux only).
#[cfg(not(target_os = "linux"))]
pub fn request_slice(_slice: Duration) -> std::io::Result<()> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "per-thread slices are Linux only"))
}

/// The calling thread's slice as the kernel reports it (`sched_getattr`), when it has one.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn thread_slice() -> std::io::Result<Duration> {
    let mut attr = SchedAttr::default();
    let size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `sched_getattr(0, attr, size, 0)` writes at most `size` bytes into `attr`, a live
    // `#[repr(C)]` struct of that size.
    let done = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &raw mut attr, size, 0) };
    if done == 0 { Ok(Duration::from_nanos(attr.runtime)) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::time::Duration;

    use super::{request_slice, set_thread_nice, thread_nice, thread_slice};

    #[test]
    fn a_thread_gets_the_slice_and_nice_value_it_asks_for_and_no_other_thread_does() {
        let nice = thread_nice();
        let wanted = (nice + 5).min(19);
        std::thread::spawn(move || {
            set_thread_nice(wanted).unwrap();
            assert_eq!(thread_nice(), wanted);
            let before = thread_slice().unwrap();
            request_slice(Duration::from_micros(200)).unwrap();
            assert_eq!(thread_slice().unwrap(), Duration::from_micros(200), "was {before:?}");
            assert_eq!(thread_nice(), wanted, "asking for a slice leaves the nice value alone");
        })
        .join()
        .unwrap();
        // Other threads are untouched.
        assert_eq!(thread_nice(), nice);
        assert_ne!(thread_slice().unwrap(), Duration::from_micros(200));
    }

    #[test]
    fn a_slice_below_the_kernels_shortest_is_raised_to_it() {
        std::thread::spawn(|| {
            request_slice(Duration::from_micros(1)).unwrap();
            assert_eq!(thread_slice().unwrap(), Duration::from_micros(100));
        })
        .join()
        .unwrap();
    }
}
