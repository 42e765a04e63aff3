// The three io_uring system calls, called directly (io_uring_setup(2),
// io_uring_enter(2), io_uring_register(2)). zerg maps and drives its rings
// itself, so it needs no liburing entry point for them: Debian's liburing
// 2.3 predates NO_SQARRAY (6.6), MIN_TIMEOUT (6.12), registered wait regions
// and ring resizing (6.13), and NAPI registration (6.9).
// Every function returns the kernel's result, or -errno; none touches errno
// on the caller's behalf afterwards. Thread-safety: as the kernel's calls.
#pragma once

#include <zerg/uring/compat.hpp>

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

namespace zerg::uring::sys {

inline int setup(unsigned entries, io_uring_params* params) noexcept {
    long r = ::syscall(__NR_io_uring_setup, entries, params);
    return r < 0 ? -errno : static_cast<int>(r);
}

// `arg`/`argsz` are the EXT_ARG argument (or, with EXT_ARG_REG, the byte
// offset of a registered wait region and its entry size); nullptr/0 else.
inline int enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags, const void* arg,
                 std::size_t argsz) noexcept {
    long r = ::syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, arg, argsz);
    return r < 0 ? -errno : static_cast<int>(r);
}

inline int register_op(int fd, unsigned opcode, const void* arg, unsigned nr_args) noexcept {
    long r = ::syscall(__NR_io_uring_register, fd, opcode, arg, nr_args);
    return r < 0 ? -errno : static_cast<int>(r);
}

// The size of the kernel's sigset, for io_uring_getevents_arg::sigmask_sz.
inline constexpr unsigned kernel_sigset_bytes = _NSIG / 8;

}  // namespace zerg::uring::sys
