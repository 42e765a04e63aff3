// Errors from the ring layer travel as std::error_code in the system category
// (the kernel's errno), or as std::system_error carrying the same code and a
// message that names the cause and, where there is one, the fix.
#pragma once

#include <cerrno>
#include <fstream>
#include <string>
#include <system_error>

namespace zerg::uring {

// A CQE result or a liburing return value (-errno on failure) as an error code.
inline std::error_code result_error(int res) noexcept {
    return res < 0 ? std::error_code(-res, std::system_category()) : std::error_code();
}

[[noreturn]] inline void throw_result(int res, const std::string& what) {
    throw std::system_error(std::error_code(res < 0 ? -res : res, std::system_category()), what);
}

// kernel.io_uring_disabled: 0 allowed, 1 only for kernel.io_uring_group
// members (and root), 2 refused for everyone. -1 when the kernel predates the
// sysctl (6.6) or /proc is not mounted.
inline int read_io_uring_disabled_sysctl() {
    std::ifstream in("/proc/sys/kernel/io_uring_disabled");
    int value = -1;
    if (!(in >> value)) return -1;
    return value;
}

// Why io_uring_setup() failed, in words a user can act on. `errno_value` is
// positive; `disabled_sysctl` is read_io_uring_disabled_sysctl() (a parameter
// so tests can walk every branch).
inline std::string explain_setup_failure(int errno_value, int disabled_sysctl) {
    std::string why = "io_uring is unavailable: io_uring_setup failed with " +
                      std::error_code(errno_value, std::system_category()).message() + ". ";
    switch (errno_value) {
        case ENOSYS:
            return why +
                   "The kernel was built without CONFIG_IO_URING, or a seccomp filter (a container "
                   "runtime's default profile) hides the io_uring system calls. Fix: run on Linux "
                   "6.0 or newer (what zerg's reactor needs) with io_uring built in, or allow io_uring_setup, io_uring_enter "
                   "and io_uring_register in the seccomp profile.";
        case EPERM:
            if (disabled_sysctl == 2)
                return why +
                       "The sysctl kernel.io_uring_disabled is 2, which refuses io_uring to every "
                       "process. Fix: sysctl -w kernel.io_uring_disabled=0 (as root).";
            if (disabled_sysctl == 1)
                return why +
                       "The sysctl kernel.io_uring_disabled is 1, which allows io_uring only to "
                       "members of the group in kernel.io_uring_group. Fix: add this user to that "
                       "group, or sysctl -w kernel.io_uring_disabled=0 (as root).";
            return why +
                   "kernel.io_uring_disabled does not forbid it, so a seccomp filter or an LSM "
                   "policy (a container runtime's default profile) most likely refused the call. "
                   "Fix: allow io_uring_setup, io_uring_enter and io_uring_register in that policy.";
        case ENOMEM:
            return why +
                   "Kernels before 5.12 charge rings to RLIMIT_MEMLOCK. Fix: raise the locked-memory "
                   "limit (ulimit -l) or ask for fewer ring entries.";
        case EMFILE:
        case ENFILE:
            return why + "The process or the system is out of file descriptors. Fix: raise ulimit -n.";
        case EINVAL:
            return why +
                   "The kernel rejected every combination of setup flags, even the plainest; it is "
                   "older than 5.1 or the entry count is out of range (1..32768).";
        default:
            return why;
    }
}

}  // namespace zerg::uring
