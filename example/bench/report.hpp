// The benchmark's output: a table on stdout, a CSV file and an SVG chart,
// all made from the same rows.
#pragma once

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace bench {

struct row {
    std::string name;
    std::vector<double> rates;  // msgs/s, one per repetition
    double p50_us = 0, p99_us = 0;
    std::optional<double> cpu_us_per_msg;
    std::optional<double> syscalls_per_msg;
    std::optional<double> instructions_per_msg;      // callgrind, lock-step, 64 connections x 16
    std::optional<double> instructions_per_msg_low;  // callgrind, lock-step, 8 connections x 1
    std::uint64_t errors = 0;
    std::string note;  // fallbacks in effect, failures

    double median() const {
        if (rates.empty()) return 0;
        auto v = rates;
        std::sort(v.begin(), v.end());
        return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
    }
    double min() const { return rates.empty() ? 0 : *std::min_element(rates.begin(), rates.end()); }
    double max() const { return rates.empty() ? 0 : *std::max_element(rates.begin(), rates.end()); }
};

inline std::string fmt(const char* f, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}
inline std::string opt(const std::optional<double>& v, const char* f) { return v ? fmt(f, *v) : "n/a"; }

inline double ratio(const row& r, const row* base) {
    return base && base->median() > 0 ? r.median() / base->median() : 0;
}

inline void print_table(const std::vector<row>& rows, const row* liburing, const row* epoll) {
    std::printf("\n%-34s %-24s %8s %8s %10s %10s %10s %10s %8s %8s\n", "configuration", "msgs/s median (min-max)", "p50 us",
                "p99 us", "cpu us/msg", "sys/msg", "instr 64x16", "instr 8x1", "vs uring", "vs epoll");
    for (auto const& r : rows) {
        std::string rate = fmt("%.0f", r.median()) + " (" + fmt("%.0f", r.min()) + "-" + fmt("%.0f", r.max()) + ")";
        std::printf("%-34s %-24s %8.0f %8.0f %10s %10s %10s %10s %8s %8s\n", r.name.c_str(), rate.c_str(), r.p50_us, r.p99_us,
                    opt(r.cpu_us_per_msg, "%.2f").c_str(), opt(r.syscalls_per_msg, "%.3f").c_str(),
                    opt(r.instructions_per_msg, "%.0f").c_str(), opt(r.instructions_per_msg_low, "%.0f").c_str(), liburing ? fmt("%.2f", ratio(r, liburing)).c_str() : "n/a",
                    epoll ? fmt("%.2f", ratio(r, epoll)).c_str() : "n/a");
    }
    for (auto const& r : rows)
        if (!r.note.empty()) std::printf("  %s: %s\n", r.name.c_str(), r.note.c_str());
}

inline void write_csv(const std::string& path, const std::vector<row>& rows, const row* liburing, const row* epoll) {
    FILE* f = std::fopen(path.c_str(), "w");
    if (!f) return;
    std::fprintf(f, "configuration,msgs_per_s_median,msgs_per_s_min,msgs_per_s_max,p50_us,p99_us,cpu_us_per_msg,"
                    "syscalls_per_msg,instructions_per_msg_64x16,instructions_per_msg_8x1,ratio_vs_liburing,ratio_vs_epoll,errors\n");
    for (auto const& r : rows)
        std::fprintf(f, "%s,%.0f,%.0f,%.0f,%.0f,%.0f,%s,%s,%s,%s,%.3f,%.3f,%llu\n", r.name.c_str(), r.median(), r.min(), r.max(),
                     r.p50_us, r.p99_us, opt(r.cpu_us_per_msg, "%.3f").c_str(), opt(r.syscalls_per_msg, "%.4f").c_str(),
                     opt(r.instructions_per_msg, "%.0f").c_str(), opt(r.instructions_per_msg_low, "%.0f").c_str(), ratio(r, liburing), ratio(r, epoll),
                     static_cast<unsigned long long>(r.errors));
    std::fclose(f);
}

// A horizontal bar per configuration (median), with a min-max whisker.
inline void write_svg(const std::string& path, const std::vector<row>& rows, const std::string& title) {
    FILE* f = std::fopen(path.c_str(), "w");
    if (!f) return;
    double top = 1;
    for (auto const& r : rows) top = std::max(top, r.max());
    const int label = 260, width = 520, bar = 22, gap = 10, head = 40;
    int height = head + static_cast<int>(rows.size()) * (bar + gap) + 30;
    std::fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' font-family='sans-serif' font-size='12'>\n",
                 label + width + 120, height);
    std::fprintf(f, "<rect width='100%%' height='100%%' fill='white'/>\n");
    std::fprintf(f, "<text x='10' y='22' font-size='15'>%s</text>\n", title.c_str());
    int y = head;
    for (auto const& r : rows) {
        double w = r.median() / top * width, lo = r.min() / top * width, hi = r.max() / top * width;
        bool baseline = r.name.rfind("baseline", 0) == 0;
        std::fprintf(f, "<text x='%d' y='%d' text-anchor='end'>%s</text>\n", label - 8, y + bar - 6, r.name.c_str());
        std::fprintf(f, "<rect x='%d' y='%d' width='%.1f' height='%d' fill='%s'/>\n", label, y, w, bar,
                     baseline ? "#999999" : "#3b7dd8");
        std::fprintf(f, "<line x1='%.1f' x2='%.1f' y1='%d' y2='%d' stroke='black'/>\n", label + lo, label + hi, y + bar / 2,
                     y + bar / 2);
        std::fprintf(f, "<text x='%.1f' y='%d'>%.0f/s</text>\n", label + std::max(w, hi) + 6, y + bar - 6, r.median());
        y += bar + gap;
    }
    std::fprintf(f, "<text x='%d' y='%d' fill='#555'>bars: median msgs/s; whiskers: min-max over repetitions</text>\n", label,
                 y + 14);
    std::fprintf(f, "</svg>\n");
    std::fclose(f);
}

}  // namespace bench
