// The Python module `blocklab` (the contract's section 7; docs/python.md): pybind11 bindings over the engine
// (engine/model.h: Model<T>, its hooks and activation gradients) and io (model files). An edge, as the CLI and
// the server are: it turns Python arguments into the engine's inputs, the engine's errors into ValueError with the
// CLI's one-line messages, and keeps the engine free of Python.
//
// Threads: the engine runs with the GIL released; a hook reacquires it to call back into Python. A model keeps
// the activations of its last forward, so one call at a time runs on a model (a mutex, waited for without the
// GIL); a hook that calls the model it hooks is refused (ValueError) instead of deadlocking.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "engine/blas.h"
#include "engine/model.h"
#include "io/gpt2.h"
#include "io/model_file.h"
#include "io/safetensors.h"
#include "text/gpt2_tokenizer.h"

namespace py = pybind11;

namespace blocklab::python {

namespace {

[[noreturn]] void fail(const std::string& message) { throw py::value_error(message); }
void check(const Status& st) {
  if (!st.is_ok()) fail(st.message());
}

std::string type_name(py::handle h) { return py::str(py::type::handle_of(h).attr("__name__")); }

// repr(h) on one line, at most 60 characters: for messages.
std::string short_repr(py::handle h) {
  std::string r = py::str(py::repr(h));
  for (char& c : r)
    if (c == '\n' || c == '\r') c = ' ';
  return r.size() > 60 ? r.substr(0, 57) + "..." : r;
}

Shape shape_of(const py::array& a) { return Shape(a.shape(), a.shape() + a.ndim()); }

std::string dtype_str(const py::array& a) { return py::str(a.dtype()); }

// A NumPy array of `shape` holding a copy of `src`: numpy allocates, one memcpy fills it (no other copy).
template <typename T>
py::array_t<T> to_numpy(const T* src, const Shape& shape) {
  py::array_t<T> out(std::vector<py::ssize_t>(shape.begin(), shape.end()));
  const int64_t n = numel_of(shape);
  if (n > 0) std::memcpy(out.mutable_data(), src, size_t(n) * sizeof(T));
  return out;
}

Shape drop_batch(Shape s, bool batched) {
  if (!batched && !s.empty()) s.erase(s.begin());
  return s;
}

// Any array-like as a NumPy array (lists too); ValueError for None and what NumPy cannot read.
py::array as_array(py::handle h, const std::string& what) {
  if (h.is_none()) fail(what + ": expected an array, got None");
  py::array a = py::array::ensure(h);
  if (!a) fail(what + ": expected an array (NumPy or nested lists of numbers), got " + type_name(h));
  return a;
}

template <typename T>
using FloatArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

// What one forward keeps: the activations (every block's, the attention maps quadratic in T). A bound here turns
// a huge input into a ValueError instead of an allocation that takes the machine's memory.
constexpr double kMaxActivationBytes = 16.0 * (1ull << 30);

template <typename T>
void check_size(const ModelConfig& c, int64_t batch, int64_t seq_len, const std::string& what) {
  const double rows = double(batch) * double(seq_len);
  const double per_layer = rows * double(16 * c.d_model + 3 * c.d_ff) + 3.0 * double(batch) * double(c.n_heads) *
                                                                        double(seq_len) * double(seq_len);
  double total = per_layer * double(c.n_layers) + rows * 3.0 * double(c.vocab_size.value_or(0));
  total *= double(sizeof(T));
  if (total > kMaxActivationBytes)
    fail(what + ": a forward on [B = " + std::to_string(batch) + ", T = " + std::to_string(seq_len) +
         "] would keep about " + std::to_string(int64_t(total / double(1ull << 30))) +
         " GiB of activations, expected at most 16 GiB (fewer tokens per call)");
}

// An activation input: float [B, T, d] or [T, d]; as the CLI's read_stack_input, with `what` for the file's name.
// C-contiguous arrays of the model's dtype are used as they are (no copy); others are converted once.
template <typename T>
struct StackIn {
  FloatArray<T> x;
  Shape shape;
  int64_t batch = 0, seq_len = 0;
  bool batched = true;
};

template <typename T>
StackIn<T> read_stack(py::handle h, const std::string& what, const ModelConfig& cfg, const Shape* like = nullptr,
                      const std::string& like_name = "") {
  py::array a = as_array(h, what);
  const std::string d = std::to_string(cfg.d_model);
  const std::string expected = "[B, T, " + d + "] or [T, " + d + "]";
  const char kind = a.dtype().kind();
  if (kind != 'f')
    fail(what + ": expected a float array " + expected + ", got dtype " + dtype_str(a) +
         (kind == 'i' || kind == 'u'
              ? (cfg.is_language_model() ? std::string()
                                         : " (token ids need a language model: vocab_size set)")
              : std::string()));
  const Shape s = shape_of(a);
  if (like && s != *like) fail(what + ": expected shape " + shape_str(*like) + " (as " + like_name + "), got " + shape_str(s));
  if (s.size() != 2 && s.size() != 3) fail(what + ": expected shape " + expected + ", got " + shape_str(s));
  if (s.back() != cfg.d_model) fail(what + ": expected last dimension d_model = " + d + ", got " + shape_str(s));
  StackIn<T> in;
  in.shape = s;
  in.batched = s.size() == 3;
  in.batch = in.batched ? s[0] : 1;
  in.seq_len = in.batched ? s[1] : s[0];
  if (in.batch < 1 || in.seq_len < 1) fail(what + ": expected at least one token, got shape " + shape_str(s));
  check_size<T>(cfg, in.batch, in.seq_len, what);  // before converting: a broadcast view may be huge
  in.x = FloatArray<T>::ensure(a);
  if (!in.x) fail(what + ": expected a float array " + expected + ", got dtype " + dtype_str(a));
  return in;
}

// Token ids for a language model: integer [B, T] or [T], each in 0..vocab-1.
struct TokenIn {
  std::vector<int32_t> ids;
  Shape shape;
  int64_t batch = 0, seq_len = 0;
  bool batched = true;
};

template <typename T>
TokenIn read_tokens(py::handle h, const std::string& what, const ModelConfig& cfg, const Shape* like = nullptr) {
  py::array a = as_array(h, what);
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u') fail(what + ": expected integer ids [B, T] or [T], got dtype " + dtype_str(a));
  const Shape s = shape_of(a);
  if (like && s != *like) fail(what + ": expected shape " + shape_str(*like) + " (as tokens), got " + shape_str(s));
  if (s.size() != 1 && s.size() != 2) fail(what + ": expected shape [B, T] or [T], got " + shape_str(s));
  TokenIn in;
  in.shape = s;
  in.batched = s.size() == 2;
  in.batch = in.batched ? s[0] : 1;
  in.seq_len = s.back();
  if (in.batch < 1 || in.seq_len < 1) fail(what + ": expected at least one token, got shape " + shape_str(s));
  check_size<T>(cfg, in.batch, in.seq_len, what);  // before converting: a broadcast view may be huge
  const int64_t V = *cfg.vocab_size;
  const int64_t n = in.batch * in.seq_len;
  in.ids.resize(size_t(n));
  auto take = [&](auto* p) {
    for (int64_t i = 0; i < n; ++i) {
      const auto v = p[i];
      if (v < 0 || uint64_t(v) >= uint64_t(V))
        fail(what + "[" + std::to_string(i) + "]: expected an id in 0.." + std::to_string(V - 1) + ", got " +
             std::to_string(v));
      in.ids[size_t(i)] = int32_t(v);
    }
  };
  if (kind == 'u') {
    auto u = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>::ensure(a);
    take(u.data());
  } else {
    auto i64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
    take(i64.data());
  }
  return in;
}

// The CLI's check of a hook name (cli_common.cpp), with `flag` naming the Python argument.
void check_hook_name(const std::string& flag, const std::string& name, const std::set<std::string>& known,
                     bool allow_norm_internal) {
  if (!known.count(name))
    fail(flag + " " + name + ": expected an activation name of this model (docs/trace.md; m.hook_names() "
         "lists them), got \"" + name + "\"");
  if (!allow_norm_internal && hook_is_norm_internal(name))
    fail(flag + " " + name + ": computed inside its norm, it cannot be patched or differentiated; expected an "
         "activation such as " + name.substr(0, name.rfind('.') + 1) + "hook_out");
}

// What a call asks of the forward's hook points: the user's hooks (name -> callables, in the order given), the
// names to cache, the gradients to keep. Lives on the calling thread's stack with the GIL held; the engine's
// Hooks refer to it by pointer and the hook callback takes the GIL before touching it.
struct Plan {
  std::map<std::string, std::vector<py::object>> fns;
  std::set<std::string> cache_names;
  std::vector<std::string> wrt;
  bool batched = true;
  py::dict cache;
  std::exception_ptr error;  // a user hook's own exception, raised again after the forward
  bool active() const { return !fns.empty() || !cache_names.empty(); }
  bool any() const { return active() || !wrt.empty(); }
};

// Sets the plan's hooks on the model, or none: without hooks the engine runs exactly as it does for the CLI.
template <typename T>
Hooks<T> engine_hooks(Plan* plan);
template <typename T>
void install(Model<T>& m, Plan& plan) {
  if (!plan.any()) {
    m.clear_hooks();
    return;
  }
  check(m.set_hooks(engine_hooks<T>(&plan)));
}

// fwd_hooks: [(name or predicate, fn), ...].
void add_fwd_hooks(Plan& plan, py::handle fwd_hooks, const std::vector<std::string>& names) {
  if (fwd_hooks.is_none()) return;
  const std::set<std::string> known(names.begin(), names.end());
  if (py::isinstance<py::str>(fwd_hooks) || !py::isinstance<py::iterable>(fwd_hooks))
    fail("fwd_hooks: expected a list of (name, fn) pairs, got " + type_name(fwd_hooks));
  int64_t i = 0;
  for (py::handle item : fwd_hooks) {
    const std::string where = "fwd_hooks[" + std::to_string(i++) + "]";
    if (!py::isinstance<py::sequence>(item) || py::isinstance<py::str>(item) || py::len(item) != 2)
      fail(where + ": expected a (name, fn) pair, got " + type_name(item));
    py::sequence pair = py::reinterpret_borrow<py::sequence>(item);
    py::object key = pair[0], fn = pair[1];
    if (!PyCallable_Check(fn.ptr())) fail(where + ": expected fn callable, got " + type_name(fn));
    if (py::isinstance<py::str>(key)) {
      const std::string name = key.cast<std::string>();
      check_hook_name("fwd_hooks", name, known, /*allow_norm_internal=*/true);  // reading them is allowed
      plan.fns[name].push_back(fn);
    } else if (PyCallable_Check(key.ptr())) {
      for (const std::string& name : names)
        if (py::bool_(key(name))) plan.fns[name].push_back(fn);
    } else {
      fail(where + ": expected a hook name (str) or a predicate on names, got " + type_name(key));
    }
  }
}

// names_filter: None (every name), a name, a list of names, or a predicate.
void add_cache_names(Plan& plan, py::handle filter, const std::vector<std::string>& names) {
  const std::set<std::string> known(names.begin(), names.end());
  if (filter.is_none()) {
    plan.cache_names = known;
  } else if (py::isinstance<py::str>(filter)) {
    const std::string name = filter.cast<std::string>();
    check_hook_name("names_filter", name, known, true);
    plan.cache_names.insert(name);
  } else if (PyCallable_Check(filter.ptr())) {
    for (const std::string& name : names)
      if (py::bool_(filter(name))) plan.cache_names.insert(name);
  } else if (py::isinstance<py::iterable>(filter)) {
    for (py::handle item : filter) {
      if (!py::isinstance<py::str>(item)) fail("names_filter: expected names (str), got a " + type_name(item));
      const std::string name = item.cast<std::string>();
      check_hook_name("names_filter", name, known, true);
      plan.cache_names.insert(name);
    }
  } else {
    fail("names_filter: expected None, a list of names or a predicate, got " + type_name(filter));
  }
}

void add_wrt(Plan& plan, py::handle wrt, const std::vector<std::string>& names) {
  if (wrt.is_none()) return;
  const std::set<std::string> known(names.begin(), names.end());
  std::vector<std::string> list;
  if (py::isinstance<py::str>(wrt)) {
    list.push_back(wrt.cast<std::string>());
  } else if (py::isinstance<py::iterable>(wrt)) {
    for (py::handle item : wrt) {
      if (!py::isinstance<py::str>(item)) fail("wrt: expected activation names (str), got a " + type_name(item));
      list.push_back(item.cast<std::string>());
    }
  } else {
    fail("wrt: expected a list of activation names, got " + type_name(wrt));
  }
  for (const std::string& name : list) {
    check_hook_name("wrt", name, known, /*allow_norm_internal=*/false);
    if (std::find(plan.wrt.begin(), plan.wrt.end(), name) == plan.wrt.end()) plan.wrt.push_back(name);
  }
}

// The engine's Hooks for a plan. The callback runs on the engine's thread without the GIL: it takes it, hands each
// user hook a fresh NumPy copy of the value (shaped as the caller's input: no batch axis when it had none), and
// writes back what the hook returned, or the copy itself when it returned None (changed in place).
template <typename T>
Hooks<T> engine_hooks(Plan* plan) {
  Hooks<T> hooks;
  hooks.grad_names = plan->wrt;
  if (!plan->active()) return hooks;
  hooks.wants = [plan](const std::string& n) { return plan->fns.count(n) > 0 || plan->cache_names.count(n) > 0; };
  hooks.fn = [plan](HookPoint<T>& p) -> Status {
    py::gil_scoped_acquire gil;
    const Shape shape = drop_batch(p.shape, plan->batched);
    const int64_t n = numel_of(p.shape);
    try {
      if (auto it = plan->fns.find(p.name); it != plan->fns.end()) {
        for (py::object& fn : it->second) {
          py::array_t<T> value = to_numpy(p.data, shape);
          py::object ret = fn(value, p.name);
          if (ret.is_none()) {
            std::memcpy(p.data, value.data(), size_t(n) * sizeof(T));
            continue;
          }
          py::array ra = py::array::ensure(ret);
          if (!ra || (ra.dtype().kind() != 'f' && ra.dtype().kind() != 'i' && ra.dtype().kind() != 'u' &&
                      ra.dtype().kind() != 'b'))
            return Status::error("fwd_hooks " + p.name + ": expected the hook to return None or an array of shape " +
                                 shape_str(shape) + ", got " + (ra ? "dtype " + dtype_str(ra) : type_name(ret)));
          if (shape_of(ra) != shape)
            return Status::error("fwd_hooks " + p.name + ": expected the hook to return shape " + shape_str(shape) +
                                 " (the activation's), got " + shape_str(shape_of(ra)));
          FloatArray<T> v = FloatArray<T>::ensure(ra);
          if (!v) return Status::error("fwd_hooks " + p.name + ": could not convert the returned array to the model's dtype");
          std::memcpy(p.data, v.data(), size_t(n) * sizeof(T));
        }
      }
      if (plan->cache_names.count(p.name)) plan->cache[py::str(p.name)] = to_numpy(p.data, shape);
    } catch (py::error_already_set&) {
      plan->error = std::current_exception();
      return Status::error("fwd_hooks " + p.name + ": the hook raised an exception");
    } catch (const std::exception& e) {
      return Status::error("fwd_hooks " + p.name + ": " + e.what());
    }
    return Status::ok();
  };
  return hooks;
}

template <typename T>
py::dict config_dict(const Model<T>& m) {
  return py::module_::import("json").attr("loads")(io::config_to_json(m.config()).dump());
}

}  // namespace

// A loaded model: float32 or float64, one call at a time.
class PyModel {
 public:
  std::unique_ptr<Model<float>> f32;
  std::unique_ptr<Model<double>> f64;
  std::string path;
  std::map<std::string, std::string> metadata;  // the file's __metadata__, as loaded
  std::mutex mu;
  std::atomic<std::thread::id> owner{};

  template <typename F>
  decltype(auto) with(F&& f) {
    if (f32) return f(*f32);
    return f(*f64);
  }
};

namespace {

// Holds a model's lock for one call. Taken with the GIL held; waits for the lock without it.
class Busy {
 public:
  explicit Busy(PyModel& m) : m_(m) {
    if (m.owner.load() == std::this_thread::get_id())
      fail("model: called from inside one of its own hooks; expected a hook to compute with NumPy (or with another "
           "blocklab.load of the file)");
    {
      py::gil_scoped_release nogil;
      m.mu.lock();
    }
    m.owner.store(std::this_thread::get_id());
  }
  ~Busy() {
    m_.owner.store(std::thread::id());
    m_.mu.unlock();
  }
  Busy(const Busy&) = delete;
  Busy& operator=(const Busy&) = delete;

 private:
  PyModel& m_;
};

// Turns the hooks off whatever way the call ends.
template <typename T>
struct HooksOff {
  Model<T>& m;
  ~HooksOff() { m.clear_hooks(); }
};

// After a forward or backward that failed: the user hook's own exception if one raised, else the engine's line.
void raise_run_error(const Plan& plan, const Status& st, const std::string& what) {
  if (plan.error) std::rethrow_exception(plan.error);
  if (!st.is_ok()) fail(st.with_context(what).message());
}

bool is_token_input(const ModelConfig& cfg, py::handle x) {
  if (!cfg.is_language_model() || x.is_none()) return false;
  py::array a = py::array::ensure(x);
  if (!a) return false;
  const char k = a.dtype().kind();
  return k == 'i' || k == 'u';
}

// One forward with the plan's hooks. Returns y (a stack) or the logits (a language model on tokens).
template <typename T>
py::object forward_impl(Model<T>& m, py::handle x, Plan& plan, py::handle fwd_hooks, py::handle names_filter,
                        bool cache) {
  const ModelConfig& cfg = m.config();
  const bool on_tokens = is_token_input(cfg, x);
  const std::vector<std::string> names = hook_names(cfg, on_tokens);
  add_fwd_hooks(plan, fwd_hooks, names);
  if (cache) add_cache_names(plan, names_filter, names);
  HooksOff<T> off{m};
  Status st;
  if (on_tokens) {
    TokenIn in = read_tokens<T>(x, "tokens", cfg);
    plan.batched = in.batched;
    install(m, plan);
    {
      py::gil_scoped_release nogil;
      st = m.forward_lm(in.ids.data(), nullptr, in.batch, in.seq_len);
    }
    raise_run_error(plan, st, "tokens");
    Shape shape = in.shape;
    shape.push_back(*cfg.vocab_size);
    return to_numpy(m.logits().ptr(), shape);
  }
  StackIn<T> in = read_stack<T>(x, "x", cfg);
  plan.batched = in.batched;
  install(m, plan);
  {
    py::gil_scoped_release nogil;
    st = m.forward(in.x.data(), in.batch, in.seq_len);
  }
  raise_run_error(plan, st, "x");
  return to_numpy(m.output().ptr(), in.shape);
}

// backward(x, dy) on a stack, loss = sum(y * dy); backward(tokens, targets) on a language model, loss = mean
// cross-entropy. Returns {"x" (a stack) or "loss" (a language model), "grad.<param>"..., <wrt name>...}.
template <typename T>
py::dict backward_impl(Model<T>& m, py::handle x, py::handle second, py::handle wrt, py::handle fwd_hooks) {
  const ModelConfig& cfg = m.config();
  const bool on_tokens = is_token_input(cfg, x);
  const std::vector<std::string> names = hook_names(cfg, on_tokens);
  Plan plan;
  add_fwd_hooks(plan, fwd_hooks, names);
  add_wrt(plan, wrt, names);
  HooksOff<T> off{m};
  py::dict out;
  Status st;
  if (on_tokens) {
    TokenIn tokens = read_tokens<T>(x, "tokens", cfg);
    TokenIn targets = read_tokens<T>(second, "targets", cfg, &tokens.shape);
    plan.batched = tokens.batched;
    install(m, plan);
    {
      py::gil_scoped_release nogil;
      st = m.forward_lm(tokens.ids.data(), targets.ids.data(), tokens.batch, tokens.seq_len);
      if (st.is_ok()) m.backward_lm(Model<T>::Grads::overwrite);
    }
    raise_run_error(plan, st, "tokens");
    out["loss"] = py::float_(m.loss());
  } else {
    StackIn<T> in = read_stack<T>(x, "x", cfg);
    StackIn<T> dy = read_stack<T>(second, "dy", cfg, &in.shape, "x");
    plan.batched = in.batched;
    install(m, plan);
    py::array_t<T> dx(std::vector<py::ssize_t>(in.shape.begin(), in.shape.end()));
    T* dx_ptr = dx.mutable_data();
    {
      py::gil_scoped_release nogil;
      st = m.forward(in.x.data(), in.batch, in.seq_len);
      if (st.is_ok()) m.backward(dy.x.data(), dx_ptr, Model<T>::Grads::overwrite);
    }
    raise_run_error(plan, st, "x");
    out["x"] = dx;
  }
  for (const ParamSpec& spec : m.layout().specs())
    out[py::str("grad." + spec.name)] = to_numpy(m.grads().data() + spec.offset, spec.shape);
  for (const std::string& name : plan.wrt) {
    const Tensor<T>* g = m.activation_grad(name);
    if (!g) fail("wrt " + name + ": this run does not compute it (hook_embed and hook_pos_embed need tokens)");
    out[py::str(name)] = to_numpy(g->ptr(), drop_batch(g->shape, plan.batched));
  }
  return out;
}

// "float32" / "float64" (or f32, f64, numpy's dtypes): true for float64; None: the file's.
std::optional<bool> parse_dtype(py::handle dtype) {
  if (dtype.is_none()) return std::nullopt;
  if (py::isinstance<py::str>(dtype)) {
    const std::string s = dtype.cast<std::string>();
    if (s == "f32") return false;
    if (s == "f64") return true;
  }
  try {
    py::dtype dt = py::dtype::from_args(py::reinterpret_borrow<py::object>(dtype));
    if (dt.is(py::dtype::of<float>()) || (dt.kind() == 'f' && dt.itemsize() == 4)) return false;
    if (dt.kind() == 'f' && dt.itemsize() == 8) return true;
  } catch (py::error_already_set&) {
  }
  fail("dtype: expected float32 or float64, got " + short_repr(dtype));
}

std::string fspath(py::handle path, const std::string& what) {
  if (path.is_none()) fail(what + ": expected a file path, got None");
  try {
    py::object p = py::module_::import("os").attr("fspath")(path);
    if (!py::isinstance<py::str>(p)) fail(what + ": expected a file path (str), got bytes");
    return p.cast<std::string>();
  } catch (py::error_already_set&) {
    fail(what + ": expected a file path (str or os.PathLike), got " + type_name(path));
  }
}

// The loaded model into pm (f32 or f64), or its error into `error`.
template <typename T>
void adopt(PyModel& pm, Result<Model<T>> m, std::string& error) {
  if (!m) {
    error = m.status().message();
  } else if constexpr (std::is_same_v<T, double>) {
    pm.f64 = std::make_unique<Model<double>>(std::move(m.value()));
  } else {
    pm.f32 = std::make_unique<Model<float>>(std::move(m.value()));
  }
}

std::unique_ptr<PyModel> load(py::handle path_arg, py::handle dtype_arg) {
  const std::string path = fspath(path_arg, "path");
  const std::optional<bool> want_f64 = parse_dtype(dtype_arg);
  auto pm = std::make_unique<PyModel>();
  pm->path = path;
  std::string error;
  {
    py::gil_scoped_release nogil;
    if (io::is_model_folder(path)) {  // a GPT-2 checkpoint (docs/gpt2.md): float32 unless dtype asks float64
      if (want_f64.value_or(false)) adopt(*pm, io::load_gpt2<double>(path), error);
      else adopt(*pm, io::load_gpt2<float>(path), error);
    } else if (Result<io::SafetensorsFile> file = io::read_safetensors(path); !file) {
      error = file.status().message();
    } else {
      pm->metadata = file->metadata;
      bool f64 = false;
      if (want_f64) {
        f64 = *want_f64;
      } else {  // the file's precision: F64 when its parameters are
        for (const io::StoredTensor& t : file->tensors)
          if (!t.name.starts_with(io::kOptimizerPrefix) && t.dtype == io::DType::F64) f64 = true;
      }
      if (f64) adopt(*pm, io::model_from_safetensors<double>(file.value(), path), error);
      else adopt(*pm, io::model_from_safetensors<float>(file.value(), path), error);
    }
  }
  if (!error.empty()) fail(error);
  return pm;
}

template <typename T>
void set_param_impl(Model<T>& m, const std::string& name, py::handle value) {
  const ParamSpec* spec = m.layout().find(name);
  if (!spec) fail("set_param " + name + ": expected a parameter name of this model (m.params lists them), got \"" + name + "\"");
  py::array a = as_array(value, "set_param " + name);
  const char kind = a.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u')
    fail("set_param " + name + ": expected a float array, got dtype " + dtype_str(a));
  if (shape_of(a) != spec->shape)
    fail("set_param " + name + ": expected shape " + shape_str(spec->shape) + ", got " + shape_str(shape_of(a)));
  FloatArray<T> v = FloatArray<T>::ensure(a);
  if (!v) fail("set_param " + name + ": could not convert dtype " + dtype_str(a) + " to the model's");
  std::memcpy(m.params().data() + spec->offset, v.data(), size_t(spec->numel()) * sizeof(T));
}


// ---- save_torch: a PyTorch nn.TransformerEncoder (or one TransformerEncoderLayer) as a model file ----

// The attribute `name` of `obj`, or a ValueError naming what is missing.
py::object attr_of(py::handle obj, const char* name, const std::string& where) {
  if (!py::hasattr(obj, name))
    fail("save_torch: " + where + ": expected an attribute '" + name + "' (an nn.TransformerEncoder or "
         "nn.TransformerEncoderLayer), got a " + type_name(obj) + " without it");
  return obj.attr(name);
}

// The config keys a PyTorch encoder layer fixes: sizes, placement, activation, eps, dropout.
nlohmann::json torch_layer_config(py::handle layer) {
  py::object attn = attr_of(layer, "self_attn", "layers[0]");
  nlohmann::json c;
  c["d_model"] = attr_of(attn, "embed_dim", "layers[0].self_attn").cast<int64_t>();
  c["n_heads"] = attr_of(attn, "num_heads", "layers[0].self_attn").cast<int64_t>();
  c["d_ff"] = attr_of(attr_of(layer, "linear1", "layers[0]"), "out_features", "layers[0].linear1").cast<int64_t>();
  c["placement"] = attr_of(layer, "norm_first", "layers[0]").cast<bool>() ? "pre" : "post";
  c["eps"] = attr_of(attr_of(layer, "norm1", "layers[0]"), "eps", "layers[0].norm1").cast<double>();
  c["dropout"] = attr_of(attr_of(layer, "dropout", "layers[0]"), "p", "layers[0].dropout").cast<double>();
  // The activation: a module (nn.ReLU, nn.GELU with its `approximate`) or a function (F.relu, F.gelu).
  py::object act = attr_of(layer, "activation", "layers[0]");
  std::string name = py::hasattr(act, "__name__") ? py::str(act.attr("__name__")).cast<std::string>() : type_name(act);
  std::string approximate = py::hasattr(act, "approximate") ? py::str(act.attr("approximate")).cast<std::string>() : "none";
  if ((name == "relu" || name == "ReLU") && approximate == "none") c["activation"] = "relu";
  else if ((name == "gelu" || name == "GELU") && approximate == "none") c["activation"] = "gelu";
  else if ((name == "gelu" || name == "GELU") && approximate == "tanh") c["activation"] = "gelu_tanh";
  else
    fail("save_torch: layers[0].activation: expected relu, gelu or GELU(approximate='tanh'), got " + name +
         (approximate != "none" ? " (approximate='" + approximate + "')" : ""));
  return c;
}

// Writes `module` (nn.TransformerEncoder, or one nn.TransformerEncoderLayer saved as a 1-layer stack) to `path`
// as a model file: its state_dict under the contract's names and the config read off the module, with
// `config`'s keys over it (causal, residual_alpha, ...: what a module does not say). Every tensor is checked
// against the config's layout (a missing, extra or misshapen one is an error naming it).
void save_torch(py::object module, const std::string& path, py::object config, py::object dtype) {
  const bool stack = py::hasattr(module, "layers");
  py::object first = stack ? py::object(attr_of(module, "layers", "module")[py::int_(0)]) : module;
  nlohmann::json c = torch_layer_config(first);
  c["n_layers"] = stack ? int64_t(py::len(module.attr("layers"))) : int64_t(1);
  c["final_norm"] = stack && py::hasattr(module, "norm") && !module.attr("norm").is_none();
  c["norm"] = "layernorm";
  if (!config.is_none()) {
    if (!py::isinstance<py::dict>(config)) fail("save_torch: config: expected a dict of config keys, got " + type_name(config));
    const nlohmann::json extra = nlohmann::json::parse(py::module_::import("json").attr("dumps")(config).cast<std::string>());
    for (auto it = extra.begin(); it != extra.end(); ++it) c[it.key()] = it.value();
  }
  Result<ModelConfig> mc = io::config_from_json(c);
  if (!mc) fail("save_torch: " + mc.status().message());
  Result<Model<float>> model = Model<float>::create(mc.value());
  if (!model) fail("save_torch: " + model.status().message());
  py::dict state = attr_of(module, "state_dict", "module")();
  std::set<std::string> seen;
  for (auto item : state) {
    std::string name = py::str(item.first);
    if (!stack) name = "layers.0." + name;
    py::object value = py::reinterpret_borrow<py::object>(item.second);
    if (py::hasattr(value, "detach")) value = value.attr("detach")().attr("cpu")().attr("numpy")();  // a torch.Tensor
    if (!model->layout().find(name))
      fail("save_torch: state_dict has '" + name + "', which a model of config " + io::config_to_json(mc.value()).dump() +
           " does not (expected PyTorch's nn.TransformerEncoder names)");
    set_param_impl(model.value(), name, value);
    seen.insert(name);
  }
  for (const ParamSpec& spec : model->layout().specs())
    if (!seen.count(spec.name)) fail("save_torch: state_dict: expected a tensor '" + spec.name + "', got none");
  bool f64 = false;
  if (!dtype.is_none()) {
    const std::string d = py::str(py::dtype::from_args(dtype));
    if (d != "float32" && d != "float64") fail("save_torch: dtype: expected float32 or float64, got " + d);
    f64 = d == "float64";
  }
  Status st;
  {
    py::gil_scoped_release release;
    st = io::save_model(path, model.value(), f64 ? io::DType::F64 : io::DType::F32);
  }
  if (!st) fail(st.message());
}

// GPT-2's tokenizer (text/gpt2_tokenizer.h): text as str (or UTF-8 bytes), ids as any sequence of integers.
std::string text_bytes(py::handle text) {
  if (py::isinstance<py::bytes>(text)) return text.cast<std::string>();
  if (!py::isinstance<py::str>(text)) fail("text: expected str or bytes, got " + type_name(text));
  Py_ssize_t n = 0;
  const char* utf8 = PyUnicode_AsUTF8AndSize(text.ptr(), &n);  // fails on a lone surrogate, as encoder.py does
  if (utf8 == nullptr) {
    PyErr_Clear();
    fail("text: expected a str that is Unicode text, got one with a lone surrogate (not encodable as UTF-8)");
  }
  return std::string(utf8, size_t(n));
}

std::vector<int32_t> token_ids(py::handle ids) {
  if (py::isinstance<py::str>(ids) || py::isinstance<py::bytes>(ids) || !py::hasattr(ids, "__iter__"))
    fail("ids: expected a sequence of token ids, got " + type_name(ids));
  std::vector<int32_t> out;
  for (py::handle v : ids) {
    const std::string where = "ids[" + std::to_string(out.size()) + "]";
    // operator.index: Python's and NumPy's integers, not bool, float or str
    PyObject* index = py::isinstance<py::bool_>(v) ? nullptr : PyNumber_Index(v.ptr());
    if (index == nullptr) {
      PyErr_Clear();
      fail(where + ": expected an integer token id, got " + short_repr(v));
    }
    const py::object owned = py::reinterpret_steal<py::object>(index);
    int overflow = 0;
    const long long id = PyLong_AsLongLongAndOverflow(index, &overflow);
    if (overflow != 0 || id < 0 || id > std::numeric_limits<int32_t>::max())
      fail(where + ": expected a token id (0 or more), got " + short_repr(v));
    out.push_back(int32_t(id));
  }
  return out;
}

}  // namespace

}  // namespace blocklab::python

PYBIND11_MODULE(blocklab, mod) {
  using namespace blocklab;
  using namespace blocklab::python;
  // BLOCKLAB_GEMM / BLOCKLAB_BF16 holding a value neither names: refused at import, as the CLI refuses to start
  if (const std::string bad = gemm_environment_error(); !bad.empty()) throw py::import_error(bad);
  mod.doc() = "BlockLab's engine from Python: load a model, run it, cache, patch and ablate activations, and take "
              "gradients of parameters and activations (docs/python.md).";

  py::class_<PyModel>(mod, "Model", "A BlockLab model (float32 or float64). Made by blocklab.load(path).")
      .def_property_readonly("config", [](PyModel& pm) { return pm.with([](auto& m) { return config_dict(m); }); },
                             "the model's config: a dict of the contract's keys (docs/model-format.md)")
      .def_property_readonly("dtype", [](PyModel& pm) { return pm.f32 ? py::dtype::of<float>() : py::dtype::of<double>(); },
                             "numpy.float32 or numpy.float64: what the model computes in, takes and returns")
      .def_property_readonly("path", [](PyModel& pm) { return pm.path; }, "the file it was loaded from")
      .def_property_readonly("metadata", [](PyModel& pm) { return pm.metadata; },
                             "the file's __metadata__ (str -> str) as loaded: blocklab.config, and a checkpoint's "
                             "blocklab.train (its alphabet, for the chars task)")
      .def(
          "hook_names",
          [](PyModel& pm, bool tokens) { return pm.with([&](auto& m) { return hook_names(m.config(), tokens); }); },
          py::arg("tokens") = false,
          "the activation names a forward visits, in data-flow order (tokens=True: a language model on tokens)")
      .def(
          "__call__",
          [](PyModel& pm, py::object x) {
            Busy busy(pm);
            return pm.with([&](auto& m) {
              Plan plan;
              return forward_impl(m, x, plan, py::none(), py::none(), false);
            });
          },
          py::arg("x"),
          "y = m(x): x float [B, T, d] or [T, d] -> y of x's shape; a language model on integer tokens [B, T] or [T] "
          "-> logits [B, T, V] or [T, V]")
      .def(
          "run_with_cache",
          [](PyModel& pm, py::object x, py::object names_filter, py::object fwd_hooks) {
            Busy busy(pm);
            return pm.with([&](auto& m) {
              Plan plan;
              py::object y = forward_impl(m, x, plan, fwd_hooks, names_filter, true);
              return py::make_tuple(y, plan.cache);
            });
          },
          py::arg("x"), py::arg("names_filter") = py::none(), py::arg("fwd_hooks") = py::none(),
          "(y, cache) = m.run_with_cache(x, names_filter=None): cache is a dict name -> array of every activation "
          "names_filter keeps (None: all; a list of names; a predicate name -> bool), as the model saw it (after "
          "any fwd_hooks)")
      .def(
          "run_with_hooks",
          [](PyModel& pm, py::object x, py::object fwd_hooks) {
            Busy busy(pm);
            return pm.with([&](auto& m) {
              Plan plan;
              return forward_impl(m, x, plan, fwd_hooks, py::none(), false);
            });
          },
          py::arg("x"), py::arg("fwd_hooks") = py::none(),
          "y = m.run_with_hooks(x, fwd_hooks=[(name, fn)]): fn(value, name) returns a new array (a patch) or None "
          "(keeps value, which it may have changed in place); name may also be a predicate on names")
      .def(
          "backward",
          [](PyModel& pm, py::object x, py::object dy, py::object wrt, py::object fwd_hooks, py::object targets) {
            // targets= names the second argument of a language model's backward; positional works too
            if (!targets.is_none() && !dy.is_none())
              fail("backward: expected dy (a stack) or targets (a language model), got both");
            py::object second = targets.is_none() ? dy : targets;
            Busy busy(pm);
            return pm.with([&](auto& m) { return backward_impl(m, x, second, wrt, fwd_hooks); });
          },
          py::arg("x"), py::arg("dy") = py::none(), py::arg("wrt") = py::none(), py::arg("fwd_hooks") = py::none(),
          py::arg("targets") = py::none(),
          "grads = m.backward(x, dy, wrt=None, fwd_hooks=None): loss = sum(y * dy); a dict with \"x\" (dLoss/dx), "
          "\"grad.<param>\" for every parameter and each activation name of wrt. A language model: "
          "m.backward(tokens, targets, ...) or m.backward(tokens, targets=targets, ...), loss = mean cross-entropy, \"loss\" instead of \"x\". With fwd_hooks "
          "the backward runs through the patched forward (a patched element is a constant there).")
      .def_property_readonly(
          "params",
          [](PyModel& pm) {
            Busy busy(pm);
            return pm.with([](auto& m) {
              py::dict out;
              for (const ParamSpec& spec : m.layout().specs())
                out[py::str(spec.name)] = to_numpy(m.params().data() + spec.offset, spec.shape);
              return out;
            });
          },
          "dict name -> array: a copy of every parameter (PyTorch names)")
      .def(
          "set_param",
          [](PyModel& pm, py::object name, py::object value) {
            if (!py::isinstance<py::str>(name)) fail("set_param: expected a parameter name (str), got " + type_name(name));
            Busy busy(pm);
            pm.with([&](auto& m) { set_param_impl(m, name.cast<std::string>(), value); });
          },
          py::arg("name"), py::arg("value"), "replaces parameter `name` with `value` (its exact shape; converted to the model's dtype)")
      .def(
          "save",
          [](PyModel& pm, py::object path_arg, py::object dtype_arg) {
            const std::string path = fspath(path_arg, "path");
            const std::optional<bool> f64 = parse_dtype(dtype_arg);
            Busy busy(pm);
            Status st;
            {
              py::gil_scoped_release nogil;
              pm.with([&](auto& m) {
                using T = typename std::decay_t<decltype(m.params())>::value_type;
                const bool as_f64 = f64 ? *f64 : std::is_same_v<T, double>;
                st = io::save_model(path, m, as_f64 ? io::DType::F64 : io::DType::F32);
              });
            }
            check(st);
          },
          py::arg("path"), py::arg("dtype") = py::none(),
          "writes the model file (section 1: PyTorch names, the config in __metadata__), in the model's dtype unless "
          "dtype says float32 or float64")
      .def("__repr__", [](PyModel& pm) {
        return pm.with([&](auto& m) {
          const ModelConfig& c = m.config();
          return "<blocklab.Model " + pm.path + ": " + std::to_string(c.n_layers) + " layers, d_model " +
                 std::to_string(c.d_model) + (c.vocab_size ? ", vocab " + std::to_string(*c.vocab_size) : "") + ", " +
                 (pm.f32 ? "float32" : "float64") + ">";
        });
      });

  using text::Gpt2Tokenizer;
  py::class_<Gpt2Tokenizer>(mod, "Tokenizer",
                            "GPT-2's byte-level BPE tokenizer, exactly as OpenAI's encoder.py (docs/gpt2.md). "
                            "blocklab.Tokenizer(folder): vocab.json + merges.txt, or encoder.json + vocab.bpe.")
      .def(py::init([](py::object path) {
             const std::string dir = fspath(path, "path");
             Result<Gpt2Tokenizer> t = [&] {
               py::gil_scoped_release nogil;
               return Gpt2Tokenizer::load(dir);
             }();
             check(t.status());
             return std::move(t).value();
           }),
           py::arg("path"))
      .def(
          "encode",
          [](const Gpt2Tokenizer& t, py::object text) {
            const std::string bytes = text_bytes(text);
            Result<std::vector<int32_t>> ids = [&] {
              py::gil_scoped_release nogil;
              return t.encode(bytes);
            }();
            check(ids.status().with_context("text"));
            return ids.value();
          },
          py::arg("text"),
          "the token ids of text (str, or bytes that are UTF-8): a list of int. \"<|endoftext|>\" in it is text, "
          "as in encoder.py")
      .def(
          "decode",
          [](const Gpt2Tokenizer& t, py::object ids) {
            Result<std::string> text = t.decode(token_ids(ids));
            check(text.status().with_context("ids"));
            return text.value();
          },
          py::arg("ids"), "the text of ids (str); bytes that are not UTF-8 become U+FFFD, as encoder.py's decode")
      .def(
          "decode_bytes",
          [](const Gpt2Tokenizer& t, py::object ids) {
            Result<std::string> bytes = t.decode_bytes(token_ids(ids));
            check(bytes.status().with_context("ids"));
            return py::bytes(bytes.value());
          },
          py::arg("ids"), "the bytes ids stand for (bytes): not UTF-8 where the ids cut a character")
      .def(
          "tokens",
          [](const Gpt2Tokenizer& t, py::object ids) {
            std::vector<std::string> out;
            for (int32_t id : token_ids(ids)) {
              check(t.decode_bytes(std::span<const int32_t>(&id, 1)).status().with_context("ids"));
              out.push_back(t.token(id));
            }
            return out;
          },
          py::arg("ids"), "each id's token as the vocabulary spells it: [\"Hello\", \"\u0120world\"]")
      .def(
          "pieces",
          [](const Gpt2Tokenizer& t, py::object ids) {
            std::vector<std::string> out;
            for (int32_t id : token_ids(ids)) {
              Result<std::string> piece = t.decode(std::span<const int32_t>(&id, 1));
              check(piece.status().with_context("ids"));
              out.push_back(piece.value());
            }
            return out;
          },
          py::arg("ids"), "each id's text: [\"Hello\", \" world\"]; U+FFFD for a token that is part of a character")
      .def_property_readonly("vocab_size", &Gpt2Tokenizer::vocab_size, "the number of tokens (50257 for GPT-2)")
      .def("__repr__", [](const Gpt2Tokenizer& t) {
        return "<blocklab.Tokenizer: " + std::to_string(t.vocab_size()) + " tokens, " + std::to_string(t.merge_count()) +
               " merges>";
      });

  mod.def("load", &load, py::arg("path"), py::arg("dtype") = py::none(),
          "blocklab.load(path, dtype=None) -> Model: a model file, or a GPT-2 folder (config.json + model.safetensors, "
          "docs/gpt2.md); float32, or float64 when the file's parameters are F64 or dtype=\"float64\"");
  mod.def("save_torch", &save_torch, py::arg("module"), py::arg("path"), py::arg("config") = py::none(),
          py::arg("dtype") = py::none(),
          "blocklab.save_torch(module, path, config=None, dtype=None): a PyTorch nn.TransformerEncoder (or one "
          "nn.TransformerEncoderLayer) as a model file, its config read off the module (sizes, norm_first, "
          "activation, eps, dropout, the final norm) with `config`'s keys over it (e.g. {\"causal\": True})");
  mod.def(
      "set_threads",
      [](py::object arg) {
        if (!py::isinstance<py::int_>(arg) || py::isinstance<py::bool_>(arg))
          fail("threads: expected an integer >= 1, got " + short_repr(arg));
        const long long n = arg.cast<long long>();
        if (n < 1 || n > 1024) fail("threads: expected an integer in 1..1024, got " + std::to_string(n));
        set_blas_threads(int(n));
      },
      py::arg("n"), "BLAS and kernel threads for every model (as the CLI's --threads; default: OMP_NUM_THREADS, else every core)");
  mod.def("get_threads", [] { return blas_threads(); }, "the BLAS and kernel threads");
  mod.attr("__version__") = BLOCKLAB_VERSION;
}
