// A fixed set of worker threads that run one job at a time, the calling
// thread taking part as worker 0. Workers spin briefly after a job (decode
// steps come back-to-back, and a futex wake-up costs more than a small
// matrix product), then sleep on a condition variable: an idle pool uses no
// CPU.
// Thread-safety: Run may be called from one thread at a time (the engine's
// step loop); jobs must not call Run themselves.
#ifndef CONCLAVE_KERNELS_CPU_THREAD_POOL_H_
#define CONCLAVE_KERNELS_CPU_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace conclave::kernels::cpu {

class ThreadPool {
 public:
  // n_threads >= 1 counts the caller; n_threads - 1 threads are started.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls job(thread_index, n_threads) once on every thread and returns when
  // all calls have returned.
  void Run(const std::function<void(int, int)>& job);

  // Splits [0, n) into contiguous chunks, one per thread, each a multiple of
  // `grain` (except the last); calls fn(begin, end) for non-empty chunks.
  void ParallelFor(int64_t n, int64_t grain,
                   const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop(int index);

  const int n_threads_;
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* job_ = nullptr;  // guarded by mu_ for writes
  std::atomic<uint64_t> generation_{0};  // bumped once per job
  std::atomic<int> pending_{0};          // workers still running the job
  std::atomic<bool> stop_{false};
  std::mutex mu_;                        // guards sleeping / waking
  std::condition_variable wake_;
};

}  // namespace conclave::kernels::cpu

#endif  // CONCLAVE_KERNELS_CPU_THREAD_POOL_H_
