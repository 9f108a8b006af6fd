// micro86: command-line entry point. `micro86 snippet ...` runs raw machine code; anything else is
// a QEMU-style command line for the microvm board.
#include <fmt/format.h>

#include <cstdio>
#include <new>
#include <string>
#include <vector>

#include "machine/host.h"

#include "machine/cli.h"
#include "machine/microvm.h"
#include "machine/options.h"

namespace {

int vm_main(int argc, char** argv) {
    using namespace m86::machine;
    std::vector<std::string> args(argv + 1, argv + argc);
    if (!args.empty() && args[0] == "snippet") return snippet_main({args.begin() + 1, args.end()});

    std::string error;
    auto cfg = parse_options(args, error);
    if (!cfg) {
        fmt::print(stderr, "micro86: {}\n", error);
        return 2;
    }
    if (cfg->help) {
        fmt::print("micro86 - a pure-software x86-64 emulator of QEMU's microvm machine\n\n{}", kVmUsage);
        return 0;
    }
    if (cfg->version) {
        fmt::print("micro86 {}\n", MICRO86_VERSION);
        return 0;
    }
    if (args.empty()) {
        fmt::print(stderr, "micro86: nothing to run (try: micro86 -kernel bzImage -append console=ttyS0)\n\n{}", kVmUsage);
        return 2;
    }
    for (const auto& n : cfg->notes) fmt::print(stderr, "micro86: note: {}\n", n);
    // Guest RAM is committed lazily, so more than the host has may work for a guest that touches
    // little of it; but it is most likely a typo (1T for 1G), so say so.
    if (uint64_t phys = m86::host::physical_memory(); phys && cfg->ram_size > phys)
        fmt::print(stderr, "micro86: warning: -m {} MiB is more than this host's {} MiB of memory\n",
                   cfg->ram_size >> 20, phys >> 20);
    auto vm = Microvm::create(*cfg, error);
    if (!vm) {
        fmt::print(stderr, "micro86: {}\n", error);
        return 1;
    }
    int status = vm->run();
    if (cfg->stats) vm->print_stats();
    return status;
}

}  // namespace

int main(int argc, char** argv) {
    // Every allocation on the start-up path is bounded by a check first; should one still fail
    // (a memory-capped host), it is one clear line and a non-zero exit, not an abort.
    try {
        return vm_main(argc, argv);
    } catch (const std::bad_alloc&) {
        std::fputs("micro86: out of memory (host memory exhausted or capped)\n", stderr);
        return 1;
    }
}
