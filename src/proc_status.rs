//! The resident memory of a process as Linux reports it in `/proc/PID/status`, for the
//! operator's metrics and the benchmarks' bytes per agent.

/// Bytes of the `VmRSS:` line of a `/proc/PID/status` text (the kernel writes it in kB);
/// `None` when the line is missing or not in kB.
pub fn resident_bytes_in(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => value.checked_mul(1024),
        _ => None,
    }
}

/// Resident bytes of this process; `None` without /proc.
pub fn resident_bytes() -> Option<u64> {
    resident_bytes_in(&std::fs::read_to_string("/proc/self/status").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vmrss_line_is_read_in_bytes_and_anything_else_is_none() {
        let status = "Name:\tmom\nVmPeak:\t  9000 kB\nVmRSS:\t  2048 kB\nThreads:\t4\n";
        assert_eq!(resident_bytes_in(status), Some(2048 * 1024));
        assert_eq!(resident_bytes_in("Name:\tmom\n"), None);
        assert_eq!(resident_bytes_in("VmRSS:\t lots kB\n"), None);
        assert_eq!(resident_bytes_in("VmRSS:\t 2048 MB\n"), None);
    }

    #[test]
    fn this_process_has_some_resident_memory_on_linux() {
        if std::path::Path::new("/proc/self/status").exists() {
            assert!(resident_bytes().is_some_and(|b| b > 0));
        }
    }
}
