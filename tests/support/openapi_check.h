// Checks a JSON value against a schema of docs/openapi.json: the JSON Schema subset that file uses
// (type, enum, const, required, properties, additionalProperties, items, allOf, $ref). Returns the
// problems, each with the path inside the value; empty means it conforms.
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace blocklab::testing {

using json = nlohmann::json;

class OpenApi {
 public:
  explicit OpenApi(const std::string& path) {
    std::ifstream in(path);
    doc_ = json::parse(in);
  }
  const json& doc() const { return doc_; }

  // The response schema of `method` `path_template` for `status`, with content type JSON.
  const json& response_schema(const std::string& path_template, const std::string& method, int status) const {
    return doc_.at("paths").at(path_template).at(method).at("responses").at(std::to_string(status))
        .at("content").at("application/json").at("schema");
  }

  std::vector<std::string> check(const json& value, const json& schema, const std::string& where = "$") const {
    std::vector<std::string> problems;
    validate(value, schema, where, problems);
    return problems;
  }

 private:
  const json& resolve(const json& schema) const {
    if (!schema.contains("$ref")) return schema;
    const std::string ref = schema["$ref"];  // "#/components/schemas/Name"
    return resolve(doc_.at("components").at("schemas").at(ref.substr(ref.rfind('/') + 1)));
  }

  static bool has_type(const json& v, const std::string& t) {
    if (t == "object") return v.is_object();
    if (t == "array") return v.is_array();
    if (t == "string") return v.is_string();
    if (t == "boolean") return v.is_boolean();
    if (t == "null") return v.is_null();
    if (t == "integer") return v.is_number_integer();
    if (t == "number") return v.is_number();
    return false;
  }

  void validate(const json& v, const json& raw, const std::string& where, std::vector<std::string>& out) const {
    const json& s = resolve(raw);
    if (s.contains("allOf"))
      for (const json& part : s["allOf"]) validate(v, part, where, out);
    if (s.contains("type")) {
      bool ok = false;
      if (s["type"].is_array()) {
        for (const json& t : s["type"]) ok = ok || has_type(v, t.get<std::string>());
      } else {
        ok = has_type(v, s["type"].get<std::string>());
      }
      if (!ok) {
        out.push_back(where + ": expected type " + s["type"].dump() + ", got " + v.type_name());
        return;
      }
    }
    if (s.contains("enum") && std::find(s["enum"].begin(), s["enum"].end(), v) == s["enum"].end())
      out.push_back(where + ": expected one of " + s["enum"].dump() + ", got " + v.dump());
    if (s.contains("const") && v != s["const"]) out.push_back(where + ": expected " + s["const"].dump() + ", got " + v.dump());
    if (v.is_object()) {
      if (s.contains("required"))
        for (const json& key : s["required"])
          if (!v.contains(key.get<std::string>())) out.push_back(where + ": missing required \"" + key.get<std::string>() + "\"");
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (s.contains("properties") && s["properties"].contains(it.key())) {
          validate(it.value(), s["properties"][it.key()], where + "." + it.key(), out);
        } else if (s.contains("additionalProperties")) {
          const json& ap = s["additionalProperties"];
          if (ap.is_boolean() && !ap.get<bool>()) out.push_back(where + ": unexpected property \"" + it.key() + "\"");
          else if (ap.is_object()) validate(it.value(), ap, where + "." + it.key(), out);
        }
      }
    }
    if (v.is_array() && s.contains("items"))
      for (size_t i = 0; i < v.size(); ++i) validate(v[i], s["items"], where + "[" + std::to_string(i) + "]", out);
  }

  json doc_;
};

}  // namespace blocklab::testing
