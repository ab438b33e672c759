// train, runs and gradflow as a user runs them, including a training process killed with SIGKILL:
// the store stays sound, no committed step is lost, and --resume finishes the run exactly.
#include <gtest/gtest.h>
#include <cstdlib>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include <httplib.h>

#include "cli_fixture.h"
#include "engine/blas.h"
#include "lab/run_store.h"

extern char** environ;

namespace blocklab {
namespace {

using json = nlohmann::json;
using testing::Cli;
using testing::CliRun;
using testing::read;
namespace fs = std::filesystem;

const std::string kSmall = "--d-model 16 --n-heads 2 --d-ff 32 --n-layers 1 --batch 8 --seq-len 8";

TEST_F(Cli, TrainPrintsTheContractsJsonAndKeepsTheRun) {
  const std::string db = path("runs.db");
  const CliRun r = run("train " + kSmall + " --steps 30 --lr 3e-3 --db " + db + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  for (const char* key : {"run_id", "config", "steps", "final", "history", "wall_s", "tokens_per_s"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["steps"], 30);
  EXPECT_EQ(j["history"].size(), 30u);
  EXPECT_EQ(j["history"][0]["step"], 1);
  EXPECT_TRUE(j["final"]["accuracy"].is_number());
  EXPECT_EQ(j["config"]["vocab_size"], 10);
  EXPECT_GT(j["tokens_per_s"].get<double>(), 0);
  // Progress went to stderr as plain lines (not a terminal), the record to the store.
  EXPECT_NE(r.err.find("step 30/30"), std::string::npos) << r.err;
  auto store = lab::RunStore::open(db).value();
  const lab::RunRecord rec = store->get_run(j["run_id"].get<int64_t>()).value();
  EXPECT_EQ(rec.status, "finished");
  EXPECT_EQ(rec.steps_done, 30);
  EXPECT_TRUE(fs::exists(rec.checkpoint_path));
  // The checkpoint is a model file.
  const CliRun fwd = run("forward --model " + rec.checkpoint_path + " --input " + make_tokens() + " --output " +
                         path("y.safetensors"));
  EXPECT_EQ(fwd.code, 0) << fwd.err;
}

TEST_F(Cli, TrainWithBf16MatmulsRecordsThePrecisionAndSaysHowItRan) {
  const std::string db = path("runs.db");
  const CliRun r = run("train " + kSmall + " --steps 5 --precision bf16 --db " + db);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("matmuls in bf16, " + bf16_support().how), std::string::npos) << r.out;
  const CliRun j = run("runs show 1 --json --db " + db);
  ASSERT_EQ(j.code, 0) << j.err;
  EXPECT_NE(j.out.find("\"precision\":\"bf16\""), std::string::npos) << j.out;
}

// BLOCKLAB_GEMM picks the float32 GEMM's library; bench and train say which runs, and why. A value that
// names neither is refused before any work, naming the variable.
TEST_F(Cli, TheGemmLibraryIsShownAndItsSwitchChecked) {
  for (const char* library : {"openblas", "onednn"}) {
    ::setenv("BLOCKLAB_GEMM", library, 1);
    const CliRun b = run("bench --filter sgemm_ --budget-s 0 --min-repeats 1");
    ASSERT_EQ(b.code, 0) << b.err;
    EXPECT_NE(b.out.find(std::string("GEMM: ") + library + ": "), std::string::npos) << b.out;
    EXPECT_NE(b.out.find(std::string("(BLOCKLAB_GEMM=") + library + ")"), std::string::npos) << b.out;
    EXPECT_NE(b.out.find("sgemm_openblas"), std::string::npos) << b.out;  // both side by side, whichever runs
    EXPECT_NE(b.out.find("sgemm_onednn"), std::string::npos) << b.out;
    const CliRun t = run("train " + kSmall + " --steps 2 --json --db " + path(std::string(library) + ".db"));
    ASSERT_EQ(t.code, 0) << t.err;
    EXPECT_NE(t.out.find(std::string("\"matmuls\":\"f32 on ") + library + ": "), std::string::npos) << t.out;
  }
  ::setenv("BLOCKLAB_GEMM", "mkl", 1);
  expect_usage_error(run("bench --filter sgemm_ --budget-s 0"), "BLOCKLAB_GEMM: expected openblas or onednn");
  expect_usage_error(run("init --d-model 8 --n-heads 2 --d-ff 16 --output " + path("m.safetensors")), "got \"mkl\"",
                     path("m.safetensors"));
  EXPECT_EQ(run("forward --help").code, 0);  // help still shows
  ::unsetenv("BLOCKLAB_GEMM");
  ::setenv("BLOCKLAB_BF16", "native", 1);
  expect_usage_error(run("train " + kSmall + " --steps 1 --db " + path("x.db")), "BLOCKLAB_BF16: expected emulate");
  ::unsetenv("BLOCKLAB_BF16");
}

TEST_F(Cli, UsersAddListSetRoleBlockRemoveAndClassCodes) {
  const std::string db = " --db " + path("store.db");
  { std::ofstream(path("pw.txt")) << "teacher password\n"; }
  CliRun r = run("users add teach --role teacher --password-file " + path("pw.txt") + db);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "added teach (teacher)\n");
  r = run("users add alice" + db + " < " + path("pw.txt"));  // the password on standard input
  ASSERT_EQ(r.code, 0) << r.err;
  r = run("users list" + db);
  EXPECT_NE(r.out.find("teach "), std::string::npos);
  EXPECT_NE(r.out.find("alice"), std::string::npos);
  EXPECT_EQ(run("users set-role alice teacher" + db).code, 0);
  EXPECT_EQ(run("users block alice" + db).code, 0);
  EXPECT_NE(run("users list" + db).out.find("teacher   yes"), std::string::npos);
  r = run("users class-code --hours 2" + db);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.size(), 15u);  // XXXX-XXXX-XXXX and a newline
  EXPECT_EQ(run("users remove alice" + db).code, 0);
  EXPECT_EQ(run("users list" + db).out.find("alice"), std::string::npos);
  // Bad input: one line, exit 2.
  expect_usage_error(run("users add ab --password-file " + path("pw.txt") + db), "expected 3 to 32 characters");
  expect_usage_error(run("users add teach --password-file " + path("pw.txt") + db), "already taken");
  { std::ofstream(path("short.txt")) << "short\n"; }
  expect_usage_error(run("users add bob --password-file " + path("short.txt") + db), "password: expected 8 to 256");
  expect_usage_error(run("users remove nobody" + db), "no such account");
  expect_usage_error(run("users set-role teach admin" + db), "expected student or teacher");
  // The store holds the hash, never the password.
  std::ifstream in(path("store.db"), std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  EXPECT_EQ(bytes.str().find("teacher password"), std::string::npos);
}

TEST_F(Cli, RunsListShowExportCompare) {
  const std::string db = path("runs.db");
  ASSERT_EQ(run("train " + kSmall + " --steps 12 --db " + db + " --label first").code, 0);
  ASSERT_EQ(run("train " + kSmall + " --steps 12 --norm rmsnorm --db " + db + " --label second").code, 0);
  CliRun r = run("runs list --db " + db);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("first"), std::string::npos);
  EXPECT_NE(r.out.find("second"), std::string::npos);
  r = run("runs list --db " + db + " --json");
  EXPECT_EQ(json::parse(r.out).size(), 2u);
  r = run("runs show 1 --db " + db);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("finished"), std::string::npos);
  r = run("runs show 2 --db " + db + " --json");
  EXPECT_EQ(json::parse(r.out)["history"].size(), 12u);
  r = run("runs export 1 --csv --db " + db);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("step,loss,accuracy,lr,grad_norm,wall_s\n1,", 0), 0u) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 13);
  ASSERT_EQ(run("runs export 1 --json --db " + db + " --output " + path("run1.json")).code, 0);
  const json exported = json::parse(slurp(path("run1.json")));
  EXPECT_EQ(exported["layer_grad_norms"][0]["step"], 1);
  r = run("runs compare 1 2 --db " + db + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const json cmp = json::parse(r.out);
  EXPECT_EQ(cmp["differences"]["config.norm"], json::array({"layernorm", "rmsnorm"}));
  EXPECT_EQ(run("runs compare 1 2 --db " + db).code, 0);
}

// A checkpoint exported as a plain model file (no optimizer.*, no training state), then fine-tuned with --init:
// the new run starts from those parameters (its first loss is the old run's last training loss region, not a
// fresh model's), and bad uses are one line and exit 2.
TEST_F(Cli, ExportAPlainModelAndFineTuneItWithInit) {
  const std::string db = path("runs.db");
  const std::string ck = path("ck.safetensors"), plain = path("plain.safetensors");
  CliRun r = run("train " + kSmall + " --steps 60 --lr 3e-3 --db " + db + " --save " + ck + " --json --quiet");
  ASSERT_EQ(r.code, 0) << r.err;
  const json first = json::parse(r.out);
  ASSERT_EQ(run("export " + ck + " --output " + plain).code, 0);
  const io::SafetensorsFile ckf = read(ck), pf = read(plain);
  size_t optimizer = 0;
  for (const io::StoredTensor& t : ckf.tensors) optimizer += t.name.starts_with("optimizer.");
  EXPECT_GT(optimizer, 0u);
  EXPECT_EQ(pf.tensors.size(), ckf.tensors.size() - optimizer);
  for (const io::StoredTensor& t : pf.tensors) EXPECT_FALSE(t.name.starts_with("optimizer.")) << t.name;
  EXPECT_EQ(pf.metadata.count("blocklab.train"), 0u);
  EXPECT_EQ(pf.metadata.count("blocklab.config"), 1u);
  // by run id: the same file
  ASSERT_EQ(run("export 1 --db " + db + " --output " + path("plain1.safetensors")).code, 0);
  EXPECT_EQ(slurp(path("plain1.safetensors")), slurp(plain));
  // the exported model computes what the checkpoint computes
  const std::string in = make_input({2, 4, 16});
  ASSERT_EQ(run("forward --model " + ck + " --input " + in + " --output " + path("y1.safetensors")).code, 0);
  ASSERT_EQ(run("forward --model " + plain + " --input " + in + " --output " + path("y2.safetensors")).code, 0);
  EXPECT_EQ(read(path("y1.safetensors")).find("y")->bytes, read(path("y2.safetensors")).find("y")->bytes);

  // fine-tuning starts where the first run ended: its first step's loss is near the first run's last ones
  r = run("train --init " + plain + " --steps 5 --lr 3e-3 --db " + db + " --json --quiet");
  ASSERT_EQ(r.code, 0) << r.err;
  const json tuned = json::parse(r.out);
  const double start = tuned["history"][0]["loss"], fresh = first["history"][0]["loss"], end = first["history"].back()["loss"];
  EXPECT_LT(std::abs(start - end), 0.5 * std::abs(fresh - end)) << start << " " << fresh << " " << end;
  EXPECT_EQ(tuned["config"], first["config"]);
  r = run("runs list --db " + db);
  EXPECT_NE(r.out.find("fine-tuned from"), std::string::npos) << r.out;

  expect_usage_error(run("train --init " + plain + " --n-layers 3 --db " + db),
                     "--n-layers: a fine-tuned run keeps the config of its --init model");
  expect_usage_error(run("train --init " + plain + " --task chars --db " + db), "--init " + plain + ": config key 'vocab_size': expected 52");
  expect_usage_error(run("train --init " + plain + " --task reverse --db " + db),
                     "--init " + plain + ": expected a model of the config the reverse task trains");
  expect_usage_error(run("train --init " + plain + " --resume " + ck + " --db " + db), "--init");
  expect_usage_error(run("export 99 --db " + db + " --output " + path("x.safetensors")), "run 99: no such run", path("x.safetensors"));
  expect_usage_error(run("export " + path("nope.safetensors") + " --output " + path("x.safetensors")), "nope.safetensors", path("x.safetensors"));
  expect_usage_error(run("train --resume " + plain + " --db " + db), "fine-tune it with train --init");
}

// Your own data: a text file trains the text task (its bytes are the tokens), the end of it is held out,
// the run records the file by absolute path and hash, and a resumed run refuses a file that changed.
TEST_F(Cli, TrainOnYourOwnTextHoldsOutItsEndAndResumesOnlyOnTheSameFile) {
  const std::string db = path("runs.db"), ck = path("ck.safetensors"), plain = path("plain.safetensors");
  const std::string text = slurp(std::string(BLOCKLAB_SOURCE_DIR) + "/data/chars.txt").substr(0, 20000);
  const std::string data = path("my text.txt");
  std::ofstream(data, std::ios::binary) << text;
  const std::string model = "--d-model 32 --n-heads 2 --d-ff 64 --n-layers 1";
  CliRun r = run("train " + model + " --data '" + data + "' --steps 20 --seq-len 32 --db " + db + " --save " + ck +
                 " --json --quiet");
  ASSERT_EQ(r.code, 0) << r.err;
  const json first = json::parse(r.out);
  EXPECT_EQ(first["options"]["task"], "text");
  EXPECT_EQ(first["options"]["data"]["path"], fs::absolute(data).string());
  EXPECT_EQ(first["options"]["data"]["held_out"], 0.1);
  EXPECT_EQ(first["options"]["data"]["hash"].get<std::string>().size(), 16u);
  std::string alphabet = text;
  std::sort(alphabet.begin(), alphabet.end());
  alphabet.erase(std::unique(alphabet.begin(), alphabet.end()), alphabet.end());
  EXPECT_EQ(first["config"]["vocab_size"], alphabet.size());
  EXPECT_EQ(first["config"]["causal"], true);
  EXPECT_EQ(first["config"]["max_seq_len"], 32);
  EXPECT_TRUE(std::isfinite(first["final"]["loss"].get<double>()));

  // resumed from another folder: the path is absolute; fine-tuned from its exported model on the same data
  r = run("train --resume " + ck + " --steps 25 --db " + db + " --json --quiet");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["steps"], 25);
  ASSERT_EQ(run("export " + ck + " --output " + plain).code, 0);
  r = run("train --init " + plain + " --data '" + data + "' --steps 3 --seq-len 32 --db " + db + " --json --quiet");
  ASSERT_EQ(r.code, 0) << r.err;

  std::ofstream(data, std::ios::binary | std::ios::app) << "one more line\n";
  expect_usage_error(run("train --resume " + ck + " --steps 30 --db " + db), "expected the file the run started with");
  expect_usage_error(run("train --resume " + ck + " --data '" + data + "' --db " + db), "--data: a resumed run keeps");
  expect_usage_error(run("train --task text --db " + db), "--task text: expected --data FILE");
  expect_usage_error(run("train --data '" + data + "' --task copy --db " + db), "--task: expected text (or no --task) with --data");
  expect_usage_error(run("train --data '" + data + "' --held-out 0.9 --db " + db), "--held-out: expected a fraction in (0, 0.5], got 0.9");
  expect_usage_error(run("train --held-out 0.2 --db " + db), "--held-out: expected --data FILE with it");
  std::ofstream(path("tiny.txt")) << "abc";
  expect_usage_error(run("train --data " + path("tiny.txt") + " --db " + db), "expected at least 21 tokens in each part");
  expect_usage_error(run("train --data " + path("none.txt") + " --db " + db), "--data");
  std::ofstream(path("abc.txt")) << std::string(300, 'a') + std::string(300, 'b') + std::string(300, 'c');
  expect_usage_error(run("train --init " + plain + " --data " + path("abc.txt") + " --seq-len 4 --db " + db),
                     "config key 'vocab_size': expected 3 (the text task's vocabulary)");
}

TEST_F(Cli, GradflowJsonCsvAndTable) {
  CliRun r = run("gradflow --d-model 16 --n-heads 2 --d-ff 32 --n-layers 30 --batch 2 --seq-len 6 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  ASSERT_EQ(j["layers"].size(), 30u);
  for (const char* key : {"layer", "grad_norm_params", "grad_norm_resid", "act_mean", "act_std"})
    EXPECT_TRUE(j["layers"][29].contains(key)) << key;
  EXPECT_EQ(j["layers"][0]["layer"], 0);
  r = run("gradflow --n-layers 3 --csv");
  ASSERT_EQ(r.code, 0);
  EXPECT_EQ(r.out.rfind("layer,grad_norm_params,grad_norm_resid,act_mean,act_std\n0,", 0), 0u);
  EXPECT_EQ(run("gradflow --n-layers 3").code, 0);
}

TEST_F(Cli, TrainAndRunsRefuseBadInput) {
  const std::string db = path("runs.db");
  expect_usage_error(run("train --n-heads 5 --db " + db), "config key 'n_heads': expected a divisor of d_model 64, got 5");
  expect_usage_error(run("train --task translate --db " + db), "--task");
  expect_usage_error(run("train --steps 0 --db " + db), "training option 'steps': expected an integer >= 1, got 0");
  expect_usage_error(run("train --task chars --causal off --db " + db), "config key 'causal': expected true for the chars task");
  expect_usage_error(run("train --lr nan --db " + db), "lr");
  expect_usage_error(run("train --precision fp8 --db " + db), "--precision");
  expect_usage_error(run("train --vocab-size 12 --db " + db), "config key 'vocab_size': expected 10");
  expect_usage_error(run("train --resume " + path("nope.safetensors")), "--resume");
  ASSERT_EQ(run("train " + kSmall + " --steps 3 --db " + db + " --save " + path("ck.safetensors")).code, 0);
  expect_usage_error(run("train --resume " + path("ck.safetensors") + " --lr 0.1 --db " + db), "--lr: a resumed run keeps");
  expect_usage_error(run("train --resume " + path("ck.safetensors") + " --precision bf16 --db " + db),
                     "--precision: a resumed run keeps");
  expect_usage_error(run("train --resume " + path("ck.safetensors") + " --n-layers 4 --db " + db), "--n-layers: a resumed run keeps its model");
  expect_usage_error(run("train --resume " + path("ck.safetensors") + " --steps 2 --db " + db), "--steps: expected at least the checkpoint's step 3");
  expect_usage_error(run("train --resume " + path("ck.safetensors") + " --db " + path("other.db")), "run 1 is not in");
  const std::string model = path("m.safetensors");
  ASSERT_EQ(run("init --output " + model).code, 0);
  expect_usage_error(run("train --resume " + model + " --db " + db), "not a training checkpoint");
  expect_usage_error(run("train --steps 2 --db " + db + " --save /proc/blocklab/ck.safetensors"),
                     "cannot write a checkpoint there");
  expect_usage_error(run("runs show 99 --db " + db), "run 99: no such run");
  expect_usage_error(run("runs export 1 --db " + db), "expected exactly one of --csv or --json");
  expect_usage_error(run("runs list --db " + path("missing.db")), "missing.db");
  expect_usage_error(run("runs"), "subcommand");
  expect_usage_error(run("gradflow --vocab-size 11"), "config key 'vocab_size': expected null or 10");
  expect_usage_error(run("gradflow --batch 0"), "batch: expected an integer >= 1, got 0");
}

TEST_F(Cli, EveryExperimentRunsFromOneCommand) {
  // --quick: the whole pipeline (runs, store, report, figures) on tiny models, in seconds.
  const std::string db = path("runs.db");
  int64_t stored = 0;
  for (const char* name :
       {"residual-ablation", "norm-ablation", "pre-vs-post", "gradient-flow", "drift", "alpha-sweep", "x-fx", "prepost-sweep",
        "norm-sweep"}) {
    const std::string out = path(std::string("reports/") + name);
    const CliRun r = run(std::string("experiment ") + name + " --quick --quiet --db " + db + " --out " + out);
    ASSERT_EQ(r.code, 0) << name << ": " << r.err;
    const std::string report = slurp(out + "/report.md");
    EXPECT_EQ(report.rfind("# ", 0), 0u) << name;
    EXPECT_NE(report.find("blocklab experiment " + std::string(name) + " --seed 0"), std::string::npos) << name;
    int svgs = 0;
    for (const auto& e : fs::directory_iterator(out))
      if (e.path().extension() == ".svg") {
        ++svgs;
        EXPECT_EQ(slurp(e.path().string()).rfind("<svg", 0), 0u) << e.path();
        EXPECT_NE(report.find("](" + e.path().filename().string() + ")"), std::string::npos) << e.path();
      }
    EXPECT_GE(svgs, 1) << name;
  }
  auto store = lab::RunStore::open(db).value();
  for (const lab::RunRecord& r : store->list_runs().value()) {
    EXPECT_FALSE(r.experiment.empty());
    EXPECT_FALSE(r.label.empty());
    // Checkpoints beside the report (under --out), never beside the store.
    EXPECT_NE(r.checkpoint_path.find("/reports/" + r.experiment + "/checkpoints/"), std::string::npos) << r.checkpoint_path;
    EXPECT_TRUE(fs::exists(r.checkpoint_path)) << r.checkpoint_path;
    ++stored;
  }
  EXPECT_FALSE(fs::exists(path("checkpoints"))) << "an experiment wrote checkpoints beside the store";
  // gradient-flow and drift measure at initialisation: no training runs; the sweeps 2 x 2 cells per variant.
  EXPECT_EQ(stored, 6 + 6 + 4 + 5 + 1 + 16 + 8);
}

TEST_F(Cli, AnExperimentRerunWithTheSameSeedReproducesItsRuns) {
  const std::string db = path("runs.db");
  for (int i = 0; i < 2; ++i)
    ASSERT_EQ(run("experiment alpha-sweep --quick --quiet --steps 6 --seed 3 --db " + db + " --out " + path("r")).code, 0);
  auto store = lab::RunStore::open(db).value();
  for (int64_t id = 1; id <= 5; ++id) {
    const auto a = store->steps(id).value(), b = store->steps(id + 5).value();
    ASSERT_EQ(a.size(), 6u);
    ASSERT_EQ(a.size(), b.size());
    for (size_t k = 0; k < a.size(); ++k) EXPECT_EQ(a[k].loss, b[k].loss) << "run " << id << " step " << k + 1;
  }
  expect_usage_error(run("experiment frobnicate --db " + db), "frobnicate");
  expect_usage_error(run("experiment drift --quick --db " + db + " --out /proc/blocklab-report"), "/proc/blocklab-report");
}

// Starts `blocklab args...` without waiting; returns its pid.
pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  std::vector<std::string> storage = args;
  storage.insert(storage.begin(), BLOCKLAB_BINARY);
  for (std::string& a : storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, BLOCKLAB_BINARY, &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

TEST_F(Cli, SigkillLosesNoCommittedStepAndResumeFinishesExactly) {
  const std::string db = path("runs.db"), ck = path("ck.safetensors");
  std::vector<std::string> args = {"train", "--d-model", "16", "--n-heads", "2", "--d-ff", "32", "--n-layers", "1",
                                   "--batch", "8", "--seq-len", "8", "--steps", "1000000", "--checkpoint-every", "20",
                                   "--dropout", "0.1", "--db", db, "--save", ck};
  const pid_t pid = spawn(args, path("train.log"));
  int64_t done = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (done < 45 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!fs::exists(db)) continue;
    auto store = lab::RunStore::open(db);
    if (!store) continue;
    auto r = store.value()->get_run(1);
    if (r) done = r->steps_done;
  }
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << slurp(path("train.log"));
  ASSERT_GE(done, 45);

  std::vector<lab::StepRecord> before;
  {
    auto store = lab::RunStore::open(db).value();
    EXPECT_EQ(store->integrity_check(), "ok");
    const lab::RunRecord r = store->get_run(1).value();
    EXPECT_EQ(r.status, "interrupted");
    before = store->steps(1).value();
    ASSERT_GE(int64_t(before.size()), done);
    for (size_t i = 0; i < before.size(); ++i) ASSERT_EQ(before[i].step, int64_t(i + 1));  // none lost, no gaps
    EXPECT_EQ(r.steps_done, int64_t(before.size()));
    EXPECT_EQ(r.checkpoint_step % 20, 0);
    EXPECT_GE(r.checkpoint_step, 40);
  }
  const CliRun resumed = run("train --resume " + ck + " --steps " + std::to_string(before.size() + 10) + " --db " + db + " --json");
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  const json j = json::parse(resumed.out);
  EXPECT_EQ(j["run_id"], 1);
  EXPECT_EQ(j["status"], "finished");
  ASSERT_EQ(j["history"].size(), before.size() + 10);
  // Steps redone after the checkpoint are the same steps, bit for bit (same batches, same dropout masks).
  for (size_t i = 0; i < before.size(); ++i)
    EXPECT_EQ(j["history"][i]["loss"].get<double>(), before[i].loss) << "step " << i + 1;
  auto store = lab::RunStore::open(db).value();
  EXPECT_EQ(store->get_run(1).value().status, "finished");
  EXPECT_EQ(store->integrity_check(), "ok");
}

TEST_F(Cli, ServeStopsCleanlyOnSigtermPuttingItsJobsBackInTheQueue) {
  const std::string db = path("serve.db"), log = path("serve.log");
  const pid_t pid = spawn({"serve", "--port", "0", "--db", db, "--models", path("no-models"), "--quiet"}, log);
  int port = 0;
  for (int i = 0; i < 500 && port == 0; ++i) {  // "blocklab serve: http://127.0.0.1:PORT/ ..."
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const std::string text = slurp(log);
    const size_t at = text.find("http://127.0.0.1:");
    if (at != std::string::npos) port = std::atoi(text.c_str() + at + 17);
  }
  ASSERT_GT(port, 0) << slurp(log);
  httplib::Client client("127.0.0.1", port);
  const json body = {{"steps", 20000}, {"batch", 4}, {"seq_len", 8},
                     {"config", {{"d_model", 16}, {"n_heads", 2}, {"d_ff", 32}, {"n_layers", 1}}}};
  httplib::Result r = client.Post("/api/runs", body.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 202) << r->body;
  for (int i = 0; i < 500; ++i) {  // until it is training
    httplib::Result h = client.Get("/api/health");
    if (h && json::parse(h->body)["jobs"]["running"] == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  client.stop();  // close our keep-alive connection, or the server waits for it to time out
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << slurp(log);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_NE(slurp(log).find("stopped"), std::string::npos);
  auto store = lab::RunStore::open(db).value();
  EXPECT_EQ(store->integrity_check(), "ok");
  // Back in the queue, checkpointed: the next server resumes it from there.
  const lab::RunRecord run = store->get_run(1).value();
  EXPECT_EQ(run.status, "queued");
  EXPECT_TRUE(run.lease_owner.empty());
  EXPECT_GT(run.steps_done, 0);
  EXPECT_EQ(run.checkpoint_step, run.steps_done);
  EXPECT_TRUE(fs::exists(run.checkpoint_path));
}

}  // namespace
}  // namespace blocklab

namespace blocklab::testing {
namespace {

// blocklab assistant: the same answers as POST /api/assistant, bad input as exit 2 and one line.
TEST_F(Cli, AssistantAskSectionsEvalAndBench) {
  CliRun r = run("assistant ask --json 'LayerNorm of [0.1, 2.3, -1.2]?'");
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["citations"][0]["url"], "/?page=layernorm&tab=mean&x=0.1,2.3,-1.2#step-by-step");
  r = run("assistant ask --explain 'whats layr norm for'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("layr             -> layer"), std::string::npos) << r.out;  // a typo, corrected
  r = run("assistant sections --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["pages"].size(), 8u);
  // The built-in set's targets are assistant_test's; here a small set of one of each kind.
  std::ofstream(path("small.json")) << R"({"questions": [
    {"q": "what is layer norm for", "kind": "conceptual", "cite": ["layernorm#why", "other-half#layernorm"]},
    {"q": "LayerNorm of [0.1, 2.3, -1.2]?", "kind": "numeric", "cite": ["layernorm#step-by-step"], "values": [0.4, 1.444533]},
    {"q": "who won the world cup in 2010", "kind": "out-of-scope"}]})";
  r = run("assistant eval --check --set " + path("small.json"));
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("| right section cited (conceptual, numeric, page-state) | 2 / 2 = 100.0%"), std::string::npos) << r.out;
  r = run("assistant bench --repeat 2 --json --set " + path("small.json"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_GT(nlohmann::json::parse(r.out)["latency_ms"]["offline_p50"].get<double>(), 0);
  // A set whose targets do not hold fails --check.
  std::ofstream(path("set.json")) << R"({"questions": [{"q": "what is the capital of France", "kind": "conceptual", "cite": ["layernorm#why"]}]})";
  r = run("assistant eval --check --set " + path("set.json"));
  EXPECT_EQ(r.code, 1) << r.out << r.err;
}

TEST_F(Cli, AssistantBadInputIsOneLineAndExit2) {
  expect_usage_error(run("assistant ask ''"), "question: expected 1 to 2000 characters");
  expect_usage_error(run("assistant ask hi --page nope"), "page: expected one of");
  expect_usage_error(run("assistant ask hi --context '{nope'"), "--context: expected a JSON object");
  expect_usage_error(run("assistant ask 'gradient norm with 500 layers'"), "expected 1 to 100 layers");
  expect_usage_error(run("assistant eval --set " + path("missing.json")), "cannot read the file");
  std::ofstream(path("bad.json")) << R"({"questions": [{"q": "x", "kind": "poem"}]})";
  expect_usage_error(run("assistant eval --set " + path("bad.json")), "questions[0].kind: expected conceptual");
  expect_usage_error(run("assistant"), "assistant");
}

}  // namespace
}  // namespace blocklab::testing
