#include "cli/cli_common.h"

#include <signal.h>

#include <atomic>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <type_traits>

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

void add_model_run_flags(CLI::App& app, ModelRunArgs& a, const std::string& input_holds) {
  app.add_option("--model", a.model, "model .safetensors")->required();
  app.add_option("--input", a.input, "input .safetensors holding " + input_holds)->required();
  app.add_option("--output", a.output, "output .safetensors to write")->required();
  app.add_option("--config", a.config, "config JSON to use instead of the file's (for models saved by PyTorch)");
  add_dtype_flag(app, a.dtype);
}

template <typename T>
Result<ModelRun<T>> load_model_run(const ModelRunArgs& a) {
  std::optional<ModelConfig> config;
  if (!a.config.empty()) {
    Result<ModelConfig> c = io::read_config_file(a.config);
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
