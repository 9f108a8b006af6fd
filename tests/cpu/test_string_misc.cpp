// Unit tests: string_misc.
#include <doctest/doctest.h>
