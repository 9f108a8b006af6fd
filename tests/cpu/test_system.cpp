// Unit tests: system.
#include <doctest/doctest.h>
