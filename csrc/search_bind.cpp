// Placeholder registration until the search driver lands (issue 4): keeps the module layout.
#include <pybind11/pybind11.h>

#include "bind.hpp"

namespace zc {
void bind_search(pybind11::module_& m) {}
}  // namespace zc
