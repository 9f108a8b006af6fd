// micro86: command-line entry point.
#include <fmt/format.h>

#include <string>
#include <vector>

#include "machine/cli.h"

namespace {

constexpr const char* kUsage =
    "micro86 - a pure-software x86-64 emulator of QEMU's microvm machine\n"
    "\n"
    "usage:\n"
    "  micro86 snippet FILE [options]   run raw x86-64 machine code (see 'micro86 snippet --help')\n"
    "  micro86 --help                   this text\n"
    "  micro86 --version                print the version\n";

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty()) {
        fmt::print(stderr, "{}", kUsage);
        return 2;
    }
    if (args[0] == "--help" || args[0] == "-h") {
        fmt::print("{}", kUsage);
        return 0;
    }
    if (args[0] == "--version") {
        fmt::print("micro86 {}\n", MICRO86_VERSION);
        return 0;
    }
    if (args[0] == "snippet") return m86::machine::snippet_main({args.begin() + 1, args.end()});
    fmt::print(stderr, "micro86: unknown command or option '{}'\n{}", args[0], kUsage);
    return 2;
}
