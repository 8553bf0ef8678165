// The one pybind11 binding file: everything else in csrc/ is plain C++ (and CUDA).
// Outputs are numpy arrays allocated here and filled in place by the core with the GIL released,
// so the CSR arrays reach Python (and scipy) without a copy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <string>

#include "spatial.h"
#include "topk.h"

namespace py = pybind11;

using Points = py::array_t<double, py::array::c_style | py::array::forcecast>;

static bool has_cuda() { return scp::cuda_compiled(); }

static void check_shape(const Points& pts) {
  if (pts.ndim() != 2 || (pts.shape(1) != 2 && pts.shape(1) != 3)) {
    throw py::value_error("coordinates must be an n x 2 or n x 3 array");
  }
}

// int32 indices when every index and offset fits (scipy's own rule), else int64.
static bool need_int64(int64_t n, int64_t nnz, bool index64) {
  const int64_t lim = std::numeric_limits<int32_t>::max();
  return index64 || n > lim || nnz > lim;
}

template <class I, class D>
static py::tuple knn_typed(const Points& pts, int k, bool include_self, int threads, scp::Device device) {
  const int64_t n = pts.shape(0);
  const int64_t nnz = n * (k + (include_self ? 1 : 0));
  py::array_t<I> indptr(n + 1), indices(nnz);
  py::array_t<D> distances(nnz);
  const double* p = pts.data();
  I* ip = indptr.mutable_data();
  I* ii = indices.mutable_data();
  D* dd = distances.mutable_data();
  {
    py::gil_scoped_release release;
    scp::knn_graph<I, D>(p, n, static_cast<int>(pts.shape(1)), k, include_self, threads, device, ip, ii, dd);
  }
  return py::make_tuple(indptr, indices, distances);
}

static py::tuple knn_graph(const Points& pts, int k, bool include_self, int threads, const std::string& device,
                           bool float32, bool index64) {
  check_shape(pts);
  const scp::Device dev = scp::parse_device(device);
  const int64_t n = pts.shape(0);
  if (need_int64(n, n * (static_cast<int64_t>(k) + 1), index64)) {
    return float32 ? knn_typed<int64_t, float>(pts, k, include_self, threads, dev)
                   : knn_typed<int64_t, double>(pts, k, include_self, threads, dev);
  }
  return float32 ? knn_typed<int32_t, float>(pts, k, include_self, threads, dev)
                 : knn_typed<int32_t, double>(pts, k, include_self, threads, dev);
}

template <class I, class D>
static py::tuple radius_typed(const scp::RadiusGraph& graph) {
  py::array_t<I> indptr(graph.n() + 1), indices(graph.nnz());
  py::array_t<D> distances(graph.nnz());
  I* ip = indptr.mutable_data();
  I* ii = indices.mutable_data();
  D* dd = distances.mutable_data();
  {
    py::gil_scoped_release release;
    graph.fill<I, D>(ip, ii, dd);
  }
  return py::make_tuple(indptr, indices, distances);
}

static py::tuple radius_graph(const Points& pts, double radius, bool include_self, int threads, bool float32,
                              bool index64) {
  check_shape(pts);
  const double* p = pts.data();
  const int64_t n = pts.shape(0);
  const int dim = static_cast<int>(pts.shape(1));
  std::unique_ptr<scp::RadiusGraph> graph;
  {
    py::gil_scoped_release release;
    graph.reset(new scp::RadiusGraph(p, n, dim, radius, include_self, threads));
  }
  if (need_int64(n, graph->nnz(), index64)) {
    return float32 ? radius_typed<int64_t, float>(*graph) : radius_typed<int64_t, double>(*graph);
  }
  return float32 ? radius_typed<int32_t, float>(*graph) : radius_typed<int32_t, double>(*graph);
}

using Embedding = py::array_t<float, py::array::c_style | py::array::forcecast>;

// Top-k inner products of query rows against reference rows: (indices int64 nq x k, similarities float32 nq x k).
static py::tuple topk_similarity(const Embedding& query, const Embedding& ref, int k, int threads,
                                 const std::string& device) {
  const scp::Device dev = scp::parse_device(device);
  if (query.ndim() != 2 || ref.ndim() != 2 || query.shape(1) != ref.shape(1)) {
    throw py::value_error("query and reference must be 2-d arrays with the same number of columns");
  }
  const int64_t nq = query.shape(0), nr = ref.shape(0);
  py::array_t<int64_t> indices({nq, static_cast<int64_t>(k)});
  py::array_t<float> sims({nq, static_cast<int64_t>(k)});
  const float* q = query.data();
  const float* r = ref.data();
  int64_t* ii = indices.mutable_data();
  float* ss = sims.mutable_data();
  {
    py::gil_scoped_release release;
    scp::topk_similarity(q, nq, r, nr, static_cast<int>(query.shape(1)), k, threads, ii, ss, dev);
  }
  return py::make_tuple(indices, sims);
}

PYBIND11_MODULE(_core, m) {
  m.doc() = "scprospatial compiled core";
  m.def("compiled_with_cuda", &has_cuda, "True when the CUDA kernels were compiled in");
  m.def("cuda_device_count", &scp::cuda_device_count, "CUDA devices visible to the core (0 without CUDA)");
  m.def("knn_graph", &knn_graph, py::arg("points"), py::arg("k"), py::arg("include_self") = false,
        py::arg("threads") = 0, py::arg("device") = "cpu", py::arg("float32") = false, py::arg("index64") = false,
        "k-nearest-neighbour graph of n x 2 / n x 3 float64 points as CSR arrays (indptr, indices, distances);\n"
        "k (+1 with include_self, self first) entries per row sorted by distance, ties by index.\n"
        "threads=0 uses every hardware thread; the GIL is released while computing.");
  m.def("radius_graph", &radius_graph, py::arg("points"), py::arg("radius"), py::arg("include_self") = false,
        py::arg("threads") = 0, py::arg("float32") = false, py::arg("index64") = false,
        "All pairs within `radius` (inclusive) as CSR arrays (indptr, indices, distances), rows sorted by distance.");
  m.def("topk_isa", &scp::topk_isa, "CPU instruction set of the top-k kernel: 'avx512', 'avx2' or 'portable'");
  m.def("topk_similarity", &topk_similarity, py::arg("query"), py::arg("ref"), py::arg("k"), py::arg("threads") = 0,
        py::arg("device") = "cpu",
        "For every query row the k reference rows with the largest dot product (cosine for L2-normalised rows),\n"
        "computed in query x reference blocks without the full similarity matrix. Returns (indices int64 nq x k,\n"
        "similarities float32 nq x k), rows sorted by similarity (descending), ties by index; GIL released.\n"
        "device 'cuda' runs the CUDA twin (same results bit for bit: every score is fma(q[d], r[d], s) over d in order).");
}
