// The one pybind11 binding file: everything else in csrc/ is plain C++ (and CUDA).
// Outputs are numpy arrays allocated here and filled in place by the core with the GIL released,
// so the CSR arrays reach Python (and scipy) without a copy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <utility>
#include <vector>

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

// ---- arrays already on a CUDA device: any object exposing __cuda_array_interface__ (torch CUDA tensors, CuPy,
// Numba), read and written in place. The dispatch follows the arrays, as pytorch_cluster follows its tensors:
// host arrays run the CPU kernel (or, with device="cuda", the CUDA kernel through copies), device arrays the CUDA
// kernel in place, and a call mixing the two is refused. Only this file knows about Python; the core takes raw
// device pointers.
using Named = std::vector<std::pair<const char*, py::object>>;

static bool on_cuda(const py::object& obj) { return !obj.is_none() && py::hasattr(obj, "__cuda_array_interface__"); }

// true when the arrays (None: absent) live on a CUDA device, false when on the host; throws when they are mixed or
// when `device` contradicts them.
static bool cuda_arrays(const Named& arrays, const std::string& device) {
  const char* cuda = nullptr;
  const char* host = nullptr;
  for (const auto& [name, obj] : arrays) {
    if (on_cuda(obj)) {
      cuda = cuda ? cuda : name;
    } else if (!obj.is_none()) {
      host = host ? host : name;
    }
  }
  if (cuda == nullptr) return false;
  if (host != nullptr) {
    throw py::value_error(std::string(cuda) + " is a CUDA array but " + host +
                          " is not: pass every array on the same device");
  }
  if (device != "auto" && device != "cuda") {
    throw py::value_error(std::string("device '") + device + "' was asked for, but " + cuda +
                          " is a CUDA array (device 'auto' follows the arrays)");
  }
  return true;
}

struct CudaArray {
  void* data = nullptr;
  int64_t rows = 0, cols = 0;
  py::object stream = py::none();  // the producer's stream (interface version 3), or None
};

static std::string cuda_describe(const py::dict& cai) {
  return std::string(py::str(cai["typestr"])) + " " + std::string(py::str(cai["shape"])) +
         (cai.contains("strides") && !cai["strides"].is_none() ? " strides " + std::string(py::str(cai["strides"])) : "");
}

// A 2-d C-contiguous CUDA array of one of `typestrs` (e.g. "<f4") and the expected shape (-1: any).
static CudaArray cuda_array(const py::object& obj, const char* name, std::initializer_list<const char*> typestrs,
                            const char* dtype, int64_t rows, int64_t cols, bool writable) {
  const py::dict cai = obj.attr("__cuda_array_interface__");
  const py::tuple shape = cai["shape"];
  const std::string typestr = py::str(cai["typestr"]);
  bool known = false;
  for (const char* t : typestrs) known = known || typestr == t;
  const int64_t item = known ? std::stoll(typestr.substr(2)) : 0;
  bool contiguous = true;
  if (known && shape.size() == 2 && cai.contains("strides") && !cai["strides"].is_none()) {
    const py::tuple strides = cai["strides"];
    contiguous = (shape[1].cast<int64_t>() <= 1 || strides[1].cast<int64_t>() == item) &&
                 (shape[0].cast<int64_t>() <= 1 || strides[0].cast<int64_t>() == item * shape[1].cast<int64_t>());
  }
  if (!known || shape.size() != 2 || !contiguous || (cai.contains("mask") && !cai["mask"].is_none())) {
    throw py::value_error(std::string(name) + " must be a 2-d C-contiguous " + dtype + " array (read in place, " +
                          "never copied), got CUDA " + cuda_describe(cai));
  }
  CudaArray a;
  a.rows = shape[0].cast<int64_t>();
  a.cols = shape[1].cast<int64_t>();
  if ((rows >= 0 && a.rows != rows) || (cols >= 0 && a.cols != cols)) {
    const auto dim = [](int64_t d) { return d < 0 ? std::string("any") : std::to_string(d); };
    throw py::value_error(std::string(name) + " has shape (" + std::to_string(a.rows) + ", " + std::to_string(a.cols) +
                          "), expected (" + dim(rows) + ", " + dim(cols) + ")");
  }
  const py::tuple data = cai["data"];
  if (writable && data[1].cast<bool>()) throw py::value_error(std::string(name) + " is a read-only CUDA array");
  a.data = reinterpret_cast<void*>(data[0].cast<std::uintptr_t>());
  a.stream = cai.contains("stream") ? py::object(cai["stream"]) : py::object(py::none());
  return a;
}

// The stream to run on: the caller's (an integer cudaStream_t value), else the first array's, else 0 (default).
static std::uintptr_t launch_stream(const py::object& stream, const CudaArray& first) {
  if (!stream.is_none()) return stream.cast<std::uintptr_t>();
  return first.stream.is_none() ? 0 : first.stream.cast<std::uintptr_t>();
}

static std::string host_device(const std::string& device) { return device == "auto" ? "cpu" : device; }

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

static py::tuple knn_graph(const py::object& points, int k, bool include_self, int threads,
                           const std::string& device, bool float32, bool index64) {
  if (on_cuda(points)) {
    throw py::value_error("points is a CUDA array: the kNN grid is built on the host, so pass host coordinates "
                          "(device='cuda' runs the search on the GPU)");
  }
  const Points pts = points.cast<Points>();
  check_shape(pts);
  const scp::Device dev = scp::parse_device(host_device(device));
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
static py::tuple topk_on_device(const py::object& query_obj, const py::object& ref_obj, int k,
                                const py::object& out_idx_obj, const py::object& out_sim_obj,
                                const py::object& stream) {
  if (out_idx_obj.is_none() || out_sim_obj.is_none()) {
    throw py::value_error("CUDA query and reference need CUDA outputs: pass out_indices and out_similarities");
  }
  const CudaArray q = cuda_array(query_obj, "query", {"<f4"}, "float32", -1, -1, false);
  const CudaArray r = cuda_array(ref_obj, "ref", {"<f4"}, "float32", -1, q.cols, false);
  const CudaArray oi = cuda_array(out_idx_obj, "out_indices", {"<i8"}, "int64", q.rows, k, true);
  const CudaArray os = cuda_array(out_sim_obj, "out_similarities", {"<f4"}, "float32", q.rows, k, true);
  const std::uintptr_t s = launch_stream(stream, q);
  {
    py::gil_scoped_release release;
    scp::topk_similarity_on_device(static_cast<const float*>(q.data), q.rows, static_cast<const float*>(r.data),
                                   r.rows, static_cast<int>(q.cols), k, static_cast<int64_t*>(oi.data),
                                   static_cast<float*>(os.data), s);
  }
  return py::make_tuple(out_idx_obj, out_sim_obj);
}

static py::tuple topk_similarity(const py::object& query_obj, const py::object& ref_obj, int k, int threads,
                                 const std::string& device, const py::object& out_idx_obj,
                                 const py::object& out_sim_obj, const py::object& stream) {
  if (cuda_arrays({{"query", query_obj}, {"ref", ref_obj}, {"out_indices", out_idx_obj},
                   {"out_similarities", out_sim_obj}}, device)) {
    return topk_on_device(query_obj, ref_obj, k, out_idx_obj, out_sim_obj, stream);
  }
  const scp::Device dev = scp::parse_device(host_device(device));
  if (!out_idx_obj.is_none() || !out_sim_obj.is_none()) {
    throw py::value_error("out_indices and out_similarities are for CUDA arrays; host calls return new arrays");
  }
  const Embedding query = query_obj.cast<Embedding>(), ref = ref_obj.cast<Embedding>();
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

static py::tuple gather_on_device(const py::object& idx_obj, const py::object& w_obj, const py::object& mean_obj,
                                  const py::object& sd_obj, bool variance, bool as_sd, const py::object& out_mean_obj,
                                  const py::object& out_var_obj, const py::object& stream) {
  if (out_mean_obj.is_none() || (variance && out_var_obj.is_none())) {
    throw py::value_error(std::string("CUDA inputs need CUDA outputs: pass out_mean") +
                          (variance ? " and out_var" : ""));
  }
  const CudaArray idx = cuda_array(idx_obj, "idx", {"<i8"}, "int64", -1, -1, false);
  const CudaArray w = cuda_array(w_obj, "w", {"<f4", "<f8"}, "float32 or float64", idx.rows, idx.cols, false);
  const bool w64 = std::string(py::str(w_obj.attr("__cuda_array_interface__")["typestr"])) == "<f8";
  const CudaArray mean = cuda_array(mean_obj, "mean", {"<f4"}, "float32", -1, -1, false);
  const int64_t n = idx.rows, m = mean.rows, p = mean.cols;
  const CudaArray sd = sd_obj.is_none() ? CudaArray{} : cuda_array(sd_obj, "sd", {"<f4"}, "float32", m, p, false);
  const CudaArray om = cuda_array(out_mean_obj, "out_mean", {"<f4"}, "float32", n, p, true);
  const CudaArray ov = variance ? cuda_array(out_var_obj, "out_var", {"<f4"}, "float32", n, p, true) : CudaArray{};
  const std::uintptr_t s = launch_stream(stream, idx);
  const int k = static_cast<int>(idx.cols);
  {
    py::gil_scoped_release release;
    const auto* ii = static_cast<const int64_t*>(idx.data);
    const auto* mu = static_cast<const float*>(mean.data);
    const auto* sg = static_cast<const float*>(sd.data);
    auto* o1 = static_cast<float*>(om.data);
    auto* o2 = static_cast<float*>(ov.data);
    if (w64) {
      scp::gather_mixture_on_device<double>(ii, static_cast<const double*>(w.data), n, k, mu, sg, m, p, o1, o2, as_sd,
                                            s);
    } else {
      scp::gather_mixture_on_device<float>(ii, static_cast<const float*>(w.data), n, k, mu, sg, m, p, o1, o2, as_sd,
                                           s);
    }
  }
  return py::make_tuple(out_mean_obj, variance ? out_var_obj : py::object(py::none()));
}

// Weighted mixture of the k profiles each row indexes: (out_mean n x p float32, out_var n x p float32 or None).
static py::tuple gather_mixture(const py::object& idx_obj, const py::object& w_obj, const py::object& mean_obj,
                                const py::object& sd_obj, int threads, const std::string& device, bool variance,
                                bool as_sd, const py::object& out_mean_obj, const py::object& out_var_obj,
                                const py::object& stream) {
  if (cuda_arrays({{"idx", idx_obj}, {"w", w_obj}, {"mean", mean_obj}, {"sd", sd_obj}, {"out_mean", out_mean_obj},
                   {"out_var", variance ? out_var_obj : py::object(py::none())}}, device)) {
    return gather_on_device(idx_obj, w_obj, mean_obj, sd_obj, variance, as_sd, out_mean_obj, out_var_obj, stream);
  }
  const scp::Device dev = scp::parse_device(host_device(device));
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
  m.attr("CUDA_KNN_MAX_K") = scp::kCudaKnnMaxK;
  m.def("knn_graph", &knn_graph, py::arg("points"), py::arg("k"), py::arg("include_self") = false,
        py::arg("threads") = 0, py::arg("device") = "cpu", py::arg("float32") = false, py::arg("index64") = false,
        "k-nearest-neighbour graph of n x 2 / n x 3 float64 points as CSR arrays (indptr, indices, distances);\n"
        "k (+1 with include_self, self first) entries per row sorted by distance, ties by index.\n"
        "threads=0 uses every hardware thread; the GIL is released while computing. device: 'cpu' the\n"
        "CPU kernel, 'cuda' the CUDA kernel (k <= CUDA_KNN_MAX_K; the grid is built on the host, so the points are\n"
        "host arrays either way).");
  m.def("radius_graph", &radius_graph, py::arg("points"), py::arg("radius"), py::arg("include_self") = false,
        py::arg("threads") = 0, py::arg("float32") = false, py::arg("index64") = false,
        "All pairs within `radius` (inclusive) as CSR arrays (indptr, indices, distances), rows sorted by distance.");
  m.def("topk_isa", &scp::topk_isa, "CPU instruction set of the top-k kernel: 'avx512', 'avx2' or 'portable'");
  m.def("topk_similarity", &topk_similarity, py::arg("query"), py::arg("ref"), py::arg("k"), py::arg("threads") = 0,
        py::arg("device") = "auto", py::arg("out_indices") = py::none(), py::arg("out_similarities") = py::none(),
        py::arg("stream") = py::none(),
        "For every query row the k reference rows with the largest dot product (cosine for L2-normalised rows),\n"
        "computed in query x reference blocks without the full similarity matrix. Returns (indices int64 nq x k,\n"
        "similarities float32 nq x k), rows sorted by similarity (descending), ties by index; GIL released.\n"
        "device 'cuda' runs the CUDA twin (same results bit for bit: every score is fma(q[d], r[d], s) over d in order).\n"
        "Arrays already on a GPU (objects with __cuda_array_interface__, e.g. torch CUDA tensors) run the CUDA twin in\n"
        "place, with no copy to or from the host: then out_indices (int64) and out_similarities (float32), nq x k\n"
        "CUDA arrays on the same GPU, receive the results and are returned; stream: the cudaStream_t (an integer) to\n"
        "run on, default the query's interface stream or the default stream. device 'auto' follows the arrays;\n"
        "mixing host and CUDA arrays, or device 'cpu' with CUDA arrays, is a ValueError.");
  m.def("gather_mixture", &gather_mixture, py::arg("idx"), py::arg("w"), py::arg("mean"), py::arg("sd") = py::none(),
        py::arg("threads") = 0, py::arg("device") = "auto", py::arg("variance") = true,
        py::arg("as_sd") = false, py::arg("out_mean") = py::none(), py::arg("out_var") = py::none(),
        py::arg("stream") = py::none(),
        "Mixture of the k Gaussians each row indexes: idx (n x k int64), w (n x k float32 or float64, used as given,\n"
        "rows need not sum to 1), mean and sd (m x p float32, sd optional: variance 0), all 2-d C-contiguous and\n"
        "read in place. Returns (out_mean, out_var), n x p float32: mean = sum_j w_j mu_j, var = max(0, sum_j w_j\n"
        "(sd_j^2 + mu_j^2) - mean^2), summed in float64 over j in order (equal to scipy's CSR @ float64 product and\n"
        "to the CUDA twin bit for bit); out_var is None with variance=False. as_sd=True: the SD instead of the\n"
        "variance (square root taken in float64 before rounding, as mapping's former mixture()). out_mean, out_var:\n"
        "optional preallocated C-contiguous float32 n x p outputs (e.g. row slices of a larger array). An index\n"
        "outside [0, m) raises IndexError before anything is computed; the GIL is released while computing.\n"
        "Arrays already on a GPU (__cuda_array_interface__, e.g. torch CUDA tensors) run the CUDA twin in place: then\n"
        "out_mean (and out_var unless variance=False) must be given as CUDA arrays on the same GPU, and stream is as\n"
        "in topk_similarity. device 'auto' follows the arrays; mixing host and CUDA arrays is a ValueError.");
}
