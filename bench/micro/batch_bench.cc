// Completion reaping and dispatch per batch size: the in-process cost of a
// listener delivering K ready connections on one wakeup, per connection.
//
// Per iteration (untimed, between PauseTiming and ResumeTiming): close the
// previous iteration's K client sockets, then connect K new ones to the
// listener's port. A blocking connect() on loopback returns once the
// handshake is done, so all K connections sit in the kernel's accept queue
// (and, for evuring, the multishot accept's work is queued on the ring) before
// timing resumes. Timed: event_base_loop(base,
// EVLOOP_ONCE) until the callback (which just closes the fd) has run K
// times. Normally that is one loop call for every implementation: libevent's
// listener calls accept4() until EAGAIN, evuring runs the queued accept work
// with one io_uring_enter, copies out the K CQEs at once and calls
// getpeername() + the callback per CQE. The "loops" counter is the mean number
// of loop calls per batch (1.00 when one wakeup delivered the whole batch).
//
// The clients are closed with SO_LINGER {1, 0} (an RST): the server side,
// which closed first, is then freed at once instead of lingering in
// FIN_WAIT2/TIME_WAIT; otherwise, after a few tens of thousands of
// connections, reused client ports run into those and connect() times out.
//
// The kernel-side work done inside connect() (queueing the child socket,
// waking epoll or queueing io_uring's task work) is not timed, for either.
// K is bounded by the listen backlog: the listener is made with backlog 1024
// (evconnlistener_new's -1 would mean listen(fd, 128), and the 129th
// connection of a batch would be dropped into a 1 s SYN retry).
//
// Built twice from this source, as listener_bench.cc: micro-batch-libevent
// (libevent only) and micro-batch-evuring (EVURING_BACKEND=uring|event).
//
// SPDX-License-Identifier: BSD-3-Clause
#include <benchmark/benchmark.h>

#include <dlfcn.h>
#include <string>
#include <vector>

#include <event2/event.h>
#include <event2/listener.h>

#include "common.hh"

namespace {

using backend_fn = int (*)(evconnlistener *);
using name_fn = const char *(*)(int);

std::string implementation(evconnlistener *lev)
{
	auto get = reinterpret_cast<backend_fn>(dlsym(RTLD_DEFAULT, "evuring_listener_backend"));
	auto name = reinterpret_cast<name_fn>(dlsym(RTLD_DEFAULT, "evuring_backend_name"));
	if (!get || !name)
		return "libevent";
	return std::string("evuring-") + name(get(lev));
}

// Close a client with an RST (see above). Untimed.
void reset_close(int fd)
{
	linger lg{};
	lg.l_onoff = 1;
	lg.l_linger = 0;
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

void on_accept_close(evconnlistener *, evutil_socket_t fd, sockaddr *, int, void *arg)
{
	close(fd);
	++*static_cast<long *>(arg);
}

constexpr int kBacklog = 1024; // passed to evconnlistener_new; K must stay below it

void BM_DeliverBatch(benchmark::State &state)
{
	const int k = static_cast<int>(state.range(0));
	if (k >= kBacklog) {
		state.SkipWithError("batch larger than the listen backlog");
		return;
	}
	event_base *base = event_base_new();
	int port = 0;
	int fd = micro::listen_socket(true, &port);
	long accepted = 0;
	evconnlistener *lev = evconnlistener_new(base, on_accept_close, &accepted,
						 LEV_OPT_CLOSE_ON_FREE, kBacklog, fd);
	if (!lev) {
		state.SkipWithError("evconnlistener_new failed");
		event_base_free(base);
		return;
	}
	// Warm up: arm (evuring submits its multishot accept from the loop) and
	// take one connection through, outside the measurement.
	{
		int c = micro::connect_to(port);
		while (accepted == 0)
			event_base_loop(base, EVLOOP_ONCE);
		reset_close(c);
		accepted = 0;
	}

	std::vector<int> clients;
	clients.reserve(static_cast<size_t>(k));
	long loops = 0, batches = 0;
	for (auto _ : state) {
		state.PauseTiming();
		for (int c : clients)
			reset_close(c);
		clients.clear();
		for (int i = 0; i < k; i++)
			clients.push_back(micro::connect_to(port));
		const long target = accepted + k;
		state.ResumeTiming();

		do {
			event_base_loop(base, EVLOOP_ONCE);
			loops++;
		} while (accepted < target);
		batches++;
	}
	for (int c : clients)
		reset_close(c);

	state.SetLabel(implementation(lev));
	state.SetItemsProcessed(accepted);
	state.counters["batch"] = k;
	state.counters["loops"] = batches ? static_cast<double>(loops) / static_cast<double>(batches) : 0;
	evconnlistener_free(lev);
	event_base_free(base);
}
BENCHMARK(BM_DeliverBatch)->Arg(1)->Arg(4)->Arg(16)->Arg(64)->Arg(256)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
