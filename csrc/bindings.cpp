// The one pybind11 binding file: everything else in csrc/ is plain C++ (and CUDA).
#include <pybind11/pybind11.h>

namespace py = pybind11;

static bool has_cuda() {
#ifdef SCPROSPATIAL_WITH_CUDA
  return true;
#else
  return false;
#endif
}

PYBIND11_MODULE(_core, m) {
  m.doc() = "scprospatial compiled core";
  m.def("compiled_with_cuda", &has_cuda, "True when the CUDA kernels were compiled in");
}
