// zerg's own error codes (close reasons and reports that are not an errno)
// and the report the error hook receives.
//
//   zerg::error::handler_exception  a handler callback threw; its connection
//                                    closed (compares equal to EPROTO)
//   zerg::error::out_of_memory       std::bad_alloc while serving one
//                                    connection; it closed (ENOMEM)
//   zerg::error::input_limit         the handler held more unconsumed input
//                                    than server_config::max_input (EMSGSIZE)
//   zerg::error::reactor_failed      a reactor stopped on an error it cannot
//                                    survive (io_uring_enter failed...)
#pragma once

#include <functional>
#include <string>
#include <system_error>

namespace zerg {

enum class error {
    handler_exception = 1,
    out_of_memory,
    input_limit,
    reactor_failed,
};

namespace detail {
class error_category_impl : public std::error_category {
public:
    const char* name() const noexcept override { return "zerg"; }
    std::string message(int e) const override {
        switch (static_cast<error>(e)) {
            case error::handler_exception: return "a handler callback threw an exception";
            case error::out_of_memory: return "out of memory while serving the connection";
            case error::input_limit: return "the handler held more unconsumed input than max_input";
            case error::reactor_failed: return "the reactor stopped on an error it cannot survive";
        }
        return "unknown zerg error";
    }
    // The nearest errno, so code written against errno values keeps working.
    std::error_condition default_error_condition(int e) const noexcept override {
        switch (static_cast<error>(e)) {
            case error::handler_exception: return std::errc::protocol_error;
            case error::out_of_memory: return std::errc::not_enough_memory;
            case error::input_limit: return std::errc::message_size;
            case error::reactor_failed: return std::errc::io_error;
        }
        return {e, *this};
    }
};
}  // namespace detail

inline const std::error_category& error_category() noexcept {
    static const detail::error_category_impl category;
    return category;
}

inline std::error_code make_error_code(error e) noexcept { return {static_cast<int>(e), error_category()}; }

// What the error hook (server_config::on_error) is told.
struct error_report {
    enum class kind {
        handler_exception,  // a callback threw; that connection closed, the reactor goes on
        reactor_failure,    // a reactor or the acceptor stopped; see server::wait()
        accept_backoff,     // accept failed (EMFILE...): retrying every 10 ms until it works
        fallback,           // at start: a feature is not in effect, and why
    };
    kind what;
    int reactor = -1;        // the reactor's index; -1 for the acceptor or the server
    std::string peer;        // "address:port" of the connection concerned, empty when none
    std::error_code code;    // the close reason, the errno, or zerg::error::reactor_failed
    std::string message;     // the exception's what(), or a sentence
};

// Called on the thread that saw the error (a reactor, the acceptor, or the
// one calling start()), so it must be thread-safe; it should not block.
using error_hook = std::function<void(const error_report&)>;

}  // namespace zerg

template <>
struct std::is_error_code_enum<zerg::error> : std::true_type {};
