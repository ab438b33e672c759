// blocklab tokenize --model DIR [--json] [--decode] TEXT|-
// GPT-2's tokenizer (contract section 8; src/text/gpt2_tokenizer.h): TEXT's token ids on one line, separated by
// spaces. "-" reads the text from standard input. --decode goes the other way: TEXT is ids, the output their text.
// --json prints {"ids", "tokens", "pieces"} (and "text" with --decode).
#include <cstdio>
#include <iostream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "text/gpt2_tokenizer.h"

namespace blocklab::cli {

namespace {

using json = nlohmann::json;

struct TokenizeArgs {
  std::string model, text;
  bool json = false, decode = false;
};

// Standard input, every byte, up to the tokenizer's limit.
Result<std::string> read_stdin() {
  std::string text;
  char buf[1 << 16];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) {
    text.append(buf, n);
    if (text.size() > text::kMaxTextBytes)
      return Status::error("standard input: more than " + std::to_string(text::kMaxTextBytes) +
                           " bytes: expected at most " + std::to_string(text::kMaxTextBytes) + " bytes of text");
  }
  if (std::ferror(stdin)) return Status::error("standard input: read failed");
  return text;
}

// "15496 995", "15496, 995" or "[15496, 995]": ids separated by spaces or commas.
Result<std::vector<int32_t>> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0, word = 0;
  const auto sep = [](char c) { return c == ' ' || c == ',' || c == '\t' || c == '\n' || c == '\r' || c == '[' || c == ']'; };
  while (i < s.size()) {
    while (i < s.size() && sep(s[i])) ++i;
    if (i == s.size()) break;
    const size_t start = i;
    while (i < s.size() && !sep(s[i])) ++i;
    const std::string w = s.substr(start, i - start);
    ++word;
    bool digits = w.size() <= 10;
    for (char c : w) digits = digits && c >= '0' && c <= '9';
    if (!digits || std::stoll(w) > std::numeric_limits<int32_t>::max())
      return Status::error("TEXT: word " + std::to_string(word) + ": expected a token id (a non-negative integer), got " +
                           json(w.substr(0, 40)).dump(-1, ' ', false, json::error_handler_t::replace));
    ids.push_back(int32_t(std::stoll(w)));
  }
  return ids;
}

json describe(const text::Gpt2Tokenizer& tok, const std::vector<int32_t>& ids) {
  json tokens = json::array(), pieces = json::array();
  for (int32_t id : ids) {
    tokens.push_back(tok.token(id));
    pieces.push_back(tok.decode(std::span<const int32_t>(&id, 1)).value());
  }
  return json{{"ids", ids}, {"tokens", std::move(tokens)}, {"pieces", std::move(pieces)}};
}

int run_tokenize(const TokenizeArgs& a) {
  const std::string cmd = "tokenize";
  Result<text::Gpt2Tokenizer> tok = text::Gpt2Tokenizer::load(a.model);
  if (!tok) return fail(cmd, tok.status().with_context("--model"));
  std::string input = a.text;
  if (a.text == "-") {
    Result<std::string> in = read_stdin();
    if (!in) return fail(cmd, in.status());
    input = std::move(in).value();
  }
  if (a.decode) {
    Result<std::vector<int32_t>> ids = parse_ids(input);
    if (!ids) return fail(cmd, ids.status());
    Result<std::string> text = tok->decode(ids.value());
    if (!text) return fail(cmd, text.status().with_context("TEXT"));
    if (a.json) {
      json j = describe(tok.value(), ids.value());
      j["text"] = text.value();
      std::cout << j.dump() << "\n";
    } else {
      std::cout << text.value();  // the text exactly: no newline of its own
    }
    return 0;
  }
  Result<std::vector<int32_t>> ids = tok->encode(input);
  if (!ids) return fail(cmd, ids.status().with_context(a.text == "-" ? "standard input" : "TEXT"));
  if (a.json) {
    std::cout << describe(tok.value(), ids.value()).dump() << "\n";
    return 0;
  }
  std::string line;
  line.reserve(ids->size() * 6 + 1);
  for (size_t i = 0; i < ids->size(); ++i) {
    if (i) line += ' ';
    line += std::to_string(ids.value()[i]);
  }
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stdout);
  return 0;
}

}  // namespace

Runner add_tokenize_command(CLI::App& sub) {
  auto a = std::make_shared<TokenizeArgs>();
  sub.footer(
      "GPT-2's byte-level BPE, exactly as OpenAI's encoder.py (docs/gpt2.md, \"Tokenizer\"). DIR holds vocab.json +\n"
      "merges.txt (Hugging Face), or encoder.json + vocab.bpe (OpenAI's release). TEXT must be UTF-8, at most 64 MiB;\n"
      "\"<|endoftext|>\" in it is text (as in encoder.py), not id 50256. A TEXT that starts with '-': put -- before it.\n"
      "--json: {\"ids\": [...], \"tokens\": [as the vocabulary spells them, \"Ġworld\"], \"pieces\": [what each stands\n"
      "for, \" world\"; U+FFFD for a token that is part of a character]}.\n"
      "--decode: TEXT is token ids separated by spaces or commas; prints their text (bytes that are not UTF-8 as\n"
      "U+FFFD, as encoder.py's decode), without a newline of its own; --json adds \"text\" to the object above.");
  sub.add_option("--model", a->model, "the folder with the tokenizer's files (a GPT-2 checkpoint's folder)")
      ->required()
      ->type_name("DIR");
  sub.add_option("text", a->text, "the text, or - to read it from standard input")->required();
  sub.add_flag("--json", a->json, "print the ids with their tokens and pieces as one JSON object");
  sub.add_flag("--decode", a->decode, "TEXT is token ids: print their text");
  return [a] { return run_tokenize(*a); };
}

}  // namespace blocklab::cli
