//! Process-level system calls used as the cost floor of a user/kernel round trip.

/// getppid(2) made as a raw `syscall(SYS_getppid)`, so that no library cache can answer it:
/// every call enters the kernel and returns. The lab's reference "one system call".
#[inline(always)]
pub fn getppid_raw() -> i32 {
    // SAFETY: getppid takes no arguments, touches no memory of ours and cannot fail.
    unsafe { libc::syscall(libc::SYS_getppid) as i32 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn getppid_matches_std() {
        assert_eq!(
            super::getppid_raw() as u32,
            std::os::unix::process::parent_id()
        );
    }
}
