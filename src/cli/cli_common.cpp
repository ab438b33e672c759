#include "cli/cli_common.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <type_traits>

#include "engine/blas.h"
#include "io/json_limits.h"
#include "io/model_file.h"
#include "lab/database.h"

namespace blocklab::cli {

int fail(const std::string& command, const std::string& message) {
  std::string line = message;
  for (char& c : line)
    if (c == '\n') c = ' ';
  std::cerr << "blocklab" << (command.empty() ? "" : " " + command) << ": " << line << std::endl;
  return kExitUsage;
}

int fail(const std::string& command, const Status& status) { return fail(command, status.message()); }

namespace {
std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }
}  // namespace

void install_stop_signals() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  signal(SIGXFSZ, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
}

int stop_signal() { return g_stop_signal.load(); }

void add_db_flag(CLI::App& app, std::string& db, const std::string& what, bool must_exist) {
  CLI::Option* o = app.add_option("--db", db, what + ": an SQLite file or a postgresql:// URL (default blocklab.db)");
  if (must_exist)
    o->check(CLI::Validator(
        [](std::string& v) { return lab::Database::is_url(v) ? std::string() : CLI::ExistingFile(v); }, "FILE|URL"));
}

void add_model_flags(CLI::App& app, ModelFlags& f, bool config_required) {
  f.app = &app;
  auto* config = app.add_option("--config", f.config_path, "model config JSON (the blocklab.config keys); flags win")
                     ->check(CLI::ExistingFile);
  if (config_required) config->required();
  app.add_option("--d-model", f.d_model, "model width (default 64)");
  app.add_option("--n-heads", f.n_heads, "attention heads, must divide d_model (default 4)");
  app.add_option("--d-ff", f.d_ff, "FFN hidden width (default 256)");
  app.add_option("--n-layers", f.n_layers, "number of blocks (default 2)");
  app.add_option("--norm", f.norm, "layernorm|rmsnorm|none (default layernorm)")
      ->check(CLI::IsMember({"layernorm", "rmsnorm", "none"}));
  app.add_option("--placement", f.placement, "pre|post (default pre)")->check(CLI::IsMember({"pre", "post"}));
  app.add_option("--activation", f.activation, "relu|gelu|gelu_tanh (default gelu)")
      ->check(CLI::IsMember({"relu", "gelu", "gelu_tanh"}));
  app.add_option("--residual", f.residual, "on|off (default on)")->check(CLI::IsMember({"on", "off"}));
  app.add_option("--alpha", f.alpha, "residual strength: y = x + alpha * f (default 1)");
  app.add_option("--alpha-learnable", f.alpha_learnable,
                 "on: alpha is a parameter per block starting at --alpha (ReZero with --alpha 0) (default off)")
      ->check(CLI::IsMember({"on", "off"}));
  app.add_option("--eps", f.eps, "norm epsilon (default 1e-5)");
  app.add_option("--final-norm", f.final_norm, "on|off (default off)")->check(CLI::IsMember({"on", "off"}));
  app.add_option("--causal", f.causal, "on|off (default off)")->check(CLI::IsMember({"on", "off"}));
  app.add_option("--dropout", f.dropout, "dropout probability, training only (default 0)");
  app.add_option("--vocab-size", f.vocab_size, "vocabulary size: makes a language model (embedding + head)");
  app.add_option("--max-seq-len", f.max_seq_len,
                 "language model: learned position embedding for up to this many tokens (default none; train "
                 "gives reverse, sort and chars one of --seq-len)");
}

Result<ModelConfig> resolve_model_config(const ModelFlags& f) {
  ModelConfig c;
  if (!f.config_path.empty()) {
    Result<ModelConfig> file = io::read_config_file(f.config_path);
    if (!file) return file.status();
    c = file.value();
  }
  auto given = [&](const char* flag) { return f.app->count(flag) > 0; };
  if (given("--d-model")) c.d_model = f.d_model;
  if (given("--n-heads")) c.n_heads = f.n_heads;
  if (given("--d-ff")) c.d_ff = f.d_ff;
  if (given("--n-layers")) c.n_layers = f.n_layers;
  if (given("--norm")) c.norm = *parse_norm(f.norm);
  if (given("--placement")) c.placement = *parse_placement(f.placement);
  if (given("--activation")) c.activation = *parse_activation(f.activation);
  if (given("--residual")) c.residual = f.residual == "on";
  if (given("--alpha")) c.residual_alpha = f.alpha;
  if (given("--alpha-learnable")) c.alpha_learnable = f.alpha_learnable == "on";
  if (given("--eps")) c.eps = f.eps;
  if (given("--final-norm")) c.final_norm = f.final_norm == "on";
  if (given("--causal")) c.causal = f.causal == "on";
  if (given("--dropout")) c.dropout = f.dropout;
  if (given("--vocab-size")) c.vocab_size = f.vocab_size;
  if (given("--max-seq-len")) c.max_seq_len = f.max_seq_len;
  BLOCKLAB_RETURN_IF_ERROR(validate(c));
  return c;
}

namespace {
const char* const kModelFlagNames[] = {"--config", "--d-model", "--n-heads", "--d-ff", "--n-layers", "--norm",
                                       "--placement", "--activation", "--residual", "--alpha", "--alpha-learnable", "--eps",
                                       "--final-norm", "--causal", "--dropout", "--vocab-size",
                                       "--max-seq-len"};
}  // namespace

std::vector<std::string> given_model_flags(const ModelFlags& f) {
  std::vector<std::string> out;
  for (const char* name : kModelFlagNames)
    if (f.app->count(name)) out.push_back(name);
  return out;
}

bool given_in_config_file(const ModelFlags& f, const std::string& key) {
  if (f.config_path.empty()) return false;
  std::ifstream in(f.config_path);
  std::stringstream text;
  text << in.rdbuf();
  const Result<nlohmann::json> j = io::parse_json_limited(text.str(), io::kMaxJsonDepth);  // read_config_file reports errors
  return j.is_ok() && j->is_object() && j->contains(key);
}

void add_dtype_flag(CLI::App& app, std::string& dtype) {
  app.add_option("--dtype", dtype, "compute and output precision: f32 (default) or f64 (for gradient checks)")
      ->check(CLI::IsMember({"f32", "f64"}));
}

}  // namespace blocklab::cli

namespace blocklab::cli {

void add_model_run_flags(CLI::App& app, ModelRunArgs& a, const std::string& input_holds, bool with_wrt) {
  app.add_option("--model", a.model, "model .safetensors, or a GPT-2 checkpoint folder (config.json + model.safetensors, docs/gpt2.md)")->required();
  app.add_option("--input", a.input, "input .safetensors holding " + input_holds)->required();
  app.add_option("--output", a.output, "output .safetensors to write")->required();
  app.add_option("--config", a.config, "config JSON to use instead of the file's (for models saved by PyTorch)");
  add_dtype_flag(app, a.dtype);
  app.add_option("--threads", a.threads, "BLAS and kernel threads (default 1)");
  app.add_option("--hook-patch", a.patches,
                 "NAME=FILE: replace activation NAME (docs/trace.md) with the tensor NAME (or the only tensor) of the "
                 ".safetensors FILE, shaped as the activation; repeatable");
  app.add_option("--ablate", a.ablations,
                 "NAME or NAME:HEAD: zero activation NAME, or one head's slice of an attention activation "
                 "(attn.hook_q/k/v/z/result, hook_scores, hook_pattern); repeatable");
  if (with_wrt)
    app.add_option("--wrt", a.wrt, "NAME: also write grad.NAME, the gradient of activation NAME; repeatable");
}

namespace {

// The axis of the heads in an activation's batched shape, or -1.
int head_axis(const std::string& name) {
  for (const char* tail : {"attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z", "attn.hook_result"})
    if (name.ends_with(tail)) return 2;  // [B, T, H, D] ([B, T, H, d] for hook_result)
  if (name.ends_with("attn.hook_scores") || name.ends_with("attn.hook_pattern")) return 1;  // [B, H, T, T]
  return -1;
}

Status check_hook_name(const std::string& flag, const std::string& name, const std::set<std::string>& known) {
  if (!known.count(name))
    return Status::error(flag + " " + name + ": expected an activation name of this model (docs/trace.md; `forward "
                         "--trace` lists them), got \"" + name + "\"");
  if (hook_is_norm_internal(name))
    return Status::error(flag + " " + name + ": computed inside its norm, it cannot be patched or differentiated; "
                         "expected an activation such as " + name.substr(0, name.rfind('.') + 1) + "hook_out");
  return Status::ok();
}

}  // namespace

template <typename T>
Status set_hooks_from_flags(Model<T>& model, const ModelRunArgs& a, bool on_tokens, bool batched) {
  if (a.patches.empty() && a.ablations.empty() && a.wrt.empty()) return Status::ok();
  const ModelConfig& config = model.config();
  const std::vector<std::string> names = hook_names(config, on_tokens);
  const std::set<std::string> known(names.begin(), names.end());
  struct Patch {
    Tensor<T> values;
    std::string flag;
  };
  auto patches = std::make_shared<std::map<std::string, Patch>>();
  auto ablations = std::make_shared<std::map<std::string, std::vector<int64_t>>>();  // heads; -1: all of it
  for (const std::string& spec : a.patches) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
      return Status::error("--hook-patch: expected NAME=FILE, got \"" + spec + "\"");
    const std::string name = spec.substr(0, eq), path = spec.substr(eq + 1);
    BLOCKLAB_RETURN_IF_ERROR(check_hook_name("--hook-patch", name, known));
    if (patches->count(name)) return Status::error("--hook-patch " + name + ": expected once, got it twice");
    Result<io::SafetensorsFile> file = io::read_safetensors(path);
    if (!file) return file.status().with_context("--hook-patch " + name);
    const io::StoredTensor* t = file->find(name);
    if (!t && file->tensors.size() == 1) t = &file->tensors[0];
    if (!t)
      return Status::error("--hook-patch " + name + ": " + path + ": expected a tensor named " + name +
                           " (or a single tensor), got " + std::to_string(file->tensors.size()) + " tensors without it");
    Result<Tensor<T>> values = io::to_float_tensor<T>(*t, path);
    if (!values) return values.status().with_context("--hook-patch " + name);
    (*patches)[name] = Patch{std::move(values.value()), "--hook-patch " + name + "=" + path};
  }
  for (const std::string& spec : a.ablations) {
    const size_t colon = spec.rfind(':');
    const std::string name = spec.substr(0, colon);
    BLOCKLAB_RETURN_IF_ERROR(check_hook_name("--ablate", name, known));
    int64_t head = -1;
    if (colon != std::string::npos) {
      const std::string text = spec.substr(colon + 1);
      char* end = nullptr;
      const long h = std::strtol(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || h < 0 || h >= config.n_heads)
        return Status::error("--ablate " + spec + ": expected a head 0.." + std::to_string(config.n_heads - 1) +
                             " after the colon, got \"" + text + "\"");
      if (head_axis(name) < 0)
        return Status::error("--ablate " + spec + ": expected a head only on an attention activation with a head "
                             "axis (attn.hook_q, _k, _v, _z, _result, _scores, _pattern), got one on " + name);
      head = h;
    }
    (*ablations)[name].push_back(head);
  }
  for (const std::string& name : a.wrt) BLOCKLAB_RETURN_IF_ERROR(check_hook_name("--wrt", name, known));

  Hooks<T> hooks;
  hooks.grad_names = a.wrt;
  hooks.wants = [patches, ablations](const std::string& n) { return patches->count(n) || ablations->count(n); };
  hooks.fn = [patches, ablations, batched](HookPoint<T>& p) -> Status {
    const int64_t n = numel_of(p.shape);
    if (auto it = patches->find(p.name); it != patches->end()) {
      const Tensor<T>& v = it->second.values;
      Shape unbatched(p.shape.begin() + 1, p.shape.end());
      if (v.shape != p.shape && !(!batched && v.shape == unbatched))
        return Status::error(it->second.flag + ": expected shape " + shape_str(batched ? p.shape : unbatched) +
                             " (the activation's), got " + shape_str(v.shape));
      std::copy(v.data.begin(), v.data.end(), p.data);
    }
    if (auto it = ablations->find(p.name); it != ablations->end()) {
      // Scores keep the causal mask's -inf: a zeroed head attends evenly to the positions it could see.
      const bool scores = p.name.ends_with("attn.hook_scores");
      auto zero = [scores](T* x, int64_t count) {
        for (int64_t i = 0; i < count; ++i)
          if (!scores || !std::isinf(x[i])) x[i] = T(0);
      };
      for (const int64_t head : it->second) {
        if (head < 0) {
          zero(p.data, n);
          continue;
        }
        const int axis = head_axis(p.name);  // zero [.., head, ..] along `axis`
        int64_t outer = 1, inner = 1;
        for (int i = 0; i < axis; ++i) outer *= p.shape[size_t(i)];
        for (size_t i = size_t(axis) + 1; i < p.shape.size(); ++i) inner *= p.shape[i];
        const int64_t H = p.shape[size_t(axis)];
        for (int64_t o = 0; o < outer; ++o) zero(p.data + (o * H + head) * inner, inner);
      }
    }
    return Status::ok();
  };
  return model.set_hooks(std::move(hooks));
}

template Status set_hooks_from_flags<float>(Model<float>&, const ModelRunArgs&, bool, bool);
template Status set_hooks_from_flags<double>(Model<double>&, const ModelRunArgs&, bool, bool);

template <typename T>
Result<ModelRun<T>> load_model_run(const ModelRunArgs& a) {
  if (a.threads < 1) return Status::error("--threads: expected an integer >= 1, got " + std::to_string(a.threads));
  set_blas_threads(a.threads);
  std::optional<ModelConfig> config;
  if (!a.config.empty()) {
    Result<ModelConfig> c = io::read_config_for_torch_file(a.config);
    if (!c) return c.status();
    config = c.value();
  }
  Result<Model<T>> model = io::load_model<T>(a.model, config ? &*config : nullptr);
  if (!model) return model.status();
  Result<io::SafetensorsFile> input = io::read_safetensors(a.input);
  if (!input) return input.status();
  return ModelRun<T>{std::move(model.value()), std::move(input.value()),
                     std::is_same_v<T, double> ? io::DType::F64 : io::DType::F32};
}

template Result<ModelRun<float>> load_model_run<float>(const ModelRunArgs&);
template Result<ModelRun<double>> load_model_run<double>(const ModelRunArgs&);

template <typename T>
Result<StackInput<T>> read_stack_input(const io::SafetensorsFile& file, const std::string& where,
                                       const std::string& name, const ModelConfig& config, const Shape* like) {
  const io::StoredTensor* stored = file.find(name);
  const std::string expected = "[B, T, " + std::to_string(config.d_model) + "] or [T, " + std::to_string(config.d_model) + "]";
  if (!stored) return Status::error(where + ": missing tensor '" + name + "': expected a float tensor " + expected);
  if (like && stored->shape != *like)
    return Status::error(where + ": tensor '" + name + "': expected shape " + shape_str(*like) + ", got " +
                         shape_str(stored->shape));
  const Shape& s = stored->shape;
  if (s.size() != 2 && s.size() != 3)
    return Status::error(where + ": tensor '" + name + "': expected shape " + expected + ", got " + shape_str(s));
  if (s.back() != config.d_model)
    return Status::error(where + ": tensor '" + name + "': expected last dimension d_model = " +
                         std::to_string(config.d_model) + ", got " + shape_str(s));
  Result<Tensor<T>> x = io::to_float_tensor<T>(*stored, where);
  if (!x) return x.status();
  StackInput<T> in;
  in.x = std::move(x.value());
  in.batched = s.size() == 3;
  in.batch = in.batched ? s[0] : 1;
  in.seq_len = in.batched ? s[1] : s[0];
  if (in.batch < 1 || in.seq_len < 1)
    return Status::error(where + ": tensor '" + name + "': expected at least one token, got shape " + shape_str(s));
  return in;
}

template Result<StackInput<float>> read_stack_input<float>(const io::SafetensorsFile&, const std::string&,
                                                           const std::string&, const ModelConfig&, const Shape*);
template Result<StackInput<double>> read_stack_input<double>(const io::SafetensorsFile&, const std::string&,
                                                             const std::string&, const ModelConfig&, const Shape*);

Result<TokenInput> read_token_input(const io::SafetensorsFile& file, const std::string& where, const std::string& name) {
  const io::StoredTensor* stored = file.find(name);
  if (!stored) return Status::error(where + ": missing tensor '" + name + "': expected integer ids [B, T] or [T]");
  const Shape& s = stored->shape;
  if (s.size() != 1 && s.size() != 2)
    return Status::error(where + ": tensor '" + name + "': expected shape [B, T] or [T], got " + shape_str(s));
  Result<std::vector<int32_t>> ids = io::to_int_ids(*stored, where);
  if (!ids) return ids.status();
  TokenInput in;
  in.ids = std::move(ids.value());
  in.shape = s;
  in.batched = s.size() == 2;
  in.batch = in.batched ? s[0] : 1;
  in.seq_len = s.back();
  if (in.batch < 1 || in.seq_len < 1)
    return Status::error(where + ": tensor '" + name + "': expected at least one token, got shape " + shape_str(s));
  return in;
}

}  // namespace blocklab::cli
