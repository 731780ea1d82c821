// conclave: command-line client of the conclave.v1 gRPC API.
//
//   conclave [--server 127.0.0.1:50051] [--timeout SECONDS] [--api-key KEY]
//            [--tls-ca FILE] COMMAND ...
//
// --tls-ca dials a server started with --tls-cert over TLS, trusting the
// PEM certificates in FILE (the server's own, or the CA that signed it);
// without it the connection is plaintext.
//
// The API key of a server started with --api-keys comes from --api-key or,
// better (it stays out of the process list and shell history), from the
// CONCLAVE_API_KEY environment variable; it is sent as
// "authorization: Bearer KEY".
//
//   generate [--mode instant|thinking] [--thinking-budget N] [--max-tokens N]
//            [--temperature T] [--top-p P] [--seed S] [--logprobs N]
//            [--system TEXT] [--stop S] [--json] "prompt"
//       Streams the answer as it is generated (thinking text first, under
//       a "[thinking]" header, in thinking mode); a summary line (finish
//       reason, tokens, timings) goes to stderr.
//   models [--json]
//       Lists the served models.
//   contemplate [--agents N] [--aggregator majority|confidence|verifier|synthesis]
//            [--answer-format auto|gsm8k|boxed|answer_line|multiple_choice|number]
//            [--temperature T] [--temperature-spread S] [--seed S]
//            [--thinking-budget N] [--max-tokens N] [--roles R1,R2]
//            [--stop S] [--stream-agent-text] [--json] "question"
//       Prints the agents' progress and the final answer.
//       --stop S: one stop string, with C escapes ('\n' is a newline).
//   keys issue|revoke|list --store FILE ...
//       Manages the server's API key store (cli/keys_command.h); needs no
//       server.
//
// "-" as the prompt reads it from stdin. --json prints one JSON object per
// streamed message (proto3 JSON, field names as in conclave.proto).
// Exit status: 0 on success, 1 when the RPC fails (the gRPC status is
// printed), 2 for bad usage.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "conclave/v1/conclave.grpc.pb.h"
#include "engine/tools/dash_flags.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "server/cli/keys_command.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "address of conclave-server (host:port)");
ABSL_FLAG(double, timeout, 0, "deadline of the call in seconds (0: none)");
ABSL_FLAG(std::string, api_key, "",
          "API key for a server with --api-keys (default: $CONCLAVE_API_KEY)");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM certificates to trust: dial the server over TLS (one started with --tls-cert)");
ABSL_FLAG(bool, json, false, "print one JSON object per streamed message");
ABSL_FLAG(std::string, mode, "instant", "generate: instant or thinking");
ABSL_FLAG(std::optional<int>, thinking_budget, std::nullopt, "most thinking tokens");
ABSL_FLAG(std::optional<int>, max_tokens, std::nullopt, "most generated tokens");
ABSL_FLAG(std::optional<double>, temperature, std::nullopt, "sampling temperature (0: greedy)");
ABSL_FLAG(std::optional<double>, top_p, std::nullopt, "nucleus sampling threshold");
ABSL_FLAG(std::optional<uint64_t>, seed, std::nullopt, "sampling seed");
ABSL_FLAG(int, logprobs, 0, "generate: alternatives reported per token (0-20)");
ABSL_FLAG(std::string, system, "", "system message");
ABSL_FLAG(std::string, stop, "",
          "generate, contemplate: a stop string, with C escapes ('\\n' is a newline)");
ABSL_FLAG(std::optional<int>, agents, std::nullopt, "contemplate: number of agents");
ABSL_FLAG(std::string, aggregator, "", "contemplate: majority, confidence, verifier, synthesis");
ABSL_FLAG(std::string, answer_format, "",
          "contemplate: auto, gsm8k, boxed, answer_line, multiple_choice, number");
ABSL_FLAG(std::optional<double>, temperature_spread, std::nullopt,
          "contemplate: spread of the agents' temperatures");
ABSL_FLAG(std::vector<std::string>, roles, {}, "contemplate: role prompts, comma-separated");
ABSL_FLAG(bool, stream_agent_text, false, "contemplate: stream every agent's text");

namespace {

namespace v1 = conclave::v1;

constexpr int kRpcFailed = 1;
constexpr int kUsage = 2;

int UsageError(const std::string& message) {
  std::cerr << "conclave: " << message << "\n(run conclave --help for usage)\n";
  return kUsage;
}

int RpcError(const grpc::Status& status) {
  std::cerr << "conclave: "
            << absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())) << ": "
            << status.error_message() << "\n";
  return kRpcFailed;
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) return "{}";
  return out;
}

// The call's deadline (--timeout) and API key (--api-key, else
// $CONCLAVE_API_KEY; none in open mode).
void PrepareContext(grpc::ClientContext& context) {
  std::string key = absl::GetFlag(FLAGS_api_key);
  if (key.empty()) {
    if (const char* env = std::getenv("CONCLAVE_API_KEY")) key = env;
  }
  if (!key.empty()) context.AddMetadata("authorization", "Bearer " + key);
  const double timeout = absl::GetFlag(FLAGS_timeout);
  if (timeout > 0) {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::microseconds(static_cast<int64_t>(timeout * 1e6)));
  }
}

// The user's prompt plus --system, as chat messages.
void AddMessages(const std::string& prompt,
                 google::protobuf::RepeatedPtrField<v1::ChatMessage>* messages) {
  if (!absl::GetFlag(FLAGS_system).empty()) {
    v1::ChatMessage* m = messages->Add();
    m->set_role(v1::ROLE_SYSTEM);
    m->set_content(absl::GetFlag(FLAGS_system));
  }
  v1::ChatMessage* m = messages->Add();
  m->set_role(v1::ROLE_USER);
  m->set_content(prompt);
}

std::string FinishName(v1::FinishReason reason) {
  std::string name = v1::FinishReason_Name(reason);
  return absl::AsciiStrToLower(name.substr(std::string("FINISH_REASON_").size()));
}

// Adds --stop, its C escapes decoded, to `stop`; false when they are bad.
bool AddStopFlag(google::protobuf::RepeatedPtrField<std::string>* stop) {
  const std::string flag = absl::GetFlag(FLAGS_stop);
  if (flag.empty()) return true;
  std::string text;
  if (!absl::CUnescape(flag, &text)) return false;
  *stop->Add() = std::move(text);
  return true;
}

int Generate(v1::Conclave::Stub& stub, const std::string& prompt) {
  v1::GenerateRequest request;
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "instant") {
    request.set_mode(v1::MODE_INSTANT);
  } else if (mode == "thinking") {
    request.set_mode(v1::MODE_THINKING);
  } else {
    return UsageError(absl::StrCat("--mode=", mode, ": use instant or thinking"));
  }
  AddMessages(prompt, request.mutable_messages());
  if (!AddStopFlag(request.mutable_stop())) return UsageError("--stop has a bad escape sequence");
  if (auto v = absl::GetFlag(FLAGS_max_tokens)) request.set_max_tokens(*v);
  if (auto v = absl::GetFlag(FLAGS_thinking_budget)) request.set_thinking_budget(*v);
  v1::SamplingParams* sampling = request.mutable_sampling();
  if (auto v = absl::GetFlag(FLAGS_temperature)) sampling->set_temperature(static_cast<float>(*v));
  if (auto v = absl::GetFlag(FLAGS_top_p)) sampling->set_top_p(static_cast<float>(*v));
  if (auto v = absl::GetFlag(FLAGS_seed)) sampling->set_seed(*v);
  sampling->set_logprobs(absl::GetFlag(FLAGS_logprobs));

  grpc::ClientContext context;
  PrepareContext(context);
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      stub.Generate(&context, request);
  const bool json = absl::GetFlag(FLAGS_json);
  const bool thinking = request.mode() == v1::MODE_THINKING;
  v1::Segment segment = v1::SEGMENT_UNSPECIFIED;
  v1::GenerateResponse response;
  std::optional<v1::GenerateFinal> final_message;
  while (reader->Read(&response)) {
    if (json) {
      std::cout << ToJson(response) << "\n" << std::flush;
      if (response.has_final()) final_message = response.final();
      continue;
    }
    if (response.has_delta()) {
      const v1::GenerateDelta& d = response.delta();
      if (thinking && d.segment() != segment) {
        std::cout << (segment == v1::SEGMENT_UNSPECIFIED ? "" : "\n")
                  << (d.segment() == v1::SEGMENT_THINKING ? "[thinking]\n" : "[answer]\n");
        segment = d.segment();
      }
      std::cout << d.text() << std::flush;
    } else if (response.has_final()) {
      final_message = response.final();
    }
  }
  const grpc::Status status = reader->Finish();
  if (!json) std::cout << "\n" << std::flush;
  if (!status.ok()) return RpcError(status);
  if (!json && final_message.has_value()) {
    const v1::GenerateFinal& f = *final_message;
    std::cerr << absl::StrFormat(
        "[finish=%s prompt_tokens=%d cached_prompt_tokens=%d generated_tokens=%d%s "
        "ttft=%.3fs total=%.3fs seed=%d id=%s]\n",
        FinishName(f.finish_reason()), f.usage().prompt_tokens(), f.usage().cached_prompt_tokens(),
        f.usage().generated_tokens(),
        thinking ? absl::StrCat(" thinking_tokens=", f.usage().thinking_tokens()) : "",
        f.timing().time_to_first_token_seconds(), f.timing().total_seconds(), f.seed(),
        f.request_id());
  }
  return 0;
}

int Models(v1::Conclave::Stub& stub) {
  grpc::ClientContext context;
  PrepareContext(context);
  v1::ListModelsResponse response;
  const grpc::Status status = stub.ListModels(&context, v1::ListModelsRequest(), &response);
  if (!status.ok()) return RpcError(status);
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << ToJson(response) << "\n";
    return 0;
  }
  std::cout << absl::StrFormat("%-32s %-8s %8s %6s %-14s %s\n", "ID", "ARCH", "CONTEXT", "AGENTS",
                               "CHAT FORMAT", "QUANT");
  for (const v1::ModelInfo& m : response.models()) {
    std::cout << absl::StrFormat("%-32s %-8s %8d %6d %-14s %s\n", m.id(), m.architecture(),
                                 m.context_length(), m.max_agents(), m.chat_format(),
                                 m.quantization());
  }
  return 0;
}

// Parses "majority" or "AGGREGATOR_MAJORITY" for an enum with `prefix`.
template <typename Enum>
bool ParseEnumFlag(const std::string& text, const std::string& prefix,
                   bool (*parse)(const std::string&, Enum*), Enum* out) {
  if (text.empty()) return true;
  std::string name = absl::AsciiStrToUpper(text);
  if (name.rfind(prefix, 0) != 0) name = prefix + name;
  return parse(name, out);
}

// Prints every agent's text a line at a time, prefixed with the agent.
class AgentLines {
 public:
  void Add(int agent, const std::string& text) {
    std::string& pending = pending_[agent];
    pending += text;
    size_t newline;
    while ((newline = pending.find('\n')) != std::string::npos) {
      std::cout << "  [agent " << agent << "] " << pending.substr(0, newline) << "\n";
      pending.erase(0, newline + 1);
    }
    std::cout << std::flush;
  }
  void Flush(int agent) {
    auto it = pending_.find(agent);
    if (it == pending_.end() || it->second.empty()) return;
    std::cout << "  [agent " << agent << "] " << it->second << "\n";
    it->second.clear();
  }

 private:
  std::map<int, std::string> pending_;
};

void PrintEvent(const v1::ContemplateEvent& event, AgentLines& lines) {
  switch (event.event_case()) {
    case v1::ContemplateEvent::kAgentStarted: {
      const v1::AgentStarted& e = event.agent_started();
      std::cout << absl::StrFormat("agent %d started (temperature %.2f, seed %d%s)\n", e.agent(),
                                   e.temperature(), e.seed(),
                                   e.role().empty() ? "" : absl::StrCat(", role \"", e.role(), "\""));
      break;
    }
    case v1::ContemplateEvent::kAgentText:
      lines.Add(event.agent_text().agent(), event.agent_text().text());
      break;
    case v1::ContemplateEvent::kAgentFinished: {
      const v1::AgentFinished& e = event.agent_finished();
      lines.Flush(e.agent());
      std::cout << absl::StrFormat(
          "agent %d finished: %s, confidence %.3f, %d tokens, %s\n", e.agent(),
          e.has_answer() ? absl::StrCat("answer \"", e.answer(), "\" (normalized \"",
                                        e.normalized_answer(), "\")")
                         : std::string("no answer"),
          e.confidence(), e.tokens(), FinishName(e.finish_reason()));
      break;
    }
    case v1::ContemplateEvent::kAgentStopped: {
      const v1::AgentStopped& e = event.agent_stopped();
      lines.Flush(e.agent());
      std::string reason = v1::AgentStopped::Reason_Name(e.reason());
      reason = absl::AsciiStrToLower(reason.substr(std::string("REASON_").size()));
      std::cout << absl::StrFormat("agent %d stopped (%s) after %d tokens\n", e.agent(), reason,
                                   e.tokens());
      break;
    }
    case v1::ContemplateEvent::kVerifierScores: {
      std::vector<std::string> scores;
      for (const auto& s : event.verifier_scores().scores()) {
        scores.push_back(absl::StrFormat("agent %d p_yes=%.3f", s.agent(), s.p_yes()));
      }
      std::cout << "verifier: " << absl::StrJoin(scores, ", ") << "\n";
      break;
    }
    case v1::ContemplateEvent::kFinalAnswer: {
      const v1::FinalAnswer& f = event.final_answer();
      std::cout << "\nfinal answer: " << f.answer() << "  (normalized \"" << f.normalized_answer()
                << "\", " << absl::AsciiStrToLower(v1::Aggregator_Name(f.aggregator()).substr(11))
                << absl::StrFormat(", support %.2f, confidence %.2f)\n", f.support(),
                                   f.confidence());
      if (!f.text().empty()) std::cout << f.text() << "\n";
      for (const v1::Vote& v : f.votes()) {
        std::cout << absl::StrFormat("  vote \"%s\": %d agents (weight %.3f; agents %s)\n",
                                     v.answer(), v.votes(), v.weight(),
                                     absl::StrJoin(v.agents(), ","));
      }
      const v1::ContemplateUsage& u = f.usage();
      std::cerr << absl::StrFormat(
          "[prompt_tokens=%d cached_prompt_tokens=%d generated_tokens=%d agent_tokens=%d "
          "aggregator_tokens=%d saved_tokens_estimate=%d wall=%.3fs seed=%d id=%s]\n",
          u.prompt_tokens(), u.cached_prompt_tokens(), u.generated_tokens(), u.agent_tokens(),
          u.aggregator_tokens(), u.saved_tokens_estimate(), f.wall_seconds(), f.seed(),
          f.request_id());
      break;
    }
    case v1::ContemplateEvent::EVENT_NOT_SET:
      break;
  }
}

int Contemplate(v1::Conclave::Stub& stub, const std::string& question) {
  v1::ContemplateRequest request;
  AddMessages(question, request.mutable_messages());
  if (auto v = absl::GetFlag(FLAGS_agents)) request.set_agents(*v);
  v1::Aggregator aggregator = v1::AGGREGATOR_UNSPECIFIED;
  if (!ParseEnumFlag<v1::Aggregator>(absl::GetFlag(FLAGS_aggregator), "AGGREGATOR_",
                                     &v1::Aggregator_Parse, &aggregator)) {
    return UsageError(absl::StrCat("--aggregator=", absl::GetFlag(FLAGS_aggregator),
                                   ": use majority, confidence, verifier or synthesis"));
  }
  request.set_aggregator(aggregator);
  v1::AnswerFormat format = v1::ANSWER_FORMAT_AUTO;
  if (!ParseEnumFlag<v1::AnswerFormat>(absl::GetFlag(FLAGS_answer_format), "ANSWER_FORMAT_",
                                       &v1::AnswerFormat_Parse, &format)) {
    return UsageError(absl::StrCat("--answer-format=", absl::GetFlag(FLAGS_answer_format),
                                   ": use auto, gsm8k, boxed, answer_line, multiple_choice or "
                                   "number"));
  }
  request.set_answer_format(format);
  if (auto v = absl::GetFlag(FLAGS_temperature)) request.set_temperature(static_cast<float>(*v));
  if (auto v = absl::GetFlag(FLAGS_temperature_spread)) {
    request.set_temperature_spread(static_cast<float>(*v));
  }
  if (auto v = absl::GetFlag(FLAGS_seed)) request.set_seed(*v);
  if (auto v = absl::GetFlag(FLAGS_thinking_budget)) request.set_thinking_budget(*v);
  if (auto v = absl::GetFlag(FLAGS_max_tokens)) request.set_max_tokens(*v);
  for (const std::string& role : absl::GetFlag(FLAGS_roles)) request.add_roles(role);
  request.set_stream_agent_text(absl::GetFlag(FLAGS_stream_agent_text));
  if (!AddStopFlag(request.mutable_stop())) return UsageError("--stop has a bad escape sequence");

  grpc::ClientContext context;
  PrepareContext(context);
  std::unique_ptr<grpc::ClientReader<v1::ContemplateEvent>> reader =
      stub.Contemplate(&context, request);
  const bool json = absl::GetFlag(FLAGS_json);
  AgentLines lines;
  v1::ContemplateEvent event;
  while (reader->Read(&event)) {
    if (json) {
      std::cout << ToJson(event) << "\n" << std::flush;
    } else {
      PrintEvent(event, lines);
    }
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) return RpcError(status);
  return 0;
}

// The channel's credentials: TLS trusting --tls-ca's certificates, or
// plaintext without it. Empty when the file cannot be read (printed).
std::shared_ptr<grpc::ChannelCredentials> Credentials() {
  const std::string ca = absl::GetFlag(FLAGS_tls_ca);
  if (ca.empty()) return grpc::InsecureChannelCredentials();
  std::ifstream in(ca, std::ios::binary);
  if (!in) {
    std::cerr << "conclave: cannot read --tls-ca " << ca << "\n";
    return nullptr;
  }
  grpc::SslCredentialsOptions options;
  options.pem_root_certs.assign(std::istreambuf_iterator<char>(in),
                                std::istreambuf_iterator<char>());
  return grpc::SslCredentials(options);
}

// The positional prompt, or stdin for "-".
std::optional<std::string> PromptArg(const std::vector<char*>& args) {
  if (args.size() != 3) return std::nullopt;
  std::string prompt = args[2];
  if (prompt == "-") {
    prompt.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  return prompt;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(absl::StrCat(
      "conclave [--server HOST:PORT] [--timeout S] [--tls-ca FILE] "
      "generate|models|contemplate|keys [flags] [PROMPT]\n"
      "  generate [--mode instant|thinking] [--thinking-budget N] [--max-tokens N]\n"
      "           [--temperature T] [--top-p P] [--seed S] [--logprobs N] [--system TEXT]\n"
      "           [--stop S] [--json] \"prompt\"\n"
      "  models [--json]\n"
      "  contemplate [--agents N] [--aggregator A] [--answer-format F] [--temperature T]\n"
      "           [--temperature-spread S] [--seed S] [--thinking-budget N] [--max-tokens N]\n"
      "           [--roles R1,R2] [--stop S] [--stream-agent-text] [--json] \"question\"\n",
      conclave::server::KeysUsage()));
  std::vector<std::string> flag_storage;
  conclave::tools::NormalizeFlagNames(argc, argv, flag_storage);
  const std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) return UsageError("no command; use generate, models, contemplate or keys");
  const std::string command = args[1];
  if (command == "keys") {
    return conclave::server::RunKeysCommand(std::vector<std::string>(args.begin() + 2, args.end()),
                                            absl::GetFlag(FLAGS_json));
  }

  const std::shared_ptr<grpc::ChannelCredentials> credentials = Credentials();
  if (credentials == nullptr) return kUsage;
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(absl::GetFlag(FLAGS_server), credentials);
  std::unique_ptr<v1::Conclave::Stub> stub = v1::Conclave::NewStub(channel);
  if (command == "models") {
    if (args.size() != 2) return UsageError("models takes no arguments");
    return Models(*stub);
  }
  if (command == "generate" || command == "contemplate") {
    std::optional<std::string> prompt = PromptArg(args);
    if (!prompt.has_value()) {
      return UsageError(absl::StrCat(command, " takes one prompt argument (\"-\" for stdin)"));
    }
    return command == "generate" ? Generate(*stub, *prompt) : Contemplate(*stub, *prompt);
  }
  return UsageError(absl::StrCat("unknown command \"", command,
                                 "\"; use generate, models, contemplate or keys"));
}
