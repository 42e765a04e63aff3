// What a project that uses an installed zerg compiles: an echo server on
// 127.0.0.1 (the kernel picks the port) and one round trip against itself.
// Exit status 0 when the bytes came back, 1 otherwise. Built by CMake, by
// g++ with pkg-config and by b2 (test/consumers/run.sh).
#include <zerg/zerg.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

struct echo {
    void on_data(zerg::connection<echo>& c, std::span<const std::byte> bytes) { c.write(bytes); }
};

using echo_reactor =
    zerg::basic_reactor<zerg::provided_buffers<4096, 64>, zerg::spsc_handoff<64>, zerg::plain_submission, echo>;

// Sends `message` to 127.0.0.1:port and reads as many bytes back, within 5 s.
static std::string round_trip(std::uint16_t port, const std::string& message) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return {};
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::string back;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0 &&
        ::send(fd, message.data(), message.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(message.size())) {
        char buf[256];
        while (back.size() < message.size()) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 5000) <= 0) break;
            ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0) break;
            back.append(buf, static_cast<std::size_t>(n));
        }
    }
    ::close(fd);
    return back;
}

int main() {
    try {
        zerg::server_config config;
        config.address = "127.0.0.1";
        config.port = 0;
        zerg::server<echo_reactor> server(config);
        server.start();
        const std::string message = "hello from a zerg consumer";
        std::string back = round_trip(server.port(), message);
        server.stop();
        if (back != message) {
            std::fprintf(stderr, "echo_consumer: sent '%s', got '%s'\n", message.c_str(), back.c_str());
            return 1;
        }
        std::printf("echo_consumer: round trip on port %u ok\n", static_cast<unsigned>(server.port()));
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "echo_consumer: %s\n", e.what());
        return 1;
    }
}
