// `conclave keys`: the operator's side of the API key store
// (server/auth/key_store.h, docs/auth.md). Works on the store file alone; no
// server needs to run, and a running one picks the changes up by itself.
//
//   keys issue --store FILE --name NAME [--requests-per-minute N]
//              [--tokens-per-minute N] [--max-concurrent N] [--max-agents N]
//              [--max-thinking-budget N]
//       Adds a key (creating FILE if needed) and prints it on stdout, the
//       only time it is ever shown; stderr says so.
//   keys revoke --store FILE ID
//       Marks key ID revoked (a second revoke changes nothing).
//   keys list --store FILE [--json]
//       Every key: id, name, creation, status, limit overrides. Never a
//       secret, salt or hash.
#ifndef CONCLAVE_SERVER_CLI_KEYS_COMMAND_H_
#define CONCLAVE_SERVER_CLI_KEYS_COMMAND_H_

#include <string>
#include <vector>

namespace conclave::server {

// Runs `conclave keys ARGS...`: `args` are the positional arguments after
// "keys" (the subcommand first); the keys flags above are absl flags of the
// binary, --json is passed in. Returns the exit status: 0 done, 1 the store
// could not be read or written, 2 bad usage.
int RunKeysCommand(const std::vector<std::string>& args, bool json);

// The usage lines of `conclave keys`, for the binary's --help.
const char* KeysUsage();

}  // namespace conclave::server

#endif  // CONCLAVE_SERVER_CLI_KEYS_COMMAND_H_
