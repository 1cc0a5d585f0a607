#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <new>
#include <string>
#include <stdexcept>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace canopy {
namespace cpu {
namespace {

constexpr int kMaxThreads = 1024;

// Spin-wait rounds (one CpuRelax each: about 10-140 cycles on x86) a worker waits for the next
// job, and the caller for the last chunks, before sleeping on a condition variable. A decode step
// runs a few hundred short jobs a few microseconds apart (the linear layers of every layer); a
// futex wake-up per job (tens of microseconds on a busy or virtualised machine) would cost a
// large part of the step. Idle workers sleep again after about 15-200 microseconds.
constexpr int kSpinRounds = 4096;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Reads one integer from a small sysfs file; -1 when absent.
long ReadSysInt(const char* path) {
  FILE* f = std::fopen(path, "r");
  if (!f) return -1;
  long v = -1;
  if (std::fscanf(f, "%ld", &v) != 1) v = -1;
  std::fclose(f);
  return v;
}

int DetectDefaultThreads() {
  unsigned hw = std::thread::hardware_concurrency();
  int fallback = hw == 0 ? 1 : static_cast<int>(std::min<unsigned>(hw, kMaxThreads));
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return fallback;
  const int allowed = CPU_COUNT(&set);
  if (allowed <= 0) return fallback;
  std::set<std::pair<long, long>> cores;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (!CPU_ISSET(c, &set)) continue;
    char path[128];
    std::snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/physical_package_id", c);
    const long pkg = ReadSysInt(path);
    std::snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/core_id", c);
    const long core = ReadSysInt(path);
    if (pkg < 0 || core < 0) return std::min(allowed, kMaxThreads);  // no topology: every allowed CPU
    cores.insert({pkg, core});
  }
  return std::max(1, std::min(static_cast<int>(cores.size()), kMaxThreads));
#else
  return fallback;
#endif
}

int ConfiguredThreads() {
  if (const char* env = std::getenv("CANOPY_THREADS")) {
    char* end = nullptr;
    long v = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && v > 0 && v <= kMaxThreads) return static_cast<int>(v);
  }
  return DefaultThreads();
}

// Workers spin for a while (kSpinRounds), then sleep on a condition variable; a job is a chunked
// range that workers and the caller claim chunk by chunk with an atomic counter. Every state change
// is made under mu_; the atomics generation_seen_ and outstanding_ only mirror generation_ and
// pending_ + active_ so that waiting threads can spin without the lock (they take it before acting).
class Pool {
 public:
  explicit Pool(int threads) { Start(threads); }
  ~Pool() { Stop(); }

  int size() const { return size_.load(); }

  // Waits for the running job (if any), then replaces the workers.
  void Resize(int threads) {
    std::lock_guard<std::mutex> serial(run_mu_);
    if (threads == size_.load()) return;
    Stop();
    Start(threads);
  }

  void Run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    // Decided before taking the lock, so a kernel run inline (one chunk) may itself call
    // ParallelFor. A concurrent Resize only changes how many chunks this job has.
    const int size = size_.load();
    int64_t chunks = std::min<int64_t>((n + grain - 1) / grain, static_cast<int64_t>(size) * 4);
    if (chunks <= 1 || size == 1) {
      fn(0, n);  // on the caller's thread: an exception propagates as it is
      return;
    }
    std::lock_guard<std::mutex> serial(run_mu_);
    int64_t chunk = (n + chunks - 1) / chunks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_fn_ = &fn;
      job_n_ = n;
      job_chunk_ = chunk;
      next_.store(0);
      error_ = nullptr;
      pending_ = (n + chunk - 1) / chunk;
      ++generation_;
      outstanding_.store(pending_ + active_, std::memory_order_relaxed);
      generation_seen_.store(generation_, std::memory_order_release);
    }
    cv_.notify_all();
    Work();
    for (int i = 0; i < kSpinRounds && outstanding_.load(std::memory_order_acquire) != 0; ++i) CpuRelax();
    std::unique_lock<std::mutex> lock(mu_);
    // Wait until every chunk ran AND every worker has left Work(), so no worker
    // can touch this job's state once the next job starts.
    done_cv_.wait(lock, [this] { return pending_ == 0 && active_ == 0; });
    job_fn_ = nullptr;
    // The first exception any chunk threw (on a worker or here) goes to the caller, who is
    // inside a Guard or an async worker that turns it into a Status.
    if (error_) {
      std::exception_ptr e = error_;
      error_ = nullptr;
      std::rethrow_exception(e);
    }
  }

 private:
  void Start(int threads) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = false;
      stop_seen_.store(false, std::memory_order_release);
    }
    size_.store(threads);
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      stop_seen_.store(true, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  void Work() {
    for (;;) {
      int64_t begin = next_.fetch_add(job_chunk_);
      if (begin >= job_n_) return;
      int64_t end = std::min(begin + job_chunk_, job_n_);
      // A chunk that throws must still be counted done, or Run() would wait forever; the
      // exception is kept for the caller and the chunks not yet claimed are skipped.
      std::exception_ptr thrown;
      try {
        (*job_fn_)(begin, end);
      } catch (...) {
        thrown = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (thrown) {
        if (!error_) error_ = thrown;
        // Claim every remaining chunk at once so nobody starts them.
        const int64_t rest = next_.exchange(job_n_);
        if (rest < job_n_) pending_ -= (job_n_ - rest + job_chunk_ - 1) / job_chunk_;
        outstanding_.store(pending_ + active_, std::memory_order_relaxed);
      }
      outstanding_.store(--pending_ + active_, std::memory_order_release);
      if (pending_ == 0) done_cv_.notify_all();
    }
  }

  void WorkerLoop() {
    uint64_t seen;
    {
      std::lock_guard<std::mutex> lock(mu_);
      seen = generation_;  // a worker started by Resize must not rerun the last job
    }
    for (;;) {
      for (int i = 0; i < kSpinRounds && !stop_seen_.load(std::memory_order_acquire) &&
                      generation_seen_.load(std::memory_order_acquire) == seen;
           ++i) {
        CpuRelax();
      }
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (job_fn_ == nullptr) continue;  // that job has already finished without this worker
        ++active_;
        outstanding_.store(pending_ + active_, std::memory_order_relaxed);
      }
      Work();
      std::lock_guard<std::mutex> lock(mu_);
      --active_;
      outstanding_.store(pending_ + active_, std::memory_order_release);
      if (active_ == 0 && pending_ == 0) done_cv_.notify_all();
    }
  }

  std::atomic<int> size_{1};
  std::vector<std::thread> workers_;
  std::mutex run_mu_;  // one job (or resize) at a time
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  bool stop_ = false;
  uint64_t generation_ = 0;
  const std::function<void(int64_t, int64_t)>* job_fn_ = nullptr;
  int64_t job_n_ = 0, job_chunk_ = 1, pending_ = 0;
  int active_ = 0;  // workers inside Work()
  std::exception_ptr error_;  // the first exception a chunk of the current job threw (under mu_)
  std::atomic<int64_t> next_{0};
  std::atomic<uint64_t> generation_seen_{0};  // generation_, for spinning workers
  std::atomic<int64_t> outstanding_{0};       // pending_ + active_, for the spinning caller
  std::atomic<bool> stop_seen_{false};        // stop_, for spinning workers
};

Pool& GlobalPool() {
  // Leaked on purpose: joining threads during static destruction at process
  // exit can deadlock inside Node; the OS reclaims them.
  static Pool* pool = new Pool(ConfiguredThreads());
  return *pool;
}

}  // namespace

int NumThreads() { return GlobalPool().size(); }

int DefaultThreads() {
  static const int threads = DetectDefaultThreads();
  return threads;
}

int SetNumThreads(int threads) {
  const int n = threads <= 0 ? DefaultThreads() : std::min(threads, kMaxThreads);
  GlobalPool().Resize(n);
  return GlobalPool().size();
}

void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  GlobalPool().Run(n, grain, fn);
}

void ParallelForThrowForTest(int64_t n, int64_t throw_at, int kind) {
  ParallelFor(n, 1, [&](int64_t begin, int64_t end) {
    if (throw_at >= begin && throw_at < end) {
      if (kind == 0) throw std::bad_alloc();
      throw std::runtime_error("test exception from chunk [" + std::to_string(begin) + ", " + std::to_string(end) + ")");
    }
  });
}

}  // namespace cpu
}  // namespace canopy
