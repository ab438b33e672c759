// The learning assistant without a server: the lessons' parser (each malformed case), the index's
// reading of learners' words, every computation against its definition in float64, the links it gives,
// honest refusals, hostile questions, and the evaluation set's targets.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "assistant/eval.h"
#include "server/compute.h"
#include "server/server.h"

namespace blocklab::assistant {
namespace {

const char* kGood = R"(---
page: demo
title: A demo page
suggest: What is this?
---

## First section {#first}
widget: layernorm?tab=mean
keywords: one, two ,, three
kind: maths

A paragraph with $x$.

$$
y = x
$$

## Second {#second}

Body.
)";

TEST(Lessons, ParsesPagesSectionsAndMetadata) {
  Result<LessonPage> p = parse_lesson("demo.md", kGood);
  ASSERT_TRUE(p) << p.status().message();
  EXPECT_EQ(p->title, "A demo page");
  ASSERT_EQ(p->suggest.size(), 1u);
  ASSERT_EQ(p->sections.size(), 2u);
  const Section& s = p->sections[0];
  EXPECT_EQ(s.key(), "demo#first");
  EXPECT_EQ(s.widget, "layernorm?tab=mean");
  EXPECT_EQ(s.keywords, (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ(s.kind, "maths");
  EXPECT_EQ(s.body, "A paragraph with $x$.\n\n$$\ny = x\n$$");
  EXPECT_EQ(p->sections[1].kind, "intuition");
  EXPECT_EQ(p->sections[1].body, "Body.");
  EXPECT_EQ(section_url(s), "/?page=layernorm&tab=mean#first");
  EXPECT_EQ(section_url(s, {{"tab", "variance"}, {"x", "1,2;3,4"}}), "/?page=layernorm&tab=variance&x=1,2;3,4#first");
  EXPECT_EQ(section_url(p->sections[1]), "/?page=demo#second");
}

TEST(Lessons, EveryMalformedFileIsRefusedWithItsLine) {
  const std::string good = kGood;
  auto with = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"no front matter", "## First section {#first}\nBody.\n"},
      {"page: expected \"demo\"", with("page: demo", "page: other")},
      {"unknown front-matter key", with("title: A demo page", "title: A demo page\nauthor: me")},
      {"expected a new id", with("## Second {#second}", "## Second {#first}")},
      {"expected a section heading", with("## Second {#second}", "## Second {#Bad_Id}")},
      {"kind: expected one of", with("kind: maths", "kind: poem")},
      {"unknown section key", with("kind: maths", "kind: maths\ncolour: red")},
      {"expected '$$' to close", with("y = x\n$$\n", "y = x\n")},
      {"before any text", with("## First section {#first}", "stray text\n## First section {#first}")},
      {"expected '---' to end", "---\npage: demo\ntitle: x\n"},
      {"widget: expected", with("widget: layernorm?tab=mean", "widget: <script>")},
  };
  for (const auto& [want, text] : cases) {
    Result<LessonPage> p = parse_lesson("demo.md", text);
    ASSERT_FALSE(p) << want;
    EXPECT_NE(p.status().message().find(want == "no front matter" ? "expected '---'" : want), std::string::npos) << p.status().message();
    EXPECT_EQ(p.status().message().rfind("demo.md:", 0), 0u) << p.status().message();
  }
}

TEST(Lessons, TheBuiltInLessonsParseAndLinkToRealPages) {
  Result<std::vector<LessonPage>> pages = builtin_lessons();
  ASSERT_TRUE(pages) << pages.status().message();
  std::set<std::string> ids;
  for (const LessonPage& p : pages.value()) ids.insert(p.page);
  EXPECT_EQ(ids, (std::set<std::string>{"addnorm", "cheatsheet", "course", "ffn", "gradflow", "layernorm", "other-half", "train"}));
  for (const LessonPage& p : pages.value()) {
    EXPECT_FALSE(p.suggest.empty()) << p.page << ": no suggested questions";
    for (const Section& s : p.sections) {
      const std::string target = s.widget.substr(0, s.widget.find('?'));
      EXPECT_TRUE(s.widget.empty() || ids.count(target)) << s.key() << " links to an unknown page: " << s.widget;
      EXPECT_FALSE(s.body.empty()) << s.key();
    }
  }
  // The comments' sections are lesson sections: one id for both.
  for (const char* key : {"train#copy-task", "ffn#position-wise", "gradflow#depth", "other-half#take-aways", "layernorm#step-by-step", "addnorm#placement"}) {
    bool found = false;
    for (const LessonPage& p : pages.value())
      for (const Section& s : p.sections) found = found || s.key() == key;
    EXPECT_TRUE(found) << key;
  }
}

TEST(Retrieval, ReadsLearnersWordsAsTheLessonsDo) {
  auto has = [](const std::string& text, const std::string& word) {
    const std::vector<std::string> w = canonical_words(text);
    return std::find(w.begin(), w.end(), word) != w.end();
  };
  EXPECT_TRUE(has("what does LN do", "layernorm"));
  EXPECT_TRUE(has("layer normalisation", "layernorm"));
  EXPECT_TRUE(has("skip connections", "residual"));
  EXPECT_TRUE(has("the MLP", "ffn"));
  EXPECT_TRUE(has("feed-forward network", "ffn"));
  EXPECT_TRUE(has("pre-LN", "prenorm"));
  EXPECT_TRUE(has("normalise", "normalize"));
  EXPECT_TRUE(has("d_ff", "dff"));
  EXPECT_TRUE(has("GPT-4", "gpt4"));  // a name with its number, not "gpt" and "4"
  EXPECT_FALSE(has("GPT-4", "gpt"));
  EXPECT_EQ(content_words("what is the"), std::vector<std::string>{});
}

class AssistantTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    models_ = server::ModelRegistry::open(std::string(BLOCKLAB_SOURCE_DIR) + "/models", "").value();
    assistant_ = Assistant::create(models_.get(), server::Limits{}).value();
  }
  static void TearDownTestSuite() {
    assistant_.reset();
    models_.reset();
  }
  static Answer ask(const std::string& q, const std::string& page = "", json context = nullptr) {
    json body = {{"question", q}};
    if (!page.empty()) body["page"] = page;
    if (!context.is_null()) body["context"] = context;
    return assistant_->ask(read_question(body));
  }
  static std::vector<double> numbers(const Answer& a) {
    std::vector<double> out;
    for (const Computed& c : a.computed) {
      if (c.value.is_number()) out.push_back(c.value.get<double>());
      else
        for (const json& v : c.value) out.push_back(v.get<double>());
    }
    return out;
  }
  static bool has_number(const Answer& a, double want, double rel = 1e-5) {
    for (double v : numbers(a))
      if (std::fabs(v - want) <= rel * std::max(std::fabs(want), 1e-30)) return true;
    return false;
  }
  static inline std::unique_ptr<server::ModelRegistry> models_;
  static inline std::unique_ptr<Assistant> assistant_;
};

TEST_F(AssistantTest, Seed003LayerNormQuestionGivesTheEngineNumbersAndTheWidgetInThatState) {
  const Answer a = ask("LayerNorm of [0.1, 2.3, -1.2]?");
  EXPECT_EQ(a.status, "answered");
  EXPECT_EQ(a.intent, "layernorm");
  const double mean = 0.4, var = (0.09 + 3.61 + 2.56) / 3, sd = std::sqrt(var + 1e-5);
  EXPECT_TRUE(has_number(a, mean));
  EXPECT_TRUE(has_number(a, sd));
  EXPECT_NE(a.answer.find("mean is 0.4"), std::string::npos) << a.answer;
  EXPECT_NE(a.answer.find("1.4445"), std::string::npos) << a.answer;
  ASSERT_FALSE(a.citations.empty());
  EXPECT_EQ(a.citations[0].section, "layernorm#step-by-step");
  EXPECT_EQ(a.citations[0].url, "/?page=layernorm&tab=mean&x=0.1,2.3,-1.2#step-by-step");
  EXPECT_EQ(a.source, "lessons");
}

TEST_F(AssistantTest, EveryComputationMatchesItsDefinition) {
  // RMSNorm
  Answer a = ask("rms norm of [3, 4]");
  EXPECT_TRUE(has_number(a, std::sqrt(12.5 + 1e-5)));
  EXPECT_EQ(a.citations.at(0).section, "layernorm#rmsnorm");
  // BatchNorm over rows
  a = ask("batchnorm of [[1, 2], [3, 4], [5, 6]]");
  EXPECT_TRUE(has_number(a, 3.0));
  EXPECT_TRUE(has_number(a, 4.0));
  EXPECT_TRUE(has_number(a, std::sqrt(8.0 / 3 + 1e-5)));
  // GELU (erf), tanh-GELU, ReLU (float32 kernels: 1e-6)
  a = ask("gelu(1.5)?");
  EXPECT_TRUE(has_number(a, 0.5 * 1.5 * (1 + std::erf(1.5 / std::sqrt(2.0))), 1e-6));
  a = ask("tanh approx gelu of -0.5");
  const double u = -0.5;
  EXPECT_TRUE(has_number(a, 0.5 * u * (1 + std::tanh(std::sqrt(2 / M_PI) * (u + 0.044715 * u * u * u))), 1e-6));
  a = ask("gelu of 0.7 (erf, not tanh)");
  EXPECT_TRUE(has_number(a, 0.5 * 0.7 * (1 + std::erf(0.7 / std::sqrt(2.0))), 1e-6));
  a = ask("relu of -2 and 3");
  EXPECT_TRUE(has_number(a, 3.0));
  EXPECT_EQ(a.citations.at(0).url.find("act=relu") != std::string::npos, true) << a.citations.at(0).url;
  // FFN sizes
  a = ask("how many params in an ffn with d_model 512 and d_ff 2048");
  EXPECT_TRUE(has_number(a, 2.0 * 512 * 2048 + 2048 + 512));
  EXPECT_TRUE(has_number(a, 4.0 * 512 * 2048));
  a = ask("ffn parameters for d_model 64");  // d_ff assumed 4x, and said so
  EXPECT_TRUE(has_number(a, 2.0 * 64 * 256 + 256 + 64));
  EXPECT_NE(a.answer.find("4 × d_model"), std::string::npos);
  // Residual
  a = ask("x = [1, 2], delta = [0.5, -1], alpha 0.5, what's the residual output");
  EXPECT_TRUE(has_number(a, 1.25));
  EXPECT_TRUE(has_number(a, 1.5));
  EXPECT_NE(a.citations.at(0).url.find("alpha=0.5"), std::string::npos);
}

TEST_F(AssistantTest, GradientFlowAnswersAreTheGradientFlowPagesNumbersAndLinkThere) {
  const Answer a = ask("gradient norm at layer 0 with 50 layers and no residual");
  EXPECT_EQ(a.intent, "gradient_flow");
  EXPECT_GE(a.computation_ms, 0);
  const json page = server::compute_gradient_flow({{"n_layers", 50}, {"residual", false}}, server::Limits{});
  EXPECT_TRUE(has_number(a, page["layers"][0]["grad_norm_resid"].get<double>(), 1e-12));
  EXPECT_NE(a.answer.find("measured now"), std::string::npos);
  EXPECT_NE(a.citations.at(0).url.find("layers=50&residual=0"), std::string::npos) << a.citations.at(0).url;
}

TEST_F(AssistantTest, RemovingLayerNormIsAShortRealRunSaidToBeOne) {
  const Answer a = ask("what happens if i remove layernorm?");
  EXPECT_EQ(a.intent, "no_norm");
  EXPECT_NE(a.answer.find("A short measurement, run now"), std::string::npos);
  EXPECT_EQ(a.computed.size(), 4u);
  EXPECT_EQ(a.citations.at(0).section, "train#no-norm");
}

TEST_F(AssistantTest, PageStateQuestionsAreAnsweredAboutThePageAsItIs) {
  const Answer a = ask("why did the bars shrink?", "ffn", {{"text", "Four score and seven"}, {"act", "relu"}});
  EXPECT_EQ(a.intent, "page_state");
  EXPECT_EQ(a.citations.at(0).section, "ffn#activation");
  EXPECT_NE(a.citations.at(0).url.find("act=relu"), std::string::npos);
  EXPECT_NE(a.answer.find("ReLU"), std::string::npos);
  // The numbers are the FFN widget's: the FFN of layer 0 on the tracked row.
  const Answer ln = ask("what's the std here?", "layernorm", {{"x", json::array({json::array({5, 5.1, 4.9})})}});
  EXPECT_TRUE(has_number(ln, 5.0));
  EXPECT_TRUE(has_number(ln, std::sqrt(0.02 / 3 + 1e-5)));
  const Answer off = ask("the output is exactly the same as x, is it broken", "other-half", {{"comp", "residual"}, {"alpha", 0}});
  EXPECT_NE(off.answer.find("α = 0"), std::string::npos) << off.answer;
}

TEST_F(AssistantTest, OutOfScopeQuestionsGetAnHonestIDontKnowWithTheNearestSections) {
  for (const char* q : {"what is the capital of France", "who won the world cup in 2010", "how many layers does GPT-4 have",
                        "what's the residual value of a 5 year old car", "how do I normalise a database schema"}) {
    const Answer a = ask(q, "layernorm", {{"tab", "mean"}});
    EXPECT_EQ(a.status, "unknown") << q << ": " << a.answer;
    EXPECT_TRUE(a.computed.empty()) << q;
    EXPECT_NE(a.answer.find("I don't know"), std::string::npos) << q;
  }
}

TEST_F(AssistantTest, BadQuestionsAndStatesAreRefusedNamingTheField) {
  auto refused = [](const json& body, const std::string& field) {
    try {
      (void)assistant_->ask(read_question(body));
      ADD_FAILURE() << body.dump() << ": expected a refusal";
    } catch (const server::ApiError& e) {
      EXPECT_EQ(e.status, 400) << body.dump();
      EXPECT_EQ(e.field, field) << body.dump() << ": " << e.what();
    }
  };
  refused({{"question", ""}}, "question");
  refused({{"question", "   "}}, "question");
  refused({{"question", std::string(2001, 'a')}}, "question");
  refused({{"question", 42}}, "question");
  refused({{"question", "hi"}, {"page", "nope"}}, "page");
  refused({{"question", "hi"}, {"context", "x"}}, "context");
  refused({{"question", "hi"}, {"colour", "red"}}, "colour");
  refused({{"question", "why is the std like this here"}, {"page", "layernorm"}, {"context", {{"x", "not a matrix"}}}}, "context.x");
  refused({{"question", "gradient norm with 1000 layers"}}, "question");
  // a depth past double's range, or not whole: refused as written (it threw stod, then printed INT64_MIN)
  for (const auto& [q, got] : {std::pair{"gradient norm at " + std::string(1900, '1') + " layers", std::string("got inf")},
                                std::pair{std::string("gradient norm with 2.5 layers"), std::string("got 2.5")}}) {
    refused({{"question", q}}, "question");
    try {
      (void)assistant_->ask(read_question({{"question", q}}));
    } catch (const server::ApiError& e) {
      EXPECT_NE(std::string(e.what()).find("expected 1 to 100 layers (the gradient-flow page's range), " + got), std::string::npos) << e.what();
    }
  }
  refused({{"question", "layernorm of [1e308, 1e308]"}}, "question");
  // 2000 characters are fine, in code points: 2000 é are 4000 bytes.
  std::string e;
  for (int i = 0; i < 2000; ++i) e += "é";
  EXPECT_NO_THROW((void)assistant_->ask(read_question({{"question", e}})));
}

TEST_F(AssistantTest, HostileQuestionsFinishQuicklyAndEchoNothing) {
  const std::vector<std::string> hostile = {std::string(2000, '['), std::string(2000, '('), std::string(2000, '1'),
                                            [] { std::string s; for (int i = 0; i < 666; ++i) s += "[1,"; return s; }(),
                                            [] { std::string s; for (int i = 0; i < 280; ++i) s += "[[1,2],"; return s; }(),
                                            "<img src=x onerror=alert(1)> layernorm of [1, 2]",
                                            // a number past double's range before the words that name it (threw stod)
                                            "ffn flops for " + std::string(1900, '9') + " tokens",
                                            std::string(1000, 'a') + " " + std::string(999, 'b')};
  for (const std::string& q : hostile) {
    Answer a;
    ASSERT_NO_THROW(a = assistant_->ask(read_question({{"question", q}}))) << q.substr(0, 40);
    EXPECT_LT(a.elapsed_ms, 2000) << q.substr(0, 40);
    EXPECT_EQ(a.answer.find("<img"), std::string::npos);
  }
}

TEST_F(AssistantTest, TheEvaluationSetsTargetsHold) {
  Result<EvalReport> r = run_eval(*assistant_, builtin_eval_set());
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_GE(r->rows.size(), 60u);
  EXPECT_GE(r->out_of_scope, 10);
  EXPECT_TRUE(r->targets_hold()) << to_markdown(r.value(), true);
}

}  // namespace
}  // namespace blocklab::assistant
