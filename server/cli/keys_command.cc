#include "server/cli/keys_command.h"

#include <cstdint>
#include <iostream>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "server/auth/api_key.h"
#include "server/auth/key_store.h"
#include "server/auth/quota.h"

ABSL_FLAG(std::string, store, "", "keys: the API key store file");
ABSL_FLAG(std::string, name, "", "keys issue: who the key is for (a label)");
ABSL_FLAG(std::optional<int64_t>, requests_per_minute, std::nullopt,
          "keys issue: the key's requests per minute (0: no limit; default: the server's)");
ABSL_FLAG(std::optional<int64_t>, tokens_per_minute, std::nullopt,
          "keys issue: the key's prompt + generated tokens per minute (0: no limit)");
ABSL_FLAG(std::optional<int64_t>, max_concurrent, std::nullopt,
          "keys issue: the key's requests running at once (0: no limit)");
ABSL_FLAG(std::optional<int64_t>, max_agents, std::nullopt,
          "keys issue: the key's agents per request (0: no limit)");
ABSL_FLAG(std::optional<int64_t>, max_thinking_budget, std::nullopt,
          "keys issue: the key's thinking budget per request (0: no limit)");

namespace conclave::server {
namespace {

namespace auth = conclave::server::auth;

constexpr int kFailed = 1;
constexpr int kUsage = 2;

int UsageError(const std::string& message) {
  std::cerr << "conclave keys: " << message << "\n(run conclave --help for usage)\n";
  return kUsage;
}

int Failed(const absl::Status& status) {
  std::cerr << "conclave keys: " << absl::StatusCodeToString(status.code()) << ": "
            << status.message() << "\n";
  return kFailed;
}

// "max_agents=4 tokens_per_minute=0", or "" when the key keeps the defaults.
std::string OverridesText(const auth::QuotaOverrides& limits) {
  std::vector<std::string> parts;
  for (const auth::QuotaField& field : auth::kQuotaFields) {
    const std::optional<int64_t>& v = limits.*field.override;
    if (v.has_value()) parts.push_back(absl::StrCat(field.name, "=", *v));
  }
  return absl::StrJoin(parts, " ");
}

int Issue(const std::string& store_path) {
  const std::string name = absl::GetFlag(FLAGS_name);
  if (name.empty()) return UsageError("keys issue needs --name NAME (who the key is for)");
  auth::QuotaOverrides limits;
  limits.requests_per_minute = absl::GetFlag(FLAGS_requests_per_minute);
  limits.tokens_per_minute = absl::GetFlag(FLAGS_tokens_per_minute);
  limits.max_concurrent_requests = absl::GetFlag(FLAGS_max_concurrent);
  limits.max_agents = absl::GetFlag(FLAGS_max_agents);
  limits.max_thinking_budget = absl::GetFlag(FLAGS_max_thinking_budget);
  if (absl::Status s = auth::ValidateKeyName(name); !s.ok()) {
    return UsageError(absl::StrCat("--name: ", s.message()));
  }
  if (absl::Status s = auth::ValidateOverrides(limits); !s.ok()) {
    return UsageError(std::string(s.message()));
  }
  std::string key;
  std::string id;
  const absl::Status status =
      auth::UpdateKeyStoreFile(store_path, /*create=*/true, [&](auth::KeyStore& store) {
        absl::StatusOr<std::string> issued = store.Issue(name, limits, absl::Now());
        if (!issued.ok()) return issued.status();
        key = *issued;
        id = store.keys().back().id;
        return absl::OkStatus();
      });
  if (!status.ok()) return Failed(status);
  std::cout << key << "\n" << std::flush;
  std::cerr << "issued key " << id << " for \"" << name << "\" in " << store_path
            << "; the key above is shown only this once and will not be shown again: "
               "give it to its owner now\n";
  return 0;
}

int Revoke(const std::string& store_path, const std::string& id) {
  if (absl::StartsWith(id, auth::kApiKeyPrefix)) {
    // Not repeated: it is probably a whole key, secret included.
    return UsageError("keys revoke takes the key's id (12 characters, see keys list), not the key");
  }
  if (!auth::IsValidKeyId(id)) {
    return UsageError(absl::StrCat("\"", id, "\" is not a key id (12 characters of a-z, 2-7)"));
  }
  std::string name;
  const absl::Status status =
      auth::UpdateKeyStoreFile(store_path, /*create=*/false, [&](auth::KeyStore& store) {
        if (const auth::KeyRecord* record = store.Find(id)) name = record->name;
        return store.Revoke(id, absl::Now());
      });
  if (absl::IsFailedPrecondition(status)) {  // already revoked: nothing to do
    std::cerr << "conclave keys: " << status.message() << "\n";
    return 0;
  }
  if (!status.ok()) return Failed(status);
  std::cerr << "revoked key " << id << " (\"" << name << "\"); the server refuses it from its "
            << "next reload of " << store_path << "\n";
  return 0;
}

int List(const std::string& store_path, bool json) {
  absl::StatusOr<auth::KeyStore> store = auth::KeyStore::Load(store_path);
  if (!store.ok()) return Failed(store.status());
  if (json) {
    // Deliberately field by field: salt and hash never leave the store.
    nlohmann::ordered_json keys = nlohmann::ordered_json::array();
    for (const auth::KeyRecord& record : store->keys()) {
      nlohmann::ordered_json key = {{"id", record.id},
                                    {"name", record.name},
                                    {"created", auth::FormatKeyTime(record.created)},
                                    {"revoked", record.revoked}};
      if (record.revoked_at.has_value())
        key["revoked_at"] = auth::FormatKeyTime(*record.revoked_at);
      nlohmann::ordered_json limits = nlohmann::ordered_json::object();
      for (const auth::QuotaField& field : auth::kQuotaFields) {
        const std::optional<int64_t>& v = record.limits.*field.override;
        if (v.has_value()) limits[field.name] = *v;
      }
      key["limits"] = limits;
      keys.push_back(std::move(key));
    }
    std::cout << nlohmann::ordered_json{{"keys", keys}}.dump() << "\n";
    return 0;
  }
  std::cout << absl::StrFormat("%-12s  %-24s  %-20s  %-28s  %s\n", "ID", "NAME", "CREATED",
                               "STATUS", "LIMITS");
  for (const auth::KeyRecord& record : store->keys()) {
    const std::string status =
        record.revoked ? (record.revoked_at.has_value()
                              ? absl::StrCat("revoked ", auth::FormatKeyTime(*record.revoked_at))
                              : std::string("revoked"))
                       : std::string("active");
    const std::string limits = OverridesText(record.limits);
    std::cout << absl::StrFormat("%-12s  %-24s  %-20s  %-28s  %s\n", record.id, record.name,
                                 auth::FormatKeyTime(record.created), status,
                                 limits.empty() ? "defaults" : limits);
  }
  return 0;
}

}  // namespace

const char* KeysUsage() {
  return "  keys issue --store FILE --name NAME [--requests-per-minute N] [--tokens-per-minute N]\n"
         "           [--max-concurrent N] [--max-agents N] [--max-thinking-budget N]\n"
         "  keys revoke --store FILE ID\n"
         "  keys list --store FILE [--json]";
}

int RunKeysCommand(const std::vector<std::string>& args, bool json) {
  if (args.empty()) return UsageError("keys needs a subcommand: issue, revoke or list");
  const std::string& command = args[0];
  if (command != "issue" && command != "revoke" && command != "list") {
    return UsageError(
        absl::StrCat("unknown keys subcommand \"", command, "\"; use issue, revoke or list"));
  }
  const std::string store_path = absl::GetFlag(FLAGS_store);
  if (store_path.empty()) return UsageError(absl::StrCat("keys ", command, " needs --store FILE"));
  if (command == "revoke") {
    if (args.size() != 2) return UsageError("keys revoke takes one key id");
    return Revoke(store_path, args[1]);
  }
  if (args.size() != 1) return UsageError(absl::StrCat("keys ", command, " takes no arguments"));
  return command == "issue" ? Issue(store_path) : List(store_path, json);
}

}  // namespace conclave::server
