// poll_sources: one poll() over the network backends and the board's input descriptors (host_net.h).
#include "machine/host_net.h"

#include <cerrno>

namespace m86::host {

bool poll_sources(const std::vector<PollSource*>& sources, const std::vector<int>& read_fds, int timeout_ms) {
    std::vector<pollfd> fds;
    for (int fd : read_fds)
        if (fd >= 0) fds.push_back({fd, POLLIN, 0});
    const size_t n_read = fds.size();
    int timeout = timeout_ms;
    for (PollSource* s : sources) s->add_poll_fds(fds, timeout);
    // Nothing to watch (slirp with no open sockets, no terminal): still wait out the timeout, so an
    // idle board sleeps instead of spinning; with no timeout either there is nothing to wait for.
    int r = fds.empty() ? (timeout > 0 ? ::poll(nullptr, 0, timeout) : 0) : ::poll(fds.data(), nfds_t(fds.size()), timeout);
    const bool failed = r < 0 && errno != EINTR;
    if (r < 0)
        for (auto& p : fds) p.revents = 0;
    for (PollSource* s : sources) s->process_poll_fds(fds, failed);
    for (size_t i = 0; i < n_read; i++)
        if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) return true;
    return false;
}

}  // namespace m86::host
