#include "loadtest/load/load_runner.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "loadtest/load/arrival.h"
#include "loadtest/load/call_threads.h"
#include "loadtest/load/http_call.h"
#include "loadtest/load/http_outcome.h"
#include "loadtest/load/http_requests.h"
#include "loadtest/load/target.h"

namespace conclave::loadtest {
namespace {

// How long the cancelled calls of a timed-out drain get to end.
constexpr absl::Duration kCancelGrace = absl::Seconds(30);
constexpr absl::Duration kConnectTimeout = absl::Seconds(10);

// What the dispatcher and the calls' callbacks share. Held by every call's
// callback too, so it outlives a call that never ends.
struct Shared {
  std::vector<std::unique_ptr<v1::Conclave::Stub>> stubs;  // one per channel
  std::mutex mu;                                           // guards live and results
  std::condition_variable changed;                         // a call ended
  absl::flat_hash_map<int64_t, std::shared_ptr<Call>> live;
  std::vector<CallResult> results;
  // Closed loop: when each refused client may send again.
  std::vector<absl::Time> backoff_until;
};

constexpr absl::Duration kDefaultRetryAfter = absl::Seconds(1);

// Waits on `shared.changed` until `done()` or `until`; true when done().
template <typename Pred>
bool WaitUntil(Shared& shared, std::unique_lock<std::mutex>& lock, absl::Time until, Pred done) {
  while (!done()) {
    if (until == absl::InfiniteFuture()) {
      shared.changed.wait(lock);
      continue;
    }
    const absl::Duration left = until - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    shared.changed.wait_for(lock, absl::ToChronoNanoseconds(left));
  }
  return true;
}

// An HTTP call due while `cap` calls are in flight: not sent.
CallResult NotSent(Mode mode, absl::Duration at, int cap) {
  CallResult r;
  r.mode = mode;
  r.start = at;
  r.code = grpc::StatusCode::ABORTED;
  r.http_status = std::string(kHttpClientCap);
  r.message = absl::StrCat("not sent: ", cap, " HTTP calls were in flight (--max-http-in-flight)");
  return r;
}

}  // namespace

const char* ProtocolName(Protocol protocol) {
  return protocol == Protocol::kHttp ? "http" : "grpc";
}

absl::StatusOr<RunOutcome> RunLoad(const LoadConfig& config, Workload& workload) {
  const bool http = config.protocol == Protocol::kHttp;
  auto shared = std::make_shared<Shared>();
  HostPort http_target;
  if (http) {
    if (config.concurrency > config.max_http_in_flight) {
      return absl::InvalidArgumentError(
          absl::StrCat("concurrency=", config.concurrency,
                       " exceeds max_http_in_flight=", config.max_http_in_flight));
    }
    absl::StatusOr<HostPort> target = ParseTarget(config.target);
    if (!target.ok()) return target.status();
    http_target = *target;
    if (absl::Status s = WaitForHttpServer(http_target, kConnectTimeout); !s.ok()) return s;
  }
  for (int i = 0; !http && i < std::max(1, config.channels); ++i) {
    grpc::ChannelArguments args;
    // A subchannel pool per channel, and a distinct argument, so that the
    // channels do not share one connection.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("conclave.load.channel", i);
    std::shared_ptr<grpc::Channel> channel =
        grpc::CreateCustomChannel(config.target, grpc::InsecureChannelCredentials(), args);
    if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + kConnectTimeout))) {
      return absl::UnavailableError(absl::StrCat("no server answers at ", config.target,
                                                 " (waited ", absl::FormatDuration(kConnectTimeout),
                                                 ")"));
    }
    shared->stubs.push_back(v1::Conclave::NewStub(channel));
  }

  RunOutcome out;
  const absl::Time start = absl::Now();
  const absl::Time stop_at = config.duration == absl::InfiniteDuration() ? absl::InfiniteFuture()
                                                                         : start + config.duration;
  const bool back_off = config.concurrency > 0 && config.honor_retry_after;
  const Call::Done done = [shared, back_off](int64_t id, CallResult result) {
    std::shared_ptr<Call> ended;  // destroyed after the lock is released
    std::lock_guard<std::mutex> lock(shared->mu);
    if (back_off && result.code == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      const absl::Duration wait =
          result.retry_after > absl::ZeroDuration() ? result.retry_after : kDefaultRetryAfter;
      shared->backoff_until.push_back(absl::Now() + wait);
    }
    shared->results.push_back(std::move(result));
    auto it = shared->live.find(id);
    ended = std::move(it->second);
    shared->live.erase(it);
    shared->changed.notify_all();
  };
  // The HTTP calls' threads: joined below, before RunLoad returns.
  CallThreads threads;
  absl::Time last_send = start;
  auto send = [&](const WorkItem& item) {
    CallOptions options;
    options.id = out.issued;
    options.run_start = start;
    options.deadline = config.deadline;
    options.api_key = config.api_key;
    if (http) {
      // Only the dispatcher adds to `live`: the count cannot grow before
      // the emplace below.
      std::lock_guard<std::mutex> lock(shared->mu);
      if (static_cast<int>(shared->live.size()) >= config.max_http_in_flight) {
        shared->results.push_back(
            NotSent(item.mode, absl::Now() - start, config.max_http_in_flight));
        ++out.issued;
        last_send = absl::Now();
        return;
      }
    }
    const std::string& question = workload.prompt(item.prompt);
    std::shared_ptr<Call> call;
    if (http) {
      call = NewHttpCall(threads, http_target, item.mode,
                         MakeHttpRequest(item, question, config.shape), options, done);
    } else {
      v1::Conclave::Stub& stub = *shared->stubs[out.issued % shared->stubs.size()];
      call = item.mode == Mode::kContemplate
                 ? NewContemplateCall(stub, MakeContemplateRequest(item, question, config.shape),
                                      options, done)
                 : NewGenerateCall(stub, MakeGenerateRequest(item, question, config.shape),
                                   item.mode, options, done);
    }
    {
      std::lock_guard<std::mutex> lock(shared->mu);
      shared->live.emplace(out.issued, call);
    }
    ++out.issued;
    last_send = absl::Now();
    call->Start();  // `call` keeps it alive even if it ends at once
  };
  auto count_reached = [&] { return config.requests > 0 && out.issued >= config.requests; };

  if (config.rate > 0) {
    PoissonArrivals arrivals(config.rate, config.seed);
    while (true) {
      if (count_reached()) {
        out.issue_window = last_send - start;
        break;
      }
      const absl::Duration at = arrivals.NextArrival();
      if (at >= config.duration) {
        out.issue_window = config.duration;
        break;
      }
      const absl::Time when = start + at;
      absl::SleepFor(when - absl::Now());  // no-op when late
      out.max_dispatch_lag = std::max(out.max_dispatch_lag, absl::Now() - when);
      send(workload.Next());
    }
  } else {
    // A client is busy while its call runs or while it backs off.
    auto busy = [&](absl::Time now) {
      std::erase_if(shared->backoff_until, [now](absl::Time t) { return t <= now; });
      return static_cast<int>(shared->live.size() + shared->backoff_until.size());
    };
    while (true) {
      if (count_reached()) {
        out.issue_window = last_send - start;
        break;
      }
      bool stop = false;
      {
        std::unique_lock<std::mutex> lock(shared->mu);
        while (true) {
          const absl::Time now = absl::Now();
          if (now >= stop_at) {
            stop = true;
            break;
          }
          if (busy(now) < config.concurrency) break;
          absl::Time wake = stop_at;
          for (absl::Time t : shared->backoff_until) wake = std::min(wake, t);
          if (wake == absl::InfiniteFuture()) {
            shared->changed.wait(lock);
          } else {
            shared->changed.wait_for(lock, absl::ToChronoNanoseconds(wake - now));
          }
        }
      }
      if (stop) {
        out.issue_window = config.duration;
        break;
      }
      send(workload.Next());
    }
  }

  // Drain: wait for the calls in flight, then cancel the rest.
  std::vector<std::shared_ptr<Call>> left;
  {
    std::unique_lock<std::mutex> lock(shared->mu);
    if (!WaitUntil(*shared, lock, absl::Now() + config.drain_timeout,
                   [&] { return shared->live.empty(); })) {
      for (auto& [id, call] : shared->live) left.push_back(call);
    }
  }
  for (const std::shared_ptr<Call>& call : left) call->Cancel(/*at_drain=*/true);
  left.clear();
  {
    std::unique_lock<std::mutex> lock(shared->mu);
    WaitUntil(*shared, lock, absl::Now() + kCancelGrace, [&] { return shared->live.empty(); });
  }
  // HTTP: no call thread outlives the run (a cancelled call stops at once).
  threads.JoinAll();
  {
    std::lock_guard<std::mutex> lock(shared->mu);
    out.wall = absl::Now() - start;
    out.results = shared->results;
  }
  return out;
}

}  // namespace conclave::loadtest
