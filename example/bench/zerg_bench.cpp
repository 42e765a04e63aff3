// zerg-bench: reactor policy combinations side by side with two baselines
// (an edge-triggered epoll loop and a hand-written liburing loop), the same
// echo work, measured in one run; then echo by message size (zerg, its
// variants and the liburing loop), HTTP plaintext (bin/http_plaintext and a
// hand-written liburing HTTP loop) and memory.
//
//   bin/zerg-bench                 the default run (about 3 minutes on 2 cores)
//   bin/zerg-bench --quick         seconds; checks that everything runs and verifies
//   bin/zerg-bench --instructions  adds user-space instructions per message (callgrind,
//                                  lock-step: 64 connections x 16 and 8 x 1)
//   bin/zerg-bench --no-proxy      leaves out echo through bin/proxy and HAProxy (mode tcp);
//                                  --quick --proxy puts it in
//   bin/zerg-bench --help          every option
//   bin/zerg-bench > results.txt   tables to the file, progress on stderr
//
// Each server runs in its own process (this program with --serve NAME),
// pinned to one CPU while the load generator runs on another, so its CPU
// time and system calls can be counted alone.
#include "baseline_epoll.hpp"
#include "baseline_liburing.hpp"
#include "baseline_liburing_http.hpp"
#include "load.hpp"
#include "progress.hpp"
#include "report.hpp"

#include <zerg/zerg.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

struct echo {
    void on_data(zerg::connection<echo>& c, std::span<const std::byte> bytes) { c.write(bytes); }
};

// The same echo without the copy: the received buffer itself is sent
// (connection::write_from) and goes back to the ring when the send is done,
// as the liburing baseline does.
struct echo_from_buffer {
    void on_ring_item(zerg::connection<echo_from_buffer>& c, zerg::ring_item item) {
        c.write_from(item);
        c.release(item);
    }
};

template <class Buffer, class Queue, class Submission>
using zerg_echo = zerg::basic_reactor<Buffer, Queue, Submission, echo>;

struct options {
    unsigned reactors = 1;
    unsigned connections = 64;
    std::size_t size = 64;
    unsigned depth = 16;
    unsigned repetitions = 3;
    std::chrono::milliseconds duration{4000};
    std::chrono::milliseconds warmup{500};
    bool instructions = false;
    bool proxy = true;  // echo through bin/proxy and through HAProxy (--no-proxy; --quick leaves it out)
    bool memory = true;
    bool http = true;
    bool perf = true;
    std::string only;  // comma-separated configuration names
    std::string csv = "bench-results.csv";
    std::string svg = "bench-results.svg";
    unsigned max_connections = 4096;
    unsigned max_wait_ms = 0;  // see server_config::max_wait; set under valgrind
    // The message-size sweep: echo at each size, zerg against the liburing loop.
    std::vector<std::size_t> sizes = {64, 4096, 64 * 1024, 1024 * 1024};
    std::chrono::milliseconds sweep_duration{0};  // 0: --duration, at most 600 ms
    std::chrono::milliseconds sweep_warmup{0};    // 0: --warmup, at most 150 ms
};

// "64,4k,64k,1m" (k and m: KiB, MiB); "none": no sweep.
std::vector<std::size_t> parse_sizes(const std::string& list) {
    std::vector<std::size_t> out;
    if (list == "none") return out;
    std::stringstream in(list);
    std::string item;
    while (std::getline(in, item, ',')) {
        std::size_t end = 0;
        std::size_t v = std::stoul(item, &end);
        std::string unit = item.substr(end);
        if (unit == "k" || unit == "K") v <<= 10;
        else if (unit == "m" || unit == "M") v <<= 20;
        else if (!unit.empty()) throw std::runtime_error("--sizes: cannot read '" + item + "'");
        if (v == 0) throw std::runtime_error("--sizes: a size must be at least 1");
        out.push_back(v);
    }
    return out;
}

// The sweep's load at `size`: 16 connections, 16 messages in flight each,
// fewer for large messages so no more than 1 MiB per connection is in flight
// (a 1 MiB message goes one at a time).
unsigned sweep_depth(std::size_t size) {
    return static_cast<unsigned>(std::clamp<std::size_t>((std::size_t{1} << 20) / std::max<std::size_t>(size, 1), 1, 16));
}
constexpr unsigned sweep_connections = 16;

std::string size_name(std::size_t size) {
    if (size >= (1u << 20) && size % (1u << 20) == 0) return std::to_string(size >> 20) + " MiB";
    if (size >= 1024 && size % 1024 == 0) return std::to_string(size >> 10) + " KiB";
    return std::to_string(size) + " B";
}

// Step, configuration, repetition and time left, on stderr.
bench::progress progress;

std::chrono::milliseconds echo_step(const options& o) { return o.warmup + o.duration + std::chrono::milliseconds(300); }
std::chrono::milliseconds sweep_step(const options& o) {
    return o.sweep_warmup + o.sweep_duration + std::chrono::milliseconds(300);
}
std::chrono::milliseconds http_step(const options& o, bool wrk) {
    return o.warmup + o.duration * (wrk ? 2 : 1) + std::chrono::milliseconds(300);
}
constexpr std::chrono::milliseconds memory_step{2000};
constexpr std::chrono::milliseconds callgrind_step{8000};

bool measured_for_memory(const std::string& name) {
    return name.find("sqpoll") == std::string::npos && name.find("mpmc") == std::string::npos &&
           name.find("msg_ring") == std::string::npos;
}

// ---- server side (--serve) ------------------------------------------------

template <class Server>
int serve(Server& server, const std::string& note) {
    zerg::termination_signals signals;
    server.start();
    std::printf("listening on 127.0.0.1:%u\n%s\n", server.port(), note.c_str());
    std::fflush(stdout);
    signals.wait();
    server.stop();
    return 0;
}

using adjust_config = void (*)(zerg::server_config&);

template <class Reactor>
int serve_zerg(const options& o, adjust_config adjust = nullptr) {
    zerg::server_config config;
    config.address = "127.0.0.1";
    config.reactors = o.reactors;
    config.max_connections = o.max_connections;
    config.max_wait = std::chrono::milliseconds(o.max_wait_ms);
    // Under valgrind (max_wait set): no acceptor thread, whose 1 ms idle
    // wake-ups would be counted as if they were per-message work; each
    // reactor takes connections on its own SO_REUSEPORT listener, like the
    // baselines do.
    if (o.max_wait_ms) config.reuse_port = true;
    if (adjust) adjust(config);
    zerg::server<Reactor> server(config);
    zerg::termination_signals signals;
    server.start();
    std::string note;
    for (auto const& fb : server.fallbacks())
        if (fb.rfind("no_sqarray", 0) != 0) note += (note.empty() ? "" : "; ") + fb;
    std::printf("listening on 127.0.0.1:%u\n%s\n", server.port(), note.c_str());
    std::fflush(stdout);
    signals.wait();
    server.stop();
    return 0;
}

int serve_baseline_epoll(const options& o) {
    baseline::epoll_echo_server server("127.0.0.1", 0, o.reactors);
    return serve(server, "");
}
int serve_baseline_liburing(const options& o) {
    baseline::liburing_echo_server server("127.0.0.1", 0, o.reactors, o.max_wait_ms);
    return serve(server, "");
}

struct configuration {
    std::string name;
    std::function<int(const options&)> serve;
    bool variant = false;  // from variants(): in the size sweep; in the echo table when --only names it
};

// zerg variants: the reference configuration (zerg provided/spsc/plain) with
// one server_config change each, so comparing a data-path feature on and off
// is one line here. They run in the message-size sweep by default and in
// the echo table when --only names them.
struct variant {
    std::string name;
    adjust_config adjust;
};

const std::vector<variant>& variants() {
    static const std::vector<variant> all = {
        {"zerg reuse_port", [](zerg::server_config& c) { c.reuse_port = true; }},
        {"zerg 64 KiB buffers", [](zerg::server_config& c) {
             c.buffer_size = 64 * 1024;
             c.buffer_count = 64;  // the same 4 MiB as 4 KiB x 1024
         }},
        // Bundles are on wherever the kernel has them (6.10); hiding the
        // feature in this server process is how a user turns them off too.
        {"zerg bundles off", [](zerg::server_config&) { zerg::uring::hide(zerg::uring::feature::recv_bundle); }},
        {"zerg zero-copy off", [](zerg::server_config& c) { c.zero_copy_threshold = 0; }},
        {"zerg zero-copy from 4 KiB", [](zerg::server_config& c) { c.zero_copy_threshold = 4096; }},
        // Direct descriptors take a reactor's own listener (reuse_port).
        {"zerg direct descriptors", [](zerg::server_config& c) {
             c.reuse_port = true;
             c.direct_descriptors = true;
         }},
    };
    return all;
}

using reference_reactor = zerg_echo<zerg::provided_buffers<4096, 1024>, zerg::spsc_handoff<>, zerg::plain_submission>;
const std::string reference_name = "zerg provided/spsc/plain";
const std::string liburing_name = "baseline liburing (no zerg)";

const std::vector<configuration>& configurations() {
    using provided = zerg::provided_buffers<4096, 1024>;
    using incremental = zerg::incremental_buffers<16384, 256>;
    static const std::vector<configuration> all = [] {
        std::vector<configuration> v = {
            {reference_name, [](const options& o) { return serve_zerg<reference_reactor>(o); }},
            {"zerg provided/spsc/plain write_from",
             [](const options& o) {
                 return serve_zerg<zerg::basic_reactor<provided, zerg::spsc_handoff<>, zerg::plain_submission, echo_from_buffer>>(o);
             }},
            {"zerg incremental/spsc/plain",
             [](const options& o) { return serve_zerg<zerg_echo<incremental, zerg::spsc_handoff<>, zerg::plain_submission>>(o); }},
            {"zerg provided/mpmc/plain",
             [](const options& o) { return serve_zerg<zerg_echo<provided, zerg::mpmc_handoff<>, zerg::plain_submission>>(o); }},
            {"zerg provided/msg_ring/plain",
             [](const options& o) { return serve_zerg<zerg_echo<provided, zerg::msg_ring_handoff, zerg::plain_submission>>(o); }},
            {"zerg provided/spsc/sqpoll",
             [](const options& o) {
                 return serve_zerg<zerg_echo<provided, zerg::spsc_handoff<>, zerg::sqpoll_submission<-1, 100>>>(o);
             }},
            {liburing_name, &serve_baseline_liburing},
            {"baseline epoll (edge-triggered)", &serve_baseline_epoll},
        };
        for (auto const& var : variants()) {
            adjust_config adjust = var.adjust;
            v.push_back({var.name, [adjust](const options& o) { return serve_zerg<reference_reactor>(o, adjust); }, true});
        }
        return v;
    }();
    return all;
}

bool named_in(const std::string& list, const std::string& name) {
    return ("," + list + ",").find("," + name + ",") != std::string::npos;
}

// ---- client side -----------------------------------------------------------

void pin_to_cpu(unsigned cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

unsigned cpu_count() { return static_cast<unsigned>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN))); }

void raise_fd_limit() {
    rlimit r{};
    ::getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = r.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &r);
}

std::string self_path() {
    char buf[4096];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "zerg-bench";
}

bool have_program(const char* name) {
    std::string cmd = std::string("command -v ") + name + " >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0;
}

// A child process running `argv`, with its stdout readable line by line.
class child {
public:
    explicit child(std::vector<std::string> argv, bool quiet_stderr = false, int cpu = -1) {
        int out[2];
        if (::pipe(out) != 0) throw std::runtime_error("pipe");
        pid_ = ::fork();
        if (pid_ == 0) {
            if (cpu >= 0) pin_to_cpu(static_cast<unsigned>(cpu));
            ::dup2(out[1], 1);
            if (quiet_stderr) {
                int null = ::open("/dev/null", O_WRONLY);
                ::dup2(null, 2);
            }
            ::close(out[0]);
            ::close(out[1]);
            std::vector<char*> args;
            for (auto& a : argv) args.push_back(a.data());
            args.push_back(nullptr);
            ::execvp(args[0], args.data());
            ::_exit(127);
        }
        ::close(out[1]);
        out_ = out[0];
    }
    child(const child&) = delete;
    child& operator=(const child&) = delete;
    ~child() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        ::close(out_);
    }
    pid_t pid() const { return pid_; }

    std::string line(std::chrono::milliseconds timeout) {
        std::string s;
        auto deadline = std::chrono::steady_clock::now() + timeout;
        char c;
        while (std::chrono::steady_clock::now() < deadline) {
            pollfd p{out_, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            if (::read(out_, &c, 1) != 1) break;
            if (c == '\n') return s;
            s += c;
        }
        return s;
    }
    // Sends `sig` and waits; true when it exited in time.
    bool stop(int sig, std::chrono::milliseconds timeout, const std::function<void()>& nudge = {}) {
        ::kill(pid_, sig);
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
                pid_ = -1;
                return true;
            }
            if (nudge) nudge();
            ::poll(nullptr, 0, 20);
        }
        return false;
    }

private:
    pid_t pid_ = -1;
    int out_ = -1;
};

// Nanoseconds the process has run on a CPU, all threads (schedstat).
std::uint64_t cpu_ns(pid_t pid) {
    std::uint64_t total = 0;
    std::string dir = "/proc/" + std::to_string(pid) + "/task";
    if (DIR* d = ::opendir(dir.c_str())) {
        while (dirent* e = ::readdir(d)) {
            if (e->d_name[0] == '.') continue;
            std::ifstream in(dir + "/" + e->d_name + "/schedstat");
            std::uint64_t ns = 0;
            if (in >> ns) total += ns;
        }
        ::closedir(d);
    }
    return total;
}

std::uint64_t rss_kib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string key;
    while (in >> key) {
        if (key == "VmRSS:") {
            std::uint64_t v = 0;
            in >> v;
            return v;
        }
        std::getline(in, key);
    }
    return 0;
}

struct server_process {
    std::unique_ptr<child> proc;
    std::uint16_t port = 0;
    std::string note;
};

server_process launch(const std::string& name, const options& o, unsigned server_cpu, const std::vector<std::string>& wrapper = {},
                      std::chrono::milliseconds timeout = std::chrono::seconds(15)) {
    std::vector<std::string> argv = wrapper;
    argv.insert(argv.end(), {self_path(), "--serve", name, "--reactors", std::to_string(o.reactors), "--cpu",
                             std::to_string(server_cpu), "--max-connections", std::to_string(o.max_connections)});
    // valgrind holds its lock across io_uring_enter: cap each sleep so the
    // server's other threads get to run (see server_config::max_wait).
    if (!wrapper.empty()) argv.insert(argv.end(), {"--max-wait-ms", "1"});
    server_process s;
    s.proc = std::make_unique<child>(argv, !wrapper.empty());
    std::string first = s.proc->line(timeout);
    auto colon = first.rfind(':');
    if (first.rfind("listening on ", 0) != 0 || colon == std::string::npos)
        throw std::runtime_error(name + ": server did not start (said '" + first + "')");
    s.port = static_cast<std::uint16_t>(std::stoi(first.substr(colon + 1)));
    s.note = s.proc->line(std::chrono::seconds(2));
    return s;
}

// perf stat on the server process, counting system call entries.
class syscall_counter {
public:
    syscall_counter(pid_t pid, bool enabled) {
        if (!enabled) return;
        file_ = "/tmp/zerg-bench-perf." + std::to_string(::getpid()) + "." + std::to_string(pid);
        perf_ = std::make_unique<child>(std::vector<std::string>{"perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter",
                                                                 "-p", std::to_string(pid), "-o", file_},
                                        true);
        ::poll(nullptr, 0, 150);  // perf attaches asynchronously
    }
    std::optional<std::uint64_t> finish() {
        if (!perf_) return std::nullopt;
        perf_->stop(SIGINT, std::chrono::seconds(5));
        perf_.reset();
        std::ifstream in(file_);
        std::string line;
        std::optional<std::uint64_t> count;
        while (std::getline(in, line))
            if (line.find("raw_syscalls:sys_enter") != std::string::npos && !line.empty() && std::isdigit(line[0]))
                count = std::stoull(line.substr(0, line.find(',')));
        std::remove(file_.c_str());
        return count;
    }

private:
    std::unique_ptr<child> perf_;
    std::string file_;
};

struct measurement {
    bench::load_result load;
    double cpu_us_per_msg = 0;
    std::optional<double> syscalls_per_msg;
    std::string note;
};

measurement measure(const std::string& name, const options& o, unsigned server_cpu) {
    measurement m;
    auto server = launch(name, o, server_cpu);
    m.note = server.note;
    bench::load_plan plan{server.port, o.connections, o.size, o.depth, o.warmup, 0};
    if (o.warmup.count() > 0) bench::run_load(plan);
    plan.duration = o.duration;
    syscall_counter syscalls(server.proc->pid(), o.perf);
    std::uint64_t cpu_before = cpu_ns(server.proc->pid());
    m.load = bench::run_load(plan);
    std::uint64_t cpu_after = cpu_ns(server.proc->pid());
    auto calls = syscalls.finish();
    if (m.load.messages) {
        m.cpu_us_per_msg = static_cast<double>(cpu_after - cpu_before) / 1000.0 / static_cast<double>(m.load.messages);
        if (calls) m.syscalls_per_msg = static_cast<double>(*calls) / static_cast<double>(m.load.messages);
    }
    if (!server.proc->stop(SIGTERM, std::chrono::seconds(10))) m.note += " (did not stop on SIGTERM)";
    return m;
}

// The two shapes --instructions counts at: many connections with deep
// pipelines, where per-iteration costs spread over many completions, and a
// few connections with one message each, where they show.
struct instruction_shape {
    unsigned connections, depth;
    std::uint64_t few, many;  // messages per connection in the two runs subtracted
};
constexpr instruction_shape instruction_shapes[] = {{64, 16, 32, 160}, {8, 1, 250, 1250}};

// callgrind_control on the server: "-z" zeroes its counters, "-d" dumps
// them to the next numbered file; each waits for valgrind's answer.
bool callgrind_control(const char* command, pid_t pid) {
    std::string cmd = std::string("callgrind_control ") + command + " " + std::to_string(pid) + " >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0;
}

// Instructions callgrind counted in a lock-step run: each connection sends
// exactly `per_connection` messages, one batch of `depth` at a time. Only
// the load counts: the counters are zeroed once the connections are open
// and dumped when the last echo is back, so start-up, shutdown and the idle
// wake-ups around them (1 ms each under valgrind) stay out.
std::optional<std::uint64_t> callgrind_total(const std::string& name, const options& o, const instruction_shape& shape,
                                             std::uint64_t per_connection) {
    std::string out = "/tmp/zerg-bench-callgrind." + std::to_string(::getpid()) + ".out";
    std::remove(out.c_str());
    std::remove((out + ".1").c_str());
    auto server = launch(name, o, 0, {"valgrind", "--tool=callgrind", "--callgrind-out-file=" + out}, std::chrono::seconds(120));
    bench::load_plan plan{server.port, shape.connections, o.size, shape.depth, std::chrono::milliseconds(0), 0};
    plan.lock_step = true;
    plan.per_connection = per_connection;
    bool zeroed = false;
    plan.on_connected = [&] { zeroed = callgrind_control("-z", server.proc->pid()); };
    auto r = bench::run_load(plan);
    bool dumped = zeroed && callgrind_control("-d", server.proc->pid());
    // valgrind delivers SIGTERM only when the server wakes; a connection wakes it.
    server.proc->stop(SIGTERM, std::chrono::seconds(60), [&] {
        try {
            ::close(bench::connect_to(server.port));
        } catch (...) {
        }
    });
    std::optional<std::uint64_t> total;
    if (dumped && r.failure.empty() && !r.errors && r.messages == per_connection * shape.connections) {
        std::ifstream in(out + ".1");
        std::string line;
        while (std::getline(in, line))
            if (line.rfind("summary:", 0) == 0 || line.rfind("totals:", 0) == 0)
                total = std::stoull(line.substr(line.find(':') + 1));
    }
    // ZERG_BENCH_KEEP_CALLGRIND=DIR keeps each dump there, for callgrind_annotate.
    if (const char* keep = std::getenv("ZERG_BENCH_KEEP_CALLGRIND"); keep && *keep) {
        std::string label = name;
        for (char& ch : label)
            if (ch == ' ' || ch == '/' || ch == '(' || ch == ')') ch = '_';
        std::string kept = std::string(keep) + "/" + label + "." + std::to_string(shape.connections) + "x" +
                           std::to_string(shape.depth) + "-" + std::to_string(per_connection) + ".out";
        std::rename((out + ".1").c_str(), kept.c_str());
    }
    std::remove(out.c_str());
    std::remove((out + ".1").c_str());
    return total;
}

// RSS growth per idle connection, and the idle server's resident size.
void measure_memory(const options& o, unsigned server_cpu) {
    const unsigned idle = 10000;
    std::printf("\nmemory (%u idle connections, %u reactor(s)):\n", idle, o.reactors);
    std::printf("%-34s %14s %14s %18s\n", "configuration", "idle RSS KiB", "loaded RSS KiB", "bytes/connection");
    options mo = o;
    mo.max_connections = idle + 1000;
    for (auto const& c : configurations()) {
        if (c.variant || !measured_for_memory(c.name)) continue;
        progress.begin("memory: " + c.name + ", " + std::to_string(idle) + " idle connections", memory_step);
        try {
            auto server = launch(c.name, mo, server_cpu);
            std::uint64_t before = rss_kib(server.proc->pid());
            std::vector<int> fds;
            fds.reserve(idle);
            for (unsigned i = 0; i < idle; ++i) {
                int fd = bench::connect_to(server.port);
                char b = 'x';
                // One round trip, so the server has really taken the connection.
                if (::send(fd, &b, 1, MSG_NOSIGNAL) != 1 || ::recv(fd, &b, 1, 0) != 1) throw std::runtime_error("echo failed");
                fds.push_back(fd);
            }
            std::uint64_t after = rss_kib(server.proc->pid());
            for (int fd : fds) ::close(fd);
            std::printf("%-34s %14llu %14llu %18.0f\n", c.name.c_str(), static_cast<unsigned long long>(before),
                        static_cast<unsigned long long>(after), (after > before ? (after - before) * 1024.0 : 0.0) / idle);
            server.proc->stop(SIGTERM, std::chrono::seconds(10));
        } catch (const std::exception& e) {
            std::printf("%-34s failed: %s\n", c.name.c_str(), e.what());
        }
        progress.end();
    }
    // What one more reactor costs with default settings: the same server
    // with one and with two reactors, idle.
    progress.begin("memory: one reactor against two", memory_step);
    try {
        options one = o, two = o;
        one.reactors = 1;
        two.reactors = 2;
        const std::string name = configurations().front().name;
        auto a = launch(name, one, server_cpu);
        std::uint64_t rss1 = rss_kib(a.proc->pid());
        a.proc->stop(SIGTERM, std::chrono::seconds(10));
        auto b = launch(name, two, server_cpu);
        std::uint64_t rss2 = rss_kib(b.proc->pid());
        b.proc->stop(SIGTERM, std::chrono::seconds(10));
        std::printf("%s, default settings: %llu KiB resident with 1 reactor, %llu KiB with 2: %lld KiB per reactor\n",
                    name.c_str(), static_cast<unsigned long long>(rss1), static_cast<unsigned long long>(rss2),
                    static_cast<long long>(rss2) - static_cast<long long>(rss1));
    } catch (const std::exception& e) {
        std::printf("per-reactor size: failed: %s\n", e.what());
    }
    progress.end();
}

// HTTP: bin/http_plaintext (beside this program) and the hand-written
// liburing HTTP loop side by side, interleaved, under the project's own
// client, which checks every response; server CPU per request from
// schedstat, as for echo. Then wrk with a 16-deep pipeline against each,
// once, when wrk is installed.
const std::string http_baseline_name = "baseline liburing http (no zerg)";

int serve_baseline_http(const options& o) {
    baseline::liburing_http_server server("127.0.0.1", 0, o.reactors, o.max_wait_ms);
    return serve(server, "");
}

std::string http_plaintext_path() {
    std::string self = self_path();
    return self.substr(0, self.rfind('/') + 1) + "http_plaintext";
}

// Starts one of the two HTTP servers pinned to `cpu`; port 0 when it failed.
std::uint16_t start_http(std::unique_ptr<child>& server, bool zerg, const options& o, unsigned cpu) {
    if (zerg)
        server = std::make_unique<child>(std::vector<std::string>{http_plaintext_path(), "--address", "127.0.0.1", "--port", "0",
                                                                  "--reactors", std::to_string(o.reactors)},
                                         false, static_cast<int>(cpu));
    else
        server = std::make_unique<child>(std::vector<std::string>{self_path(), "--serve", http_baseline_name, "--reactors",
                                                                  std::to_string(o.reactors), "--cpu", std::to_string(cpu)});
    std::string first = server->line(std::chrono::seconds(10));
    auto colon = first.rfind(':');
    if (first.rfind("listening on ", 0) != 0 || colon == std::string::npos) {
        std::printf("  %s did not start: '%s'\n", zerg ? "http_plaintext" : http_baseline_name.c_str(), first.c_str());
        return 0;
    }
    return static_cast<std::uint16_t>(std::stoi(first.substr(colon + 1)));
}

void run_wrk(const options& o, std::uint16_t port, const std::string& label) {
    std::string script = "/tmp/zerg-bench-pipeline." + std::to_string(::getpid()) + ".lua";
    if (FILE* f = std::fopen(script.c_str(), "w")) {
        std::fprintf(f, "init = function(args)\n  local r = {}\n  for i = 1, 16 do r[i] = wrk.format(nil, \"/plaintext\") end\n"
                        "  req = table.concat(r)\nend\nrequest = function() return req end\n");
        std::fclose(f);
    }
    std::string cmd = "taskset -c " + std::to_string(cpu_count() > 1 ? cpu_count() - 1 : 0) + " wrk -t1 -c" +
                      std::to_string(o.connections) + " -d" + std::to_string(std::max<long long>(1, o.duration.count() / 1000)) +
                      "s -s " + script + " http://127.0.0.1:" + std::to_string(port) + "/plaintext 2>&1";
    std::string out;
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
        char buf[512];
        while (std::fgets(buf, sizeof buf, p)) out += buf;
        ::pclose(p);
    }
    auto at = out.find("Requests/sec:");
    bool bad = out.find("Non-2xx") != std::string::npos || out.find("Socket errors") != std::string::npos;
    if (at != std::string::npos)
        std::printf("  wrk -c%u, 16-deep pipeline, %-34s %12.0f req/s%s\n", o.connections, label.c_str(),
                    std::stod(out.substr(at + 13)), bad ? "  (wrk reported errors)" : "");
    std::remove(script.c_str());
}

bool measure_http(const options& o, unsigned server_cpu) {
    bool have_zerg = ::access(http_plaintext_path().c_str(), X_OK) == 0;
    if (!have_zerg) std::printf("\nhttp: zerg n/a (%s not built)\n", http_plaintext_path().c_str());
    std::printf("\nhttp: GET /plaintext, %u connections x %u pipelined, %u reactor(s) / thread(s)\n", o.connections, o.depth,
                o.reactors);
    bool ok = true;
    const bool wrk = have_program("wrk");
    std::vector<bench::row> rows(2);
    rows[0].name = "zerg bin/http_plaintext";
    rows[1].name = http_baseline_name;
    std::vector<std::vector<double>> cpu(2), sys(2), p50(2), p99(2);
    for (unsigned rep = 0; rep < o.repetitions; ++rep) {
        for (unsigned i = 0; i < 2; ++i) {
            bool zerg = i == 0;
            if (zerg && !have_zerg) continue;
            progress.begin("http: " + rows[i].name + ", repetition " + std::to_string(rep + 1) + "/" + std::to_string(o.repetitions),
                           http_step(o, wrk && rep == 0));
            std::unique_ptr<child> server;
            std::uint16_t port = start_http(server, zerg, o, server_cpu);
            if (!port) {
                ok = false;
                progress.end();
                continue;
            }
            bench::load_plan plan{port, o.connections, 0, o.depth, o.warmup, 0, bench::protocol::http};
            if (o.warmup.count() > 0) bench::run_load(plan);
            plan.duration = o.duration;
            syscall_counter syscalls(server->pid(), o.perf);
            std::uint64_t cpu_before = cpu_ns(server->pid());
            auto r = bench::run_load(plan);
            std::uint64_t cpu_after = cpu_ns(server->pid());
            auto calls = syscalls.finish();
            rows[i].errors += r.errors;
            progress.end();
            if (!r.failure.empty() || r.errors || !r.messages) {
                std::printf("  [%u/%u] %-34s own client FAILED: %s (%llu bad responses)\n", rep + 1, o.repetitions,
                            rows[i].name.c_str(), r.failure.c_str(), static_cast<unsigned long long>(r.errors));
                ok = false;
            } else {
                rows[i].rates.push_back(r.rate());
                double per = static_cast<double>(cpu_after - cpu_before) / 1000.0 / static_cast<double>(r.messages);
                cpu[i].push_back(per);
                p50[i].push_back(r.p50_us);
                p99[i].push_back(r.p99_us);
                if (calls) sys[i].push_back(static_cast<double>(*calls) / static_cast<double>(r.messages));
                progress.note("  [%u/%u] %-34s %12.0f req/s  %.2f us CPU/req  verified\n", rep + 1, o.repetitions,
                              rows[i].name.c_str(), r.rate(), per);
            }
            if (wrk && rep == 0) run_wrk(o, port, rows[i].name);
            server->stop(SIGTERM, std::chrono::seconds(10));
        }
    }
    if (!wrk) std::printf("  wrk: n/a (not installed)\n");
    auto median = [](std::vector<double> v) -> std::optional<double> {
        if (v.empty()) return std::nullopt;
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    std::printf("%-34s %-24s %8s %8s %10s %10s %8s\n", "server", "req/s median (min-max)", "p50 us", "p99 us", "cpu us/req",
                "sys/req", "cpu vs uring");
    auto base_cpu = median(cpu[1]);
    for (unsigned i = 0; i < 2; ++i) {
        auto& r = rows[i];
        if (r.rates.empty()) continue;
        auto c = median(cpu[i]);
        std::string rate = bench::fmt("%.0f", r.median()) + " (" + bench::fmt("%.0f", r.min()) + "-" + bench::fmt("%.0f", r.max()) + ")";
        std::printf("%-34s %-24s %8.0f %8.0f %10s %10s %8s\n", r.name.c_str(), rate.c_str(), median(p50[i]).value_or(0),
                    median(p99[i]).value_or(0), bench::opt(c, "%.2f").c_str(), bench::opt(median(sys[i]), "%.3f").c_str(),
                    c && base_cpu && *base_cpu > 0 ? bench::fmt("%.2f", *c / *base_cpu).c_str() : "n/a");
    }
    return ok;
}

// Echo at each message size: msgs/s and server CPU per message, every
// configuration against the hand-written liburing loop, interleaved.
bool measure_sweep(const options& o, unsigned server_cpu, const std::vector<configuration>& swept) {
    std::printf("\necho by message size: %u connections, 16 in flight each (1 MiB in flight at most), %lld ms after %lld ms "
                "warm-up, interleaved\n",
                sweep_connections, static_cast<long long>(o.sweep_duration.count()), static_cast<long long>(o.sweep_warmup.count()));
    std::printf("%-9s %-34s %6s %12s %10s %11s %10s %10s\n", "size", "configuration", "depth", "msgs/s", "MB/s", "cpu us/msg",
                "vs uring", "cpu vs uring");
    bool ok = true;
    for (std::size_t size : o.sizes) {
        options so = o;
        so.size = size;
        so.connections = sweep_connections;
        so.depth = sweep_depth(size);
        so.duration = o.sweep_duration;
        so.warmup = o.sweep_warmup;
        so.perf = false;
        std::vector<measurement> results(swept.size());
        for (std::size_t i = 0; i < swept.size(); ++i) {
            progress.begin("sweep: " + swept[i].name + ", " + size_name(size), sweep_step(o));
            try {
                results[i] = measure(swept[i].name, so, server_cpu);
            } catch (const std::exception& e) {
                results[i].load.failure = e.what();
            }
            progress.end();
        }
        const measurement* base = nullptr;
        for (std::size_t i = 0; i < swept.size(); ++i)
            if (swept[i].name == liburing_name && results[i].load.messages && results[i].load.failure.empty()) base = &results[i];
        for (std::size_t i = 0; i < swept.size(); ++i) {
            auto const& m = results[i];
            bool bad = !m.load.failure.empty() || m.load.errors || !m.load.messages;
            if (bad) {
                ok = false;
                std::printf("%-9s %-34s FAILED: %s (%llu errors)\n", size_name(size).c_str(), swept[i].name.c_str(),
                            m.load.failure.c_str(), static_cast<unsigned long long>(m.load.errors));
                continue;
            }
            std::printf("%-9s %-34s %6u %12.0f %10.1f %11.2f %10s %10s\n", size_name(size).c_str(), swept[i].name.c_str(), so.depth,
                        m.load.rate(), m.load.rate() * static_cast<double>(size) / 1e6, m.cpu_us_per_msg,
                        base ? bench::fmt("%.2f", m.load.rate() / base->load.rate()).c_str() : "n/a",
                        base && base->cpu_us_per_msg > 0 ? bench::fmt("%.2f", m.cpu_us_per_msg / base->cpu_us_per_msg).c_str()
                                                         : "n/a");
        }
    }
    return ok;
}

// ---- proxy (--proxy) --------------------------------------------------------
//
// Echo through a TCP proxy: the load generator connects to the proxy, which
// relays to the liburing echo baseline. bin/proxy (beside this program)
// against HAProxy in `mode tcp`, the proxy pinned to the server CPU, the
// upstream echo server with the load generator on the other, so the proxy's
// own CPU per message is what differs.

// A port on 127.0.0.1 that was free a moment ago, for programs that must be
// told their port. Another process could take it first: then the proxy
// fails to start, which is reported.
std::uint16_t free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof a;
    std::uint16_t port = 0;
    if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) ::close(fd);
    return port;
}

// True once something accepts on 127.0.0.1:port (bounded).
bool accepts_on(std::uint16_t port, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        try {
            ::close(bench::connect_to(port));
            return true;
        } catch (...) {
            ::poll(nullptr, 0, 20);
        }
    }
    return false;
}

std::string first_line_of(const std::string& command) {
    std::string out;
    if (FILE* p = ::popen((command + " 2>&1").c_str(), "r")) {
        char buf[256];
        if (std::fgets(buf, sizeof buf, p)) out = buf;
        ::pclose(p);
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
}

bool measure_proxy(const options& o, unsigned server_cpu, unsigned client_cpu) {
    std::string self = self_path();
    const std::string zerg_proxy = self.substr(0, self.rfind('/') + 1) + "proxy";
    const bool have_zerg = ::access(zerg_proxy.c_str(), X_OK) == 0;
    const bool have_haproxy = have_program("haproxy");
    std::printf("\nproxy: echo through a proxy to %s, %u connections x %u in flight, %zu B messages; proxy on CPU %u, "
                "upstream and load generator on CPU %u\n",
                liburing_name.c_str(), o.connections, o.depth, o.size, server_cpu, client_cpu);
    if (!have_zerg) std::printf("  zerg bin/proxy: skipped: bin/proxy not built (%s)\n", zerg_proxy.c_str());
    if (!have_haproxy) std::printf("  haproxy: skipped: haproxy not installed (apt-get install haproxy)\n");
    if (!have_zerg && !have_haproxy) return true;

    // The HAProxy configuration, in a directory of its own.
    char dir_template[] = "/tmp/zerg-bench-haproxy.XXXXXX";
    const char* dir = have_haproxy ? ::mkdtemp(dir_template) : nullptr;
    if (have_haproxy && !dir) {
        std::printf("  haproxy: FAILED: no temporary directory\n");
        return false;
    }
    const std::string cfg = dir ? std::string(dir) + "/haproxy.cfg" : "";
    const std::string haproxy_version = have_haproxy ? first_line_of("haproxy -v") : "";

    struct proxy_kind {
        std::string name;
        bool zerg;
    };
    std::vector<proxy_kind> kinds;
    if (have_zerg) kinds.push_back({"zerg bin/proxy", true});
    if (have_haproxy) kinds.push_back({"haproxy mode tcp, 1 thread", false});
    std::vector<bench::row> rows(kinds.size());
    std::vector<std::vector<double>> cpu(kinds.size()), sys(kinds.size()), p50(kinds.size()), p99(kinds.size());
    bool ok = true;

    // The upstream: the liburing echo loop, beside the load generator.
    server_process upstream;
    try {
        upstream = launch(liburing_name, o, client_cpu);
    } catch (const std::exception& e) {
        std::printf("  upstream FAILED: %s\n", e.what());
        if (dir) ::rmdir(dir);
        return false;
    }
    for (unsigned rep = 0; rep < o.repetitions; ++rep) {
        for (std::size_t i = 0; i < kinds.size(); ++i) {
            rows[i].name = kinds[i].name;
            progress.begin("proxy: " + kinds[i].name + ", repetition " + std::to_string(rep + 1) + "/" +
                               std::to_string(o.repetitions),
                           echo_step(o));
            std::uint16_t port = free_port();
            std::vector<std::string> argv;
            if (kinds[i].zerg) {
                argv = {zerg_proxy, "--listen", "127.0.0.1:" + std::to_string(port), "--upstream",
                        "127.0.0.1:" + std::to_string(upstream.port)};
            } else {
                if (FILE* f = std::fopen(cfg.c_str(), "w")) {
                    std::fprintf(f,
                                 "global\n    nbthread 1\n    maxconn %u\n"
                                 "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n"
                                 "    timeout server 60s\n"
                                 "listen echo\n    bind 127.0.0.1:%u\n    server upstream 127.0.0.1:%u\n",
                                 o.connections * 2 + 100, port, upstream.port);
                    std::fclose(f);
                }
                argv = {"haproxy", "-db", "-f", cfg};  // -db: in the foreground, no daemon
            }
            child proxy(argv, true, static_cast<int>(server_cpu));
            measurement m;
            if (!port || !accepts_on(port, std::chrono::seconds(5))) {
                m.load.failure = "did not start listening on 127.0.0.1:" + std::to_string(port);
            } else {
                bench::load_plan plan{port, o.connections, o.size, o.depth, o.warmup, 0};
                if (o.warmup.count() > 0) bench::run_load(plan);
                plan.duration = o.duration;
                syscall_counter syscalls(proxy.pid(), o.perf);
                std::uint64_t before = cpu_ns(proxy.pid());
                m.load = bench::run_load(plan);
                std::uint64_t after = cpu_ns(proxy.pid());
                auto calls = syscalls.finish();
                if (m.load.messages) {
                    m.cpu_us_per_msg = static_cast<double>(after - before) / 1000.0 / static_cast<double>(m.load.messages);
                    if (calls) m.syscalls_per_msg = static_cast<double>(*calls) / static_cast<double>(m.load.messages);
                }
            }
            if (!proxy.stop(SIGTERM, std::chrono::seconds(10))) m.note = "did not stop on SIGTERM";
            progress.end();
            auto& r = rows[i];
            progress.note("  [%u/%u] %-34s %10.0f msgs/s  %s%s\n", rep + 1, o.repetitions, r.name.c_str(), m.load.rate(),
                          m.load.errors ? "ERRORS " : "verified",
                          m.load.failure.empty() ? "" : (" FAILED: " + m.load.failure).c_str());
            r.errors += m.load.errors;
            if (!m.load.failure.empty() || m.load.errors || !m.load.messages) {
                ok = false;
                r.note = m.load.failure.empty() ? "verification errors" : m.load.failure;
                continue;
            }
            if (!m.note.empty()) r.note = m.note;
            r.rates.push_back(m.load.rate());
            cpu[i].push_back(m.cpu_us_per_msg);
            p50[i].push_back(m.load.p50_us);
            p99[i].push_back(m.load.p99_us);
            if (m.syscalls_per_msg) sys[i].push_back(*m.syscalls_per_msg);
        }
    }
    upstream.proc->stop(SIGTERM, std::chrono::seconds(10));
    if (dir) {
        std::remove(cfg.c_str());
        ::rmdir(dir);
    }

    auto median = [](std::vector<double> v) -> std::optional<double> {
        if (v.empty()) return std::nullopt;
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    const bench::row* haproxy = nullptr;
    std::optional<double> haproxy_cpu;
    for (std::size_t i = 0; i < kinds.size(); ++i)
        if (!kinds[i].zerg && !rows[i].rates.empty()) {
            haproxy = &rows[i];
            haproxy_cpu = median(cpu[i]);
        }
    std::printf("%-34s %-24s %8s %8s %14s %10s %10s %14s\n", "proxy", "msgs/s median (min-max)", "p50 us", "p99 us",
                "proxy cpu us/msg", "sys/msg", "vs haproxy", "cpu vs haproxy");
    for (std::size_t i = 0; i < kinds.size(); ++i) {
        auto const& r = rows[i];
        if (r.rates.empty()) {
            std::printf("%-34s FAILED: %s\n", r.name.c_str(), r.note.c_str());
            continue;
        }
        auto c = median(cpu[i]);
        std::string rate = bench::fmt("%.0f", r.median()) + " (" + bench::fmt("%.0f", r.min()) + "-" + bench::fmt("%.0f", r.max()) + ")";
        std::printf("%-34s %-24s %8.0f %8.0f %14s %10s %10s %14s\n", r.name.c_str(), rate.c_str(), median(p50[i]).value_or(0),
                    median(p99[i]).value_or(0), bench::opt(c, "%.2f").c_str(), bench::opt(median(sys[i]), "%.3f").c_str(),
                    haproxy ? bench::fmt("%.2f", bench::ratio(r, haproxy)).c_str() : "n/a",
                    c && haproxy_cpu && *haproxy_cpu > 0 ? bench::fmt("%.2f", *c / *haproxy_cpu).c_str() : "n/a");
    }
    if (have_haproxy) std::printf("  %s\n", haproxy_version.c_str());
    return ok;
}

void usage() {
    std::printf(
        "usage: zerg-bench [--quick] [--instructions] [--no-memory] [--no-http] [--no-perf]\n"
        "                  [--duration MS] [--warmup MS] [--repetitions N] [--connections N]\n"
        "                  [--size BYTES] [--depth N] [--reactors N] [--only NAME,NAME]\n"
        "                  [--sizes 64,4k,64k,1m|none] [--sweep-duration MS] [--proxy|--no-proxy]\n"
        "                  [--csv FILE] [--svg FILE] [--list]\n");
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    std::string serve_name;
    int serve_cpu = -1;
    bool list = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
            return argv[++i];
        };
        if (a == "--serve") serve_name = next();
        else if (a == "--cpu") serve_cpu = std::stoi(next());
        else if (a == "--quick") {
            o.duration = std::chrono::milliseconds(300);
            o.warmup = std::chrono::milliseconds(100);
            o.repetitions = 1;
            o.connections = 16;
            o.memory = false;
            o.sizes = {64 * 1024, 1024 * 1024};
            o.proxy = false;
        } else if (a == "--instructions") o.instructions = true;
        else if (a == "--sizes") o.sizes = parse_sizes(next());
        else if (a == "--sweep-duration") o.sweep_duration = std::chrono::milliseconds(std::stoi(next()));
        else if (a == "--no-memory") o.memory = false;
        else if (a == "--no-http") o.http = false;
        else if (a == "--no-perf") o.perf = false;
        else if (a == "--proxy") o.proxy = true;
        else if (a == "--no-proxy") o.proxy = false;
        else if (a == "--duration") o.duration = std::chrono::milliseconds(std::stoi(next()));
        else if (a == "--warmup") o.warmup = std::chrono::milliseconds(std::stoi(next()));
        else if (a == "--repetitions") o.repetitions = static_cast<unsigned>(std::stoi(next()));
        else if (a == "--connections") o.connections = static_cast<unsigned>(std::stoi(next()));
        else if (a == "--size") o.size = static_cast<std::size_t>(std::stoul(next()));
        else if (a == "--depth") o.depth = static_cast<unsigned>(std::stoi(next()));
        else if (a == "--reactors") o.reactors = static_cast<unsigned>(std::stoi(next()));
        else if (a == "--max-connections") o.max_connections = static_cast<unsigned>(std::stoi(next()));
        else if (a == "--max-wait-ms") o.max_wait_ms = static_cast<unsigned>(std::stoi(next()));
        else if (a == "--only") o.only = next();
        else if (a == "--csv") o.csv = next();
        else if (a == "--svg") o.svg = next();
        else if (a == "--list") list = true;
        else {
            usage();
            return a == "--help" ? 0 : 2;
        }
    }
    raise_fd_limit();
    // Short runs: the sweep has sizes x configurations of them, and the
    // default run should stay near three minutes.
    if (o.sweep_duration.count() == 0) o.sweep_duration = std::min(o.duration, std::chrono::milliseconds(600));
    if (o.sweep_warmup.count() == 0) o.sweep_warmup = std::min(o.warmup, std::chrono::milliseconds(150));

    if (!serve_name.empty()) {
        if (serve_cpu >= 0) pin_to_cpu(static_cast<unsigned>(serve_cpu) % cpu_count());
        if (serve_name == http_baseline_name) return serve_baseline_http(o);
        for (auto const& c : configurations())
            if (c.name == serve_name) return c.serve(o);
        std::fprintf(stderr, "no configuration named '%s'\n", serve_name.c_str());
        return 2;
    }
    if (list) {
        for (auto const& c : configurations()) std::printf("%s\n", c.name.c_str());
        return 0;
    }

    // The server gets CPU 0 and the load generator the last CPU, when there
    // are two or more; on one CPU they share it.
    unsigned cpus = cpu_count();
    unsigned server_cpu = 0, client_cpu = cpus > 1 ? cpus - 1 : 0;
    pin_to_cpu(client_cpu);
    bool perf = o.perf && have_program("perf");
    o.perf = perf;

    std::vector<configuration> chosen;
    for (auto const& c : configurations())
        if (o.only.empty() ? !c.variant : named_in(o.only, c.name)) chosen.push_back(c);

    std::printf("zerg-bench: echo, %u connections x %u pipelined messages of %zu bytes, %u reactor(s)\n", o.connections,
                o.depth, o.size, o.reactors);
    std::printf("server on CPU %u, load generator on CPU %u; %u repetition(s) of %lld ms after %lld ms warm-up, interleaved\n",
                server_cpu, client_cpu, o.repetitions, static_cast<long long>(o.duration.count()),
                static_cast<long long>(o.warmup.count()));
    if (!perf) std::printf("syscalls per message: n/a (perf not installed; apt-get install linux-perf)\n");

    // The size sweep: the reference zerg configuration, every variant and
    // the liburing loop; or what --only names.
    std::vector<configuration> swept;
    for (auto const& c : configurations())
        if (o.only.empty() ? (c.name == reference_name || c.variant || c.name == liburing_name) : named_in(o.only, c.name))
            swept.push_back(c);

    // Every step, planned before the first one runs, so "time left" covers
    // the whole run.
    progress.plan(echo_step(o), o.repetitions * static_cast<unsigned>(chosen.size()));
    if (o.instructions && have_program("valgrind"))
        for (auto const& c : chosen)
            if (c.name.find("sqpoll") == std::string::npos) progress.plan(callgrind_step, 2 * std::size(instruction_shapes));
    progress.plan(sweep_step(o), static_cast<unsigned>(o.sizes.size() * swept.size()));
    if (o.proxy) progress.plan(echo_step(o), 2 * o.repetitions);
    if (o.http) {
        progress.plan(http_step(o, false), 2 * o.repetitions);
        if (have_program("wrk")) progress.plan(o.duration, 2);
    }
    if (o.memory) {
        for (auto const& c : configurations())
            if (!c.variant && measured_for_memory(c.name)) progress.plan(memory_step);
        progress.plan(memory_step);
    }

    std::vector<bench::row> rows(chosen.size());
    for (std::size_t i = 0; i < chosen.size(); ++i) rows[i].name = chosen[i].name;
    std::vector<std::vector<double>> cpu(chosen.size()), sys(chosen.size()), p50(chosen.size()), p99(chosen.size());
    bool failed = false;
    // Interleaved: A B C ... A B C ..., so drift hits every configuration alike.
    for (unsigned rep = 0; rep < o.repetitions; ++rep) {
        for (std::size_t i = 0; i < chosen.size(); ++i) {
            progress.begin("echo: " + chosen[i].name + ", repetition " + std::to_string(rep + 1) + "/" +
                               std::to_string(o.repetitions),
                           echo_step(o));
            measurement m;
            try {
                m = measure(chosen[i].name, o, server_cpu);
            } catch (const std::exception& e) {
                m.load.failure = e.what();
            }
            auto& r = rows[i];
            progress.end();
            progress.note("  [%u/%u] %-34s %10.0f msgs/s  %s%s\n", rep + 1, o.repetitions, r.name.c_str(), m.load.rate(),
                          m.load.errors ? "ERRORS " : "verified",
                          m.load.failure.empty() ? "" : (" FAILED: " + m.load.failure).c_str());
            r.errors += m.load.errors;
            if (!m.load.failure.empty() || m.load.errors || !m.load.messages) {
                failed = true;
                r.note = m.load.failure.empty() ? r.note : m.load.failure;
                continue;
            }
            if (!m.note.empty()) r.note = m.note;
            r.rates.push_back(m.load.rate());
            cpu[i].push_back(m.cpu_us_per_msg);
            p50[i].push_back(m.load.p50_us);
            p99[i].push_back(m.load.p99_us);
            if (m.syscalls_per_msg) sys[i].push_back(*m.syscalls_per_msg);
        }
    }
    auto median = [](std::vector<double> v) -> std::optional<double> {
        if (v.empty()) return std::nullopt;
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    for (std::size_t i = 0; i < rows.size(); ++i) {
        rows[i].cpu_us_per_msg = median(cpu[i]);
        rows[i].syscalls_per_msg = median(sys[i]);
        rows[i].p50_us = median(p50[i]).value_or(0);
        rows[i].p99_us = median(p99[i]).value_or(0);
    }

    if (o.instructions) {
        if (!have_program("valgrind") || !have_program("callgrind_control")) {
            std::printf("instructions per message: n/a (valgrind not installed)\n");
        } else {
            // Two lock-step runs with different message counts, subtracted:
            // what each connection costs once (its accept, its first
            // receive) cancels out, what is left is the per-message cost,
            // at each shape.
            for (std::size_t i = 0; i < chosen.size(); ++i) {
                if (chosen[i].name.find("sqpoll") != std::string::npos) continue;  // its kernel thread is not counted
                for (std::size_t s = 0; s < std::size(instruction_shapes); ++s) {
                    auto const& shape = instruction_shapes[s];
                    std::string what = "callgrind: " + chosen[i].name + ", " + std::to_string(shape.connections) + " x " +
                                       std::to_string(shape.depth) + " lock-step, ";
                    progress.begin(what + std::to_string(shape.few) + " messages per connection", callgrind_step);
                    auto a = callgrind_total(chosen[i].name, o, shape, shape.few);
                    progress.end();
                    progress.begin(what + std::to_string(shape.many) + " messages per connection", callgrind_step);
                    auto b = callgrind_total(chosen[i].name, o, shape, shape.many);
                    progress.end();
                    std::optional<double> per_msg;
                    if (a && b && *b > *a)
                        per_msg = static_cast<double>(*b - *a) /
                                  static_cast<double>((shape.many - shape.few) * shape.connections);
                    (s == 0 ? rows[i].instructions_per_msg : rows[i].instructions_per_msg_low) = per_msg;
                    auto total = [](const std::optional<std::uint64_t>& t) {
                        return t ? std::to_string(*t) : std::string("failed");
                    };
                    progress.note("  callgrind %-34s %3u x %-2u lock-step: %s instructions/msg (totals %s, %s)\n",
                                  chosen[i].name.c_str(), shape.connections, shape.depth, bench::opt(per_msg, "%.0f").c_str(),
                                  total(a).c_str(), total(b).c_str());
                }
            }
        }
    }

    const bench::row* liburing = nullptr;
    const bench::row* epoll = nullptr;
    for (auto const& r : rows) {
        if (r.name.rfind("baseline liburing", 0) == 0 && !r.rates.empty()) liburing = &r;
        if (r.name.rfind("baseline epoll", 0) == 0 && !r.rates.empty()) epoll = &r;
    }
    bench::print_table(rows, liburing, epoll);
    bench::write_csv(o.csv, rows, liburing, epoll);
    bench::write_svg(o.svg, rows, "echo: " + std::to_string(o.connections) + " connections x " + std::to_string(o.depth) +
                                      " in flight, " + std::to_string(o.size) + " B messages");
    std::printf("\nwrote %s and %s\n", o.csv.c_str(), o.svg.c_str());

    if (!o.sizes.empty() && !measure_sweep(o, server_cpu, swept)) failed = true;
    if (o.http && !measure_http(o, server_cpu)) failed = true;
    if (o.proxy && !measure_proxy(o, server_cpu, client_cpu)) failed = true;
    if (o.memory) measure_memory(o, server_cpu);

    std::uint64_t errors = 0;
    for (auto const& r : rows) errors += r.errors;
    std::printf("\n%s: %llu verification errors\n", failed || errors ? "FAILED" : "ok", static_cast<unsigned long long>(errors));
    return failed || errors ? 1 : 0;
}
