#include "server/http/http_response.h"

#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "httplib.h"
#include "server/auth/quota.h"
#include "server/status_map.h"

namespace conclave::server::http {
namespace {

constexpr absl::string_view kParamPayloadUrl = "type.conclave.dev/conclave.http.ErrorParam";
constexpr absl::string_view kCodePayloadUrl = "type.conclave.dev/conclave.http.ErrorCode";

std::optional<std::string> Payload(const absl::Status& status, absl::string_view url) {
  const auto payload = status.GetPayload(url);  // absl::optional here
  if (!payload.has_value()) return std::nullopt;
  return std::string(*payload);
}

// OpenAI's code where the status carries none.
std::optional<std::string> DefaultCode(int http_status) {
  switch (http_status) {
    case 401: return "invalid_api_key";
    case 404: return "not_found";
    case 429: return "rate_limit_exceeded";
    default: return std::nullopt;
  }
}

}  // namespace

absl::Status WithParam(absl::Status status, absl::string_view param) {
  status.SetPayload(kParamPayloadUrl, absl::Cord(param));
  return status;
}

absl::Status WithErrorCode(absl::Status status, absl::string_view code) {
  status.SetPayload(kCodePayloadUrl, absl::Cord(code));
  return status;
}

std::optional<std::string> ParamOf(const absl::Status& status) {
  return Payload(status, kParamPayloadUrl);
}

std::optional<std::string> ErrorCodeOf(const absl::Status& status) {
  return Payload(status, kCodePayloadUrl);
}

absl::Status InvalidField(absl::string_view param, absl::string_view message) {
  return WithParam(absl::InvalidArgumentError(message), param);
}

const char* ErrorType(int http_status) {
  switch (http_status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    default: return http_status >= 500 ? "server_error" : "invalid_request_error";
  }
}

HttpError ToHttpError(const absl::Status& status) {
  const absl::Status with_retry = WithRetryAfter(status);
  HttpError e;
  e.canonical = status.code();
  e.status = ToHttpStatus(status.code());
  e.message = std::string(status.message());
  e.type = ErrorType(e.status);
  e.param = ParamOf(status);
  e.code = ErrorCodeOf(status);
  if (!e.code.has_value()) e.code = DefaultCode(e.status);
  if (std::optional<double> seconds = auth::RetryAfterSeconds(with_retry); seconds.has_value()) {
    e.retry_after_seconds = auth::RetryAfterHeaderSeconds(*seconds);
  }
  return e;
}

HttpError MakeHttpError(int status, absl::StatusCode canonical, std::string message,
                        std::optional<std::string> code) {
  HttpError e;
  e.status = status;
  e.message = std::move(message);
  e.type = ErrorType(status);
  e.code = std::move(code);
  e.canonical = canonical;
  return e;
}

std::string ErrorBody(const HttpError& error) {
  nlohmann::ordered_json body = {
      {"error",
       {{"message", error.message}, {"type", error.type}, {"param", nullptr}, {"code", nullptr}}}};
  if (error.param.has_value()) body["error"]["param"] = *error.param;
  if (error.code.has_value()) body["error"]["code"] = *error.code;
  return DumpJson(body);
}

std::string DumpJson(const nlohmann::json& value) {
  return value.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

std::string DumpJson(const nlohmann::ordered_json& value) {
  return value.dump(-1, ' ', /*ensure_ascii=*/false,
                    nlohmann::ordered_json::error_handler_t::replace);
}

std::string SseData(absl::string_view json) { return absl::StrCat("data: ", json, "\n\n"); }

void SendJson(httplib::Response& res, int status, std::string body) {
  res.status = status;
  res.set_content(std::move(body), "application/json");
}

void SendError(httplib::Response& res, const HttpError& error) {
  if (error.retry_after_seconds.has_value()) {
    res.set_header("Retry-After", absl::StrCat(*error.retry_after_seconds));
  }
  SendJson(res, error.status, ErrorBody(error));
}

void SendEventStream(httplib::Response& res, std::function<bool(httplib::DataSink&)> write,
                     std::function<void(bool success)> done) {
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [write = std::move(write)](size_t /*offset*/, httplib::DataSink& sink) {
        return write(sink);
      },
      std::move(done));
}

}  // namespace conclave::server::http
