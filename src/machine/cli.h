// Entry points of micro86's subcommands (main.cpp dispatches on argv[1]).
#pragma once

#include <string>
#include <vector>

namespace m86::machine {

int snippet_main(const std::vector<std::string>& args);

}  // namespace m86::machine
