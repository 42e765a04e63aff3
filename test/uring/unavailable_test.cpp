// io_uring refused by the system: the ring reports the cause and the fix,
// and nothing crashes. A seccomp filter in a child process makes the refusal
// real; the sysctl branches are checked through the message builder.
#define BOOST_TEST_MODULE unavailable
#include <boost/test/unit_test.hpp>

#include <zerg/uring/error.hpp>
#include <zerg/uring/probe.hpp>
#include <zerg/uring/ring.hpp>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <string>

namespace uring = zerg::uring;

namespace {

bool contains(const std::string& text, const char* part) { return text.find(part) != std::string::npos; }

// Makes io_uring_setup fail with `err` in this process from now on.
bool refuse_io_uring_setup(int err) {
#if defined(__x86_64__)
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<unsigned>(err) & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog program{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
    return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
#else
    (void)err;
    return false;
#endif
}

// Runs `check` in a child whose io_uring_setup fails with `err`; the child's
// exit status is the number of failed expectations (255: filter not set).
template <class Check>
int in_refusing_child(int err, Check check) {
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
        if (!refuse_io_uring_setup(err)) ::_exit(255);
        int bad = check();
        std::fflush(nullptr);
        ::_exit(bad);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 254;
}

}  // namespace

BOOST_AUTO_TEST_CASE(seccomp_eperm_gives_a_clear_error) {
    int failures = in_refusing_child(EPERM, [] {
        int bad = 0;
        try {
            uring::ring r;
            bad++;  // must not get here
        } catch (const std::system_error& e) {
            std::string what = e.what();
            std::printf("child saw: %s\n", what.c_str());
            bad += e.code().value() != EPERM;
            bad += !contains(what, "io_uring is unavailable");
            // With the sysctl at 0 the message must point at seccomp/LSM.
            if (uring::read_io_uring_disabled_sysctl() <= 0) bad += !contains(what, "seccomp");
        }
        return bad;
    });
    if (failures == 255) {
        std::printf("SKIPPED seccomp_eperm_gives_a_clear_error: cannot install a seccomp filter here\n");
        return;
    }
    BOOST_TEST(failures == 0);
}

BOOST_AUTO_TEST_CASE(seccomp_enosys_gives_a_clear_error_without_throwing) {
    int failures = in_refusing_child(ENOSYS, [] {
        int bad = 0;
        std::error_code ec;
        uring::ring r(uring::ring_options{}, ec);
        bad += ec.value() != ENOSYS;
        bad += r.is_open();
        bad += !contains(r.setup_error(), "CONFIG_IO_URING");
        auto k = uring::probe_kernel();
        bad += k.available;
        bad += k.setup_errno != ENOSYS;
        bad += k.unavailable_reason.empty();
        return bad;
    });
    if (failures == 255) {
        std::printf("SKIPPED seccomp_enosys_gives_a_clear_error_without_throwing: cannot install a seccomp filter here\n");
        return;
    }
    BOOST_TEST(failures == 0);
}

BOOST_AUTO_TEST_CASE(sysctl_causes_are_named) {
    auto two = uring::explain_setup_failure(EPERM, 2);
    BOOST_TEST(contains(two, "kernel.io_uring_disabled is 2"));
    BOOST_TEST(contains(two, "sysctl -w kernel.io_uring_disabled=0"));
    auto one = uring::explain_setup_failure(EPERM, 1);
    BOOST_TEST(contains(one, "kernel.io_uring_group"));
    auto zero = uring::explain_setup_failure(EPERM, 0);
    BOOST_TEST(contains(zero, "seccomp"));
    BOOST_TEST(contains(uring::explain_setup_failure(ENOMEM, 0), "ulimit -l"));
    BOOST_TEST(contains(uring::explain_setup_failure(EMFILE, 0), "ulimit -n"));
}
