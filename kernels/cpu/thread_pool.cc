#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <chrono>

#include "kernels/check.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define CONCLAVE_CPU_RELAX() _mm_pause()
#else
#define CONCLAVE_CPU_RELAX() ((void)0)
#endif

namespace conclave::kernels::cpu {
namespace {

// How long a worker spins for the next job before sleeping. A decode step
// issues a few hundred jobs back to back, each tens of microseconds apart.
constexpr auto kSpinTime = std::chrono::microseconds(200);

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads) {
  CHECK_GE(n_threads, 1) << "thread pool needs at least the calling thread";
  for (int i = 1; i < n_threads; ++i) {
    workers_.emplace_back([this, i] { WorkerLoop(i); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::Run(const std::function<void(int, int)>& job) {
  if (n_threads_ == 1) {
    job(0, 1);
    return;
  }
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &job;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  job(0, n_threads_);
  while (pending_.load(std::memory_order_acquire) != 0) CONCLAVE_CPU_RELAX();
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t units = (n + grain - 1) / grain;
  if (n_threads_ == 1 || units == 1) {
    fn(0, n);
    return;
  }
  Run([&](int index, int count) {
    const int64_t per = units / count, extra = units % count;
    const int64_t first = index * per + std::min<int64_t>(index, extra);
    const int64_t last = first + per + (index < extra ? 1 : 0);
    const int64_t begin = first * grain, end = std::min(n, last * grain);
    if (begin < end) fn(begin, end);
  });
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  while (true) {
    // Spin a little for the next job, then sleep until one comes.
    const auto spin_until = std::chrono::steady_clock::now() + kSpinTime;
    while (generation_.load(std::memory_order_acquire) == seen &&
           std::chrono::steady_clock::now() < spin_until) {
      for (int i = 0; i < 64; ++i) CONCLAVE_CPU_RELAX();
    }
    const std::function<void(int, int)>* job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return generation_.load() != seen; });
      seen = generation_.load();
      if (stop_.load()) return;
      job = job_;
    }
    (*job)(index, n_threads_);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace conclave::kernels::cpu
