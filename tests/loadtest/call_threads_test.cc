// One thread per blocking call, every one joined: JoinAll returns only when
// every body has returned, and a body may destroy what started it.
#include "loadtest/load/call_threads.h"

#include <atomic>
#include <future>
#include <memory>

#include "gtest/gtest.h"

namespace conclave::loadtest {
namespace {

TEST(CallThreadsTest, JoinAllWaitsForEveryBody) {
  CallThreads threads;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> ended{0};
  for (int i = 0; i < 16; ++i) {
    threads.Start([released, &ended] {
      released.wait();
      ended.fetch_add(1);
    });
  }
  EXPECT_EQ(threads.size(), 16);  // none can have finished
  EXPECT_EQ(ended.load(), 0);
  release.set_value();
  threads.JoinAll();
  EXPECT_EQ(ended.load(), 16);
  EXPECT_EQ(threads.size(), 0);
}

TEST(CallThreadsTest, ABodyMayDestroyTheObjectThatStartedIt) {
  struct Owner {
    std::atomic<bool>* destroyed;
    ~Owner() { destroyed->store(true); }
  };
  std::atomic<bool> destroyed{false};
  CallThreads threads;
  auto owner = std::make_shared<Owner>(Owner{&destroyed});
  std::weak_ptr<Owner> weak = owner;
  threads.Start([owner = std::move(owner)]() mutable { owner.reset(); });
  threads.JoinAll();
  EXPECT_TRUE(destroyed.load());
  EXPECT_TRUE(weak.expired());
}

TEST(CallThreadsTest, StartingAgainAfterJoinAllWorks) {
  CallThreads threads;
  std::atomic<int> ran{0};
  threads.Start([&] { ran.fetch_add(1); });
  threads.JoinAll();
  threads.Start([&] { ran.fetch_add(1); });
  threads.Start([&] { ran.fetch_add(1); });
  threads.JoinAll();
  EXPECT_EQ(ran.load(), 3);
  EXPECT_EQ(threads.size(), 0);
}

}  // namespace
}  // namespace conclave::loadtest
