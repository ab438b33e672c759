// The widgets' computations, without a socket: each takes the request body (JSON) and returns the
// response body, computed by the engine; bad input throws ApiError naming the field. The server's
// handlers only parse, call these, and serialise. Request and response shapes: docs/api.md and
// docs/openapi.json.
#pragma once

#include "lab/training_run.h"
#include "server/api_input.h"
#include "server/model_registry.h"

namespace blocklab::server {

json compute_residual(const json& req, const ModelRegistry& models, const Limits& limits);
json compute_layernorm(const json& req, const Limits& limits);
json compute_rmsnorm(const json& req, const Limits& limits);
json compute_batchnorm(const json& req, const Limits& limits);
json compute_ffn(const json& req, const ModelRegistry& models, const Limits& limits);
json compute_block(const json& req, const ModelRegistry& models, const Limits& limits);
json compute_gradient_flow(const json& req, const Limits& limits);

// The server's limits on a model's config (d_model, n_heads, d_ff, n_layers against Limits), stricter than
// the engine's (validate()): for configs read from requests and for uploaded models before they are built
// (ModelRegistry::open's ConfigCheck). The message names the key: "config key 'd_model': expected at most
// 1024 (the server's limit), got 4096".
Status check_config_limits(const ModelConfig& config, const Limits& limits);

// A model config from the contract's keys in `req` (unknown keys among them are the caller's business),
// checked against the limits.
ModelConfig read_model_config(const json& req, const Limits& limits, const std::string& prefix = "");
// Estimated floating-point work of a forward and backward pass, in GFLOP.
double estimate_gflop(const ModelConfig& config, int64_t tokens, bool backward);

json model_info_json(const ModelInfo& info);

// POST /api/runs: the training job a request body asks for, checked against the limits (413 too_costly
// past max_job_gflop). Its run_id and checkpoint path are the job manager's to set.
lab::TrainRunSpec read_run_request(const json& req, const Limits& limits);

}  // namespace blocklab::server
