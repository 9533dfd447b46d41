// Per-connection syscall costs on an accepted loopback socket: what evuring
// adds per connection (getpeername) next to what every acceptor pays.
// SPDX-License-Identifier: BSD-3-Clause
#include <benchmark/benchmark.h>

#include <ctime>

#include "common.hh"

namespace {

struct Pair {
	int lfd, cfd, afd;
	Pair()
	{
		int port = 0;
		lfd = micro::listen_socket(false, &port);
		cfd = micro::connect_to(port);
		afd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
		if (afd < 0)
			micro::die("accept4");
	}
	~Pair()
	{
		close(afd);
		close(cfd);
		close(lfd);
	}
};

void BM_Getpeername(benchmark::State &state)
{
	Pair p;
	for (auto _ : state) {
		sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int rc = getpeername(p.afd, reinterpret_cast<sockaddr *>(&ss), &len);
		benchmark::DoNotOptimize(rc);
		benchmark::DoNotOptimize(ss);
	}
	state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Getpeername);

void BM_Getsockname(benchmark::State &state)
{
	Pair p;
	for (auto _ : state) {
		sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int rc = getsockname(p.afd, reinterpret_cast<sockaddr *>(&ss), &len);
		benchmark::DoNotOptimize(rc);
		benchmark::DoNotOptimize(ss);
	}
	state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Getsockname);

// An accept4 that finds the queue empty (libevent's listener pays one per
// wakeup to learn the queue is drained).
void BM_Accept4Eagain(benchmark::State &state)
{
	int lfd = micro::listen_socket(true, nullptr);
	for (auto _ : state) {
		sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int rc = accept4(lfd, reinterpret_cast<sockaddr *>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		benchmark::DoNotOptimize(rc);
	}
	state.SetItemsProcessed(state.iterations());
	close(lfd);
}
BENCHMARK(BM_Accept4Eagain);

// The callback's timestamp (vDSO clock_gettime), for scale.
void BM_ClockMonotonic(benchmark::State &state)
{
	for (auto _ : state) {
		timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		benchmark::DoNotOptimize(ts);
	}
	state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ClockMonotonic);

} // namespace

BENCHMARK_MAIN();
