// micro86: command-line entry point. `micro86 snippet ...` runs raw machine code; anything else is
// a QEMU-style command line for the microvm board.
#include <fmt/format.h>

#include <string>
#include <vector>

#include "machine/cli.h"
#include "machine/microvm.h"
#include "machine/options.h"

int main(int argc, char** argv) {
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
    auto vm = Microvm::create(*cfg, error);
    if (!vm) {
        fmt::print(stderr, "micro86: {}\n", error);
        return 1;
    }
    int status = vm->run();
    if (cfg->stats) vm->print_stats();
    return status;
}
