// The batched engine: many requests, each a group of sequences, share one
// Backend through continuous batching and a paged, prefix-cached KV pool.
//
// Threads: Submit, Abort, AbortSequence and stats() may be called from any
// thread. One step-loop thread owns all mutable engine state (scheduler,
// block manager, samplers); other threads reach it through a command queue,
// and it reports through each request's RequestStream, never waiting on a
// consumer.
//
// One step: take new requests and aborts; schedule (running sequences
// first, then waiting ones, within the token budget; preempt by recompute
// when the pool is short); copy-on-write blocks; one Backend::Forward over
// every scheduled token; sample every sequence whose chunk ended at its last
// token (a group's leader first forks into its n sequences, which all sample
// from the prompt's logits); emit deltas; free finished sequences.
#ifndef CONCLAVE_ENGINE_ENGINE_H_
#define CONCLAVE_ENGINE_ENGINE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/kv/block_manager.h"
#include "engine/request.h"
#include "engine/request_stream.h"
#include "engine/scheduler/scheduler.h"
#include "engine/tokenizer/tokenizer.h"
#include "kernels/backend.h"

namespace conclave::engine {

struct EngineConfig {
  int block_size = 16;              // token slots per KV block
  int64_t kv_cache_bytes = 512ll << 20;  // KV pool budget
  int num_kv_blocks = 0;            // > 0 overrides kv_cache_bytes (tests)
  // Element type of the KV pool: fp16 (bit-identical to llama.cpp) or bf16.
  kernels::KvDtype kv_dtype = kernels::KvDtype::kF16;
  SchedulerConfig scheduler;
  int max_sequences_per_request = 32;  // n limit
  // Admission of new work (docs/overload.md). The queue is the new requests
  // (not continuations) submitted and not yet started. Submit refuses a new
  // request with RESOURCE_EXHAUSTED "server overloaded: N requests queued,
  // retry later" when max_queued_requests are queued (0: no bound but
  // scheduler.max_waiting_groups), and fails one still queued
  // max_queue_wait after its Submit with RESOURCE_EXHAUSTED instead of
  // running it late (InfiniteDuration: never). Nothing of a refused or
  // expired request has run, so nothing is wasted.
  int max_queued_requests = 0;
  absl::Duration max_queue_wait = absl::InfiniteDuration();
  // Runs BlockManager::CheckConsistency after every step and aborts the
  // process on a violation (tests; costs a walk over all block tables).
  bool check_invariants = false;
};

struct EngineStats {
  int active_requests = 0;
  int running_sequences = 0;
  int waiting_sequences = 0;
  int waiting_requests = 0;  // admitted, not started (continuations included)
  int queued_requests = 0;   // new requests admitted, not started (max_queued_requests)
  int64_t rejected_queue_full = 0;  // new requests refused: the queue was full
  int64_t expired_in_queue = 0;     // new requests failed after max_queue_wait
  BlockManagerStats kv;
  int64_t preemptions = 0;
  int64_t steps = 0;
  int64_t computed_tokens = 0;   // tokens run through the model (prompts, recomputes, decodes)
  int64_t generated_tokens = 0;  // sampled tokens
  // Used blocks that no live sequence accounts for (always 0 unless there is
  // a bug): with no request active, used_blocks must be 0 and every
  // non-free block cached.
  int leaked_blocks = 0;
};

class Engine {
 public:
  // Allocates the backend's KV pool and starts the step loop. `backend` must
  // have the model loaded; `tokenizer` and `backend` must outlive the engine.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(kernels::Backend& backend,
                                                        const kernels::ModelConfig& model,
                                                        const Tokenizer& tokenizer,
                                                        const EngineConfig& config);
  ~Engine();  // aborts what is still running, then joins the step loop
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates and queues a request. INVALID_ARGUMENT names the bad field and
  // its limit; RESOURCE_EXHAUSTED when the queue is full (max_queued_requests
  // for a new request, max_waiting_groups for any); UNAVAILABLE after
  // Shutdown. On error nothing is queued. A new request still queued after
  // max_queue_wait ends with RESOURCE_EXHAUSTED on its stream.
  absl::StatusOr<std::shared_ptr<RequestStream>> Submit(EngineRequest request);

  // What Submit would answer a new request about the queue now: OK, or its
  // RESOURCE_EXHAUSTED (counted in rejected_queue_full) or UNAVAILABLE.
  // Cheap (one lock), so that a caller can refuse a call before preparing
  // it (rendering, tokenizing); Submit still decides.
  absl::Status CheckAdmission();

  // Ends a whole request, or one of its sequences, at the next step boundary:
  // its blocks are freed and its stream gets a final kAborted delta. Unknown
  // or finished ids are ignored.
  void Abort(int64_t request_id);
  void AbortSequence(int64_t request_id, int index);

  // Stops accepting requests, aborts the rest and joins the step loop.
  void Shutdown();

  // A snapshot, updated after every step.
  EngineStats stats() const;
  int vocab_size() const { return model_.vocab_size; }
  const EngineConfig& config() const { return config_; }

 private:
  struct RequestState;
  struct Command;

  Engine(kernels::Backend& backend, const kernels::ModelConfig& model,
         const Tokenizer& tokenizer, const EngineConfig& config, int num_blocks);
  absl::Status Validate(const EngineRequest& r) const;
  void Loop();
  void HandleCommands(std::deque<Command>& commands);
  void Step();
  void SampleSequence(RequestState& state, Sequence& seq, const float* logits,
                      std::vector<int64_t>& finished);
  void FinishRequestIfDone(int64_t request_id);
  void FailAll(const absl::Status& status);
  // The admission check of Submit and CheckAdmission. Needs mu_.
  absl::Status AdmitLocked(bool continuation);
  // Ends the request's queue time at `now` (the first step that runs it, or
  // its end if it never ran) and takes a new request off the admission
  // queue; later calls change nothing.
  void LeaveQueue(RequestState& st, absl::Time now);
  // Fails the new requests still queued max_queue_wait after their Submit.
  void ExpireQueued(absl::Time now);
  void AbortRequest(int64_t request_id);
  // Records sequence `index` as aborted and sends its final delta.
  void MarkAborted(RequestState& st, int index);
  void PublishStats();

  kernels::Backend& backend_;
  const kernels::ModelConfig model_;
  const Tokenizer& tokenizer_;
  const EngineConfig config_;

  // Step-loop state (touched only by the loop thread after construction).
  BlockManager blocks_;
  Scheduler scheduler_;
  absl::flat_hash_map<int64_t, std::unique_ptr<RequestState>> requests_;
  std::vector<float> logits_;
  std::vector<int32_t> step_tokens_;
  int64_t steps_ = 0, computed_tokens_ = 0, generated_tokens_ = 0;
  // New requests in Submit order, while max_queue_wait is finite; those that
  // have started or ended are dropped when they reach the front.
  std::deque<int64_t> queue_order_;

  mutable std::mutex mu_;       // guards inbox_, stopping_, stats_ and the counts below
  std::condition_variable wake_;
  std::deque<Command> inbox_;
  bool stopping_ = false;
  int inbox_submits_ = 0;     // Submit commands not yet taken by the loop
  int waiting_groups_ = 0;    // the scheduler's, as of the last step
  int queued_new_ = 0;        // new requests submitted and not started or ended
  int64_t rejected_queue_full_ = 0;
  int64_t expired_in_queue_ = 0;
  EngineStats stats_;
  std::atomic<int64_t> next_request_id_{1};
  std::thread loop_;
};

}  // namespace conclave::engine

#endif  // CONCLAVE_ENGINE_ENGINE_H_
