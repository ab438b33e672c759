// The tests' PostgreSQL: ctest's `postgres` fixture (scripts/test_postgres.sh) starts one server for the
// whole run and names it in BLOCKLAB_TEST_POSTGRES; each test takes a fresh, empty database on it, so
// tests run in parallel without seeing each other's rows. Without the server the test fails, naming
// why: it is never skipped.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#include "lab/database.h"

namespace blocklab::testing {

// The URL of a new database, or "" after a failure was recorded.
inline std::string fresh_postgres_database() {
  const char* admin = std::getenv("BLOCKLAB_TEST_POSTGRES");
  if (!admin || !*admin) {
    ADD_FAILURE() << "BLOCKLAB_TEST_POSTGRES is not set: run this test through ctest (its postgres fixture starts the "
                     "server), or start one with scripts/test_postgres.sh start DIR and set it to the URL printed";
    return "";
  }
  static std::atomic<int> counter{0};
  const std::string name = "t" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
  Result<std::shared_ptr<lab::Database>> db = lab::Database::open(admin);
  if (!db) {
    ADD_FAILURE() << "the tests' PostgreSQL server does not answer: " << db.status().message();
    return "";
  }
  Status st = db.value()->query("CREATE DATABASE " + name).status();
  if (!st) {
    ADD_FAILURE() << "cannot make a test database: " << st.message();
    return "";
  }
  // The admin URL is postgresql:///postgres?…: the same server, another database.
  std::string url = admin;
  const size_t at = url.find("/postgres?");
  if (at == std::string::npos) {
    ADD_FAILURE() << "BLOCKLAB_TEST_POSTGRES: expected postgresql:///postgres?…, got " << url;
    return "";
  }
  return url.replace(at + 1, 8, name);
}

// The backends a store test runs on, for INSTANTIATE_TEST_SUITE_P.
inline const std::vector<std::string> kBackends = {"sqlite", "postgres"};
inline std::string backend_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

}  // namespace blocklab::testing
