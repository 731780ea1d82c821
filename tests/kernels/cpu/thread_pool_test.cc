#include "kernels/cpu/thread_pool.h"

#include <atomic>
#include <vector>

#include "gtest/gtest.h"

namespace conclave::kernels::cpu {
namespace {

TEST(ThreadPoolTest, RunCallsTheJobOncePerThread) {
  ThreadPool pool(3);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::atomic<int>> calls(3);
    pool.Run([&](int index, int count) {
      EXPECT_EQ(count, 3);
      calls[index].fetch_add(1);
    });
    for (auto& c : calls) ASSERT_EQ(c.load(), 1) << "round " << round;
  }
}

TEST(ThreadPoolTest, ParallelForCoversEveryIndexExactlyOnce) {
  ThreadPool pool(2);
  for (int64_t n : {0, 1, 7, 16, 17, 1000, 1537}) {
    for (int64_t grain : {1, 4, 16, 64}) {
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelFor(n, grain, [&](int64_t begin, int64_t end) {
        EXPECT_TRUE(begin % grain == 0) << begin;
        for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
    }
  }
}

TEST(ThreadPoolTest, ASingleThreadPoolRunsOnTheCaller) {
  ThreadPool pool(1);
  int calls = 0;
  pool.Run([&](int index, int count) {
    EXPECT_EQ(index, 0);
    EXPECT_EQ(count, 1);
    ++calls;
  });
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace conclave::kernels::cpu
