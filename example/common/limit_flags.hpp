// Flags an example adds to the shared ones (options.hpp): each
// "--NAME N" found is taken out of argv and stored, so parse_options()
// sees only its own. Sizes take an optional k, m or g suffix (powers of
// 1024), e.g. --max-body 4m.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <limits>

namespace example {

struct size_flag {
    const char* name;
    std::size_t* value;
};

// False (after saying why on stderr) when a value is missing or not a size.
inline bool take_size_flags(int& argc, char** argv, std::initializer_list<size_flag> flags) {
    int out = 1;
    for (int i = 1; i < argc; ++i) {
        const size_flag* match = nullptr;
        for (auto& f : flags)
            if (std::strcmp(argv[i], f.name) == 0) match = &f;
        if (!match) {
            argv[out++] = argv[i];
            continue;
        }
        const char* v = i + 1 < argc ? argv[++i] : nullptr;
        std::size_t n = 0, scale = 1;
        bool ok = v && *v;
        for (const char* p = v; ok && *p; ++p) {
            if (*p >= '0' && *p <= '9' && scale == 1) {
                std::size_t d = static_cast<std::size_t>(*p - '0');
                ok = n <= (std::numeric_limits<std::size_t>::max() - d) / 10;
                n = n * 10 + d;
            } else if (scale == 1 && p != v && p[1] == '\0' && std::strchr("kKmMgG", *p)) {
                scale = *p == 'k' || *p == 'K' ? 1024 : *p == 'm' || *p == 'M' ? 1024 * 1024 : std::size_t{1} << 30;
            } else {
                ok = false;
            }
        }
        if (ok && n > std::numeric_limits<std::size_t>::max() / scale) ok = false;
        if (!ok) {
            std::fprintf(stderr, "%s: %s takes a size (N, Nk, Nm or Ng)\n", argv[0], match->name);
            return false;
        }
        *match->value = n * scale;
    }
    argc = out;
    argv[out] = nullptr;
    return true;
}

}  // namespace example
