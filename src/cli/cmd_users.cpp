// blocklab users add NAME [--role student|teacher] [--password-file F] | list | remove NAME |
//                 set-role NAME ROLE | block NAME | unblock NAME | class-code [--hours H]   [--db F]
// The accounts of `blocklab serve` (docs/accounts.md), in its store; the first teacher is made here.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>

#include "cli/cli_common.h"
#include "io/safetensors.h"
#include "cli/commands.h"
#include "lab/run_store.h"
#include "server/account_store.h"
#include "server/auth.h"

namespace blocklab::cli {

namespace {

struct UsersArgs {
  std::string db = "blocklab.db", name, role = "student", password_file;
  int64_t hours = 168;
  bool json = false;
  CLI::App *add = nullptr, *list = nullptr, *remove = nullptr, *set_role = nullptr, *block = nullptr, *unblock = nullptr,
           *class_code = nullptr;
};

// The password: the first line of --password-file, or of standard input (not echoed when a terminal).
Result<std::string> read_password(const UsersArgs& a) {
  std::string line;
  if (!a.password_file.empty()) {
    BLOCKLAB_RETURN_IF_ERROR(io::expect_regular_file(a.password_file).with_context("--password-file"));
    std::ifstream in(a.password_file);
    if (!in) return Status::error("--password-file " + a.password_file + ": cannot open");
    std::getline(in, line);
  } else {
    if (::isatty(0)) std::fprintf(stderr, "password for %s: ", a.name.c_str());
    std::getline(std::cin, line);
    if (::isatty(0)) std::fprintf(stderr, "\n");
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (auto why = server::password_problem(line)) return Status::error("password: " + *why);
  return line;
}

int run_users(const UsersArgs& a) {
  const std::string cmd = "users";
  Result<std::unique_ptr<lab::RunStore>> runs = lab::RunStore::open(a.db);  // creates and migrates the store
  if (!runs) return fail(cmd, runs.status());
  Result<std::unique_ptr<server::AccountStore>> store = server::AccountStore::open(a.db);
  if (!store) return fail(cmd, store.status());
  server::AccountStore& s = *store.value();
  if (server::sodium_init_once() != 0) return fail(cmd, "libsodium: cannot initialise");
  auto role_ok = [&](const std::string& role) { return role == "student" || role == "teacher"; };
  if (a.add->parsed()) {
    if (auto why = server::username_problem(a.name)) return fail(cmd + " add", "NAME '" + a.name + "': " + *why);
    if (!role_ok(a.role)) return fail(cmd + " add", "--role: expected student or teacher, got " + a.role);
    Result<std::string> password = read_password(a);
    if (!password) return fail(cmd + " add", password.status());
    Result<server::User> u = s.create_user(a.name, server::hash_password(*password), a.role);
    if (!u) return fail(cmd + " add", u.status());
    (void)s.log("cli", "add", "user:" + u->name, "role " + u->role);
    std::printf("added %s (%s)\n", u->name.c_str(), u->role.c_str());
    return 0;
  }
  if (a.list->parsed()) {
    Result<std::vector<server::User>> users = s.list_users();
    if (!users) return fail(cmd + " list", users.status());
    std::printf("%-32s  %-8s  %-8s  %s\n", "name", "role", "blocked", "created");
    for (const server::User& u : users.value())
      std::printf("%-32s  %-8s  %-8s  %s\n", u.name.c_str(), u.role.c_str(), u.blocked ? "yes" : "no", u.created_at.c_str());
    return 0;
  }
  if (a.remove->parsed()) {
    const Status st = s.remove_user(a.name);
    if (!st) return fail(cmd + " remove", st);
    (void)s.log("cli", "remove", "user:" + a.name);
    std::printf("removed %s, its sessions and comments\n", a.name.c_str());
    return 0;
  }
  if (a.set_role->parsed()) {
    if (!role_ok(a.role)) return fail(cmd + " set-role", "ROLE: expected student or teacher, got " + a.role);
    const Status st = s.set_role(a.name, a.role);
    if (!st) return fail(cmd + " set-role", st);
    (void)s.log("cli", "set-role", "user:" + a.name, a.role);
    std::printf("%s is a %s\n", a.name.c_str(), a.role.c_str());
    return 0;
  }
  if (a.block->parsed() || a.unblock->parsed()) {
    const bool block = a.block->parsed();
    const Status st = s.set_blocked(a.name, block);
    if (!st) return fail(cmd + (block ? " block" : " unblock"), st);
    (void)s.log("cli", block ? "block" : "unblock", "user:" + a.name);
    std::printf("%s %s\n", a.name.c_str(), block ? "blocked (its sessions ended)" : "unblocked");
    return 0;
  }
  // class-code
  const std::string code = server::new_class_code();
  const double now = lab::wall_clock_s();
  const Status st = s.add_class_code(server::token_hash(server::normalise_class_code(code)), 0, now + double(a.hours) * 3600);
  if (!st) return fail(cmd + " class-code", st);
  (void)s.log("cli", "class_code", "registration", "valid " + std::to_string(a.hours) + " h");
  std::printf("%s\n", code.c_str());
  std::fprintf(stderr, "class code valid for %lld h: students register with it (serve --registration code)\n",
               (long long)a.hours);
  return 0;
}

}  // namespace

Runner add_users_command(CLI::App& sub) {
  auto a = std::make_shared<UsersArgs>();
  sub.require_subcommand(1, 1);
  sub.footer("Accounts of `blocklab serve`, in its store (docs/accounts.md). Passwords are read from standard input "
             "(its first line) or --password-file, and stored only as argon2id hashes.");
  a->add = sub.add_subcommand("add", "a new account (the first teacher is made here)");
  a->add->add_option("name", a->name, "username: 3-32 of A-Z a-z 0-9 _ . -")->required();
  a->add->add_option("--role", a->role, "student (default) or teacher");
  a->add->add_option("--password-file", a->password_file, "read the password from this file's first line");
  a->list = sub.add_subcommand("list", "every account: name, role, blocked, created");
  a->remove = sub.add_subcommand("remove", "delete an account, its sessions and its comments");
  a->remove->add_option("name", a->name, "username")->required();
  a->set_role = sub.add_subcommand("set-role", "make an account a student or a teacher");
  a->set_role->add_option("name", a->name, "username")->required();
  a->set_role->add_option("role", a->role, "student or teacher")->required();
  a->block = sub.add_subcommand("block", "block an account (it cannot sign in; its sessions end)");
  a->block->add_option("name", a->name, "username")->required();
  a->unblock = sub.add_subcommand("unblock", "unblock an account");
  a->unblock->add_option("name", a->name, "username")->required();
  a->class_code = sub.add_subcommand("class-code", "a new class code for `serve --registration code`, printed once");
  a->class_code->add_option("--hours", a->hours, "valid for this many hours (default 168)")->check(CLI::Range(1, 24 * 90));
  for (CLI::App* s : {a->add, a->list, a->remove, a->set_role, a->block, a->unblock, a->class_code})
    add_db_flag(*s, a->db, "the server's store");
  return [a] { return run_users(*a); };
}

}  // namespace blocklab::cli
