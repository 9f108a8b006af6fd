// Unit tests: x87.
#include <doctest/doctest.h>
