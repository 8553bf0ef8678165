// The one pybind11 binding file: everything else in csrc/ is plain C++ (and CUDA).
// Outputs are numpy arrays allocated here and filled in place by the core with the GIL released,
// so the CSR arrays reach Python (and scipy) without a copy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <string>

#include "gather.h"
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

// ---- weighted gather-average: the inputs are read in place, so they must already have the kernel's layout ----
template <class T>
static bool is_c_array(const py::object& obj) {
  return py::isinstance<py::array_t<T, py::array::c_style>>(obj);
}

static std::string describe(const py::object& obj) {
  if (!py::isinstance<py::array>(obj)) return std::string(py::str(py::type::of(obj).attr("__name__")));
  const py::array a = obj.cast<py::array>();
  std::string shape;
  for (py::ssize_t d = 0; d < a.ndim(); ++d) shape += (d ? ", " : "") + std::to_string(a.shape(d));
  const bool c = (a.flags() & py::array::c_style) != 0;
  return std::string(py::str(a.dtype())) + " (" + shape + ")" + (c ? "" : " not C-contiguous");
}

template <class T>
static py::array_t<T> checked(const py::object& obj, const char* name, const char* dtype, int64_t rows, int64_t cols) {
  if (!is_c_array<T>(obj) || obj.cast<py::array>().ndim() != 2) {
    throw py::value_error(std::string(name) + " must be a 2-d C-contiguous " + dtype + " array (read in place, " +
                          "never copied), got " + describe(obj));
  }
  py::array_t<T> a = obj.cast<py::array_t<T>>();
  if ((rows >= 0 && a.shape(0) != rows) || (cols >= 0 && a.shape(1) != cols)) {
    throw py::value_error(std::string(name) + " has shape (" + std::to_string(a.shape(0)) + ", " +
                          std::to_string(a.shape(1)) + "), expected (" + std::to_string(rows) + ", " +
                          std::to_string(cols) + ")");
  }
  return a;
}

template <class W>
static void gather_typed(const py::array_t<int64_t>& idx, const py::object& w_obj, const py::array_t<float>& mean,
                         const float* sd, int threads, scp::Device dev, float* om, float* ov, bool as_sd) {
  const py::array_t<W> w = checked<W>(w_obj, "w", "float32 or float64", idx.shape(0), idx.shape(1));
  const int64_t* ii = idx.data();
  const W* ww = w.data();
  const float* mu = mean.data();
  const int64_t n = idx.shape(0), m = mean.shape(0), p = mean.shape(1);
  const int k = static_cast<int>(idx.shape(1));
  py::gil_scoped_release release;
  scp::gather_mixture<W>(ii, ww, n, k, mu, sd, m, p, threads, om, ov, as_sd, dev);
}

// Weighted mixture of the k profiles each row indexes: (out_mean n x p float32, out_var n x p float32 or None).
static py::tuple gather_mixture(const py::object& idx_obj, const py::object& w_obj, const py::object& mean_obj,
                                const py::object& sd_obj, int threads, const std::string& device, bool variance,
                                bool as_sd, const py::object& out_mean_obj, const py::object& out_var_obj) {
  const scp::Device dev = scp::parse_device(device);
  const py::array_t<int64_t> idx = checked<int64_t>(idx_obj, "idx", "int64", -1, -1);
  const py::array_t<float> mean = checked<float>(mean_obj, "mean", "float32", -1, -1);
  const int64_t n = idx.shape(0), p = mean.shape(1);
  py::array_t<float> sd;
  if (!sd_obj.is_none()) sd = checked<float>(sd_obj, "sd", "float32", mean.shape(0), p);
  py::array_t<float> out_mean = out_mean_obj.is_none() ? py::array_t<float>({n, p})
                                                        : checked<float>(out_mean_obj, "out_mean", "float32", n, p);
  py::object out_var = py::none();
  if (variance) {
    out_var = out_var_obj.is_none() ? py::array_t<float>({n, p})
                                    : checked<float>(out_var_obj, "out_var", "float32", n, p);
  }
  float* om = out_mean.mutable_data();
  float* ov = variance ? out_var.cast<py::array_t<float>>().mutable_data() : nullptr;
  const float* s = sd_obj.is_none() ? nullptr : sd.data();
  if (is_c_array<double>(w_obj)) {
    gather_typed<double>(idx, w_obj, mean, s, threads, dev, om, ov, as_sd);
  } else {
    gather_typed<float>(idx, w_obj, mean, s, threads, dev, om, ov, as_sd);  // float32, or a clear error
  }
  return py::make_tuple(out_mean, out_var);
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
  m.def("gather_mixture", &gather_mixture, py::arg("idx"), py::arg("w"), py::arg("mean"), py::arg("sd") = py::none(),
        py::arg("threads") = 0, py::arg("device") = "cpu", py::arg("variance") = true,
        py::arg("as_sd") = false, py::arg("out_mean") = py::none(), py::arg("out_var") = py::none(),
        "Mixture of the k Gaussians each row indexes: idx (n x k int64), w (n x k float32 or float64, used as given,\n"
        "rows need not sum to 1), mean and sd (m x p float32, sd optional: variance 0), all 2-d C-contiguous and\n"
        "read in place. Returns (out_mean, out_var), n x p float32: mean = sum_j w_j mu_j, var = max(0, sum_j w_j\n"
        "(sd_j^2 + mu_j^2) - mean^2), summed in float64 over j in order (equal to scipy's CSR @ float64 product and\n"
        "to the CUDA twin bit for bit); out_var is None with variance=False. as_sd=True: the SD instead of the\n"
        "variance (square root taken in float64 before rounding, as mapping's former mixture()). out_mean, out_var:\n"
        "optional preallocated C-contiguous float32 n x p outputs (e.g. row slices of a larger array). An index\n"
        "outside [0, m) raises IndexError before anything is computed; the GIL is released while computing.");
}
