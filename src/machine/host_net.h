// Host network backends for virtio-net (part of the host layer): what every backend offers the
// board's loop, and the one call that polls them.
//
// A HostNetBackend is a dev::NetBackend (frames from the guest go to send(), frames for the guest
// come out through the receiver VirtioNet registered) that also owns host file descriptors (slirp's
// sockets, the tap device). The board polls them from its loop:
//
//   std::vector<host::PollSource*> net = {&slirp, &tap};
//   host::poll_sources(net, {terminal_fd}, 0);          // while the guest runs: every few ms, no wait
//   host::poll_sources(net, {terminal_fd}, idle_ms);    // when every vCPU halts: wait for input/events
//
// poll_sources() asks each source for its descriptors and its own deadline (slirp's TCP timers),
// waits in one poll(), and lets each source process what is ready; frames for the guest are
// delivered during that call. Timers a backend needs beyond that (slirp's) run on the dev::Clock.
#pragma once

#include <poll.h>

#include <vector>

#include "devices/virtio/net.h"

namespace m86::host {

class PollSource {
public:
    virtual ~PollSource() = default;
    // Appends the descriptors to watch to `fds` and lowers `timeout_ms` (-1 = no limit) to the
    // source's next deadline. Entries appended stay at their index until process_poll_fds().
    virtual void add_poll_fds(std::vector<pollfd>& fds, int& timeout_ms) = 0;
    // After poll() filled the revents of the same vector: handle what is ready. `poll_failed` says
    // that poll() itself returned an error (revents are then meaningless).
    virtual void process_poll_fds(const std::vector<pollfd>& fds, bool poll_failed) = 0;
};

class HostNetBackend : public dev::NetBackend, public PollSource {};

// Polls `sources` plus `read_fds` (e.g. the terminal) for up to `timeout_ms` (-1 = until something
// happens; the sources may shorten it), then dispatches to the sources. Returns true if one of
// `read_fds` is readable.
bool poll_sources(const std::vector<PollSource*>& sources, const std::vector<int>& read_fds, int timeout_ms);

}  // namespace m86::host
