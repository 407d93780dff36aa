//! The x86 time-stamp counter (RDTSC), read by the lab's clock.

/// The time-stamp counter; 0 on CPUs other than x86_64. Meaningful as a clock only where the
/// CPU advertises an invariant TSC (`constant_tsc` and `nonstop_tsc` in /proc/cpuinfo).
#[inline(always)]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions; it only reads the time-stamp counter (the
        // intrinsic is a safe fn on newer compilers, hence the allow).
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}
