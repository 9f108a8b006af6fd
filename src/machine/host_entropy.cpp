// HostEntropy (see host_entropy.h).
#include "machine/host_entropy.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#if defined(__APPLE__)
#include <sys/random.h>
#endif

namespace m86::host {

void HostEntropy::fill(uint8_t* buf, size_t n) {
    while (n) {
        size_t k = std::min<size_t>(n, 256);  // getentropy()'s limit per call
        if (getentropy(buf, k) != 0) break;
        buf += k, n -= k;
    }
    if (!n) return;
    int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    while (fd >= 0 && n) {
        ssize_t r = ::read(fd, buf, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        buf += r, n -= size_t(r);
    }
    if (fd >= 0) ::close(fd);
    if (n) {
        // No entropy source at all: never hand the guest predictable bytes silently.
        std::fprintf(stderr, "micro86: virtio-rng: the host has no working entropy source\n");
        std::abort();
    }
}

}  // namespace m86::host
