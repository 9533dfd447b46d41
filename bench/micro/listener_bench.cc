// Listener micro-benchmarks against <event2/listener.h>: create/free,
// enable/disable, and one connection end to end through the listener.
//
// Built twice from this source: linked with libevent only
// (micro-listener-libevent) and with evuring ahead of libevent
// (micro-listener-evuring; EVURING_BACKEND=uring|event picks its backend).
// Each benchmark's label says which implementation and backend ran.
//
// SPDX-License-Identifier: BSD-3-Clause
#include <benchmark/benchmark.h>

#include <dlfcn.h>
#include <string>

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

void on_accept_close(evconnlistener *, evutil_socket_t fd, sockaddr *, int, void *arg)
{
	close(fd);
	++*static_cast<long *>(arg);
}

// evconnlistener_new_bind + evconnlistener_free (socket, bind, listen, arm,
// cancel, close), with one nonblocking loop pass so deferred teardown work
// (evuring reaps its cancelled request from the ring) is counted too.
void BM_ListenerNewBindFree(benchmark::State &state)
{
	event_base *base = event_base_new();
	sockaddr_in sin = micro::loopback(0);
	long n = 0;
	std::string label;
	for (auto _ : state) {
		evconnlistener *lev = evconnlistener_new_bind(
			base, on_accept_close, &n, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128,
			reinterpret_cast<sockaddr *>(&sin), sizeof(sin));
		if (!lev) {
			state.SkipWithError("evconnlistener_new_bind failed");
			break;
		}
		if (label.empty())
			label = implementation(lev);
		evconnlistener_free(lev);
		event_base_loop(base, EVLOOP_NONBLOCK);
	}
	state.SetLabel(label);
	state.SetItemsProcessed(state.iterations());
	event_base_free(base);
}
BENCHMARK(BM_ListenerNewBindFree);

// evconnlistener_new + evconnlistener_free on an existing listening socket
// (the listener object, arm and cancel only).
void BM_ListenerNewFree(benchmark::State &state)
{
	event_base *base = event_base_new();
	int fd = micro::listen_socket(true, nullptr);
	long n = 0;
	std::string label;
	for (auto _ : state) {
		evconnlistener *lev = evconnlistener_new(base, on_accept_close, &n, 0, -1, fd);
		if (!lev) {
			state.SkipWithError("evconnlistener_new failed");
			break;
		}
		if (label.empty())
			label = implementation(lev);
		evconnlistener_free(lev);
		event_base_loop(base, EVLOOP_NONBLOCK);
	}
	state.SetLabel(label);
	state.SetItemsProcessed(state.iterations());
	close(fd);
	event_base_free(base);
}
BENCHMARK(BM_ListenerNewFree);

// evconnlistener_disable + evconnlistener_enable on a live listener, with one
// nonblocking loop pass.
void BM_ListenerDisableEnable(benchmark::State &state)
{
	event_base *base = event_base_new();
	int fd = micro::listen_socket(true, nullptr);
	long n = 0;
	evconnlistener *lev = evconnlistener_new(base, on_accept_close, &n, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (!lev) {
		state.SkipWithError("evconnlistener_new failed");
		event_base_free(base);
		return;
	}
	for (auto _ : state) {
		evconnlistener_disable(lev);
		evconnlistener_enable(lev);
		event_base_loop(base, EVLOOP_NONBLOCK);
	}
	state.SetLabel(implementation(lev));
	state.SetItemsProcessed(state.iterations());
	evconnlistener_free(lev);
	event_base_free(base);
}
BENCHMARK(BM_ListenerDisableEnable);

// One connection end to end in one thread: connect (loopback handshake), run
// the loop until the listener's callback has accepted and closed it, close the
// client. Client and kernel work included: compare implementations, not
// absolute numbers with the accept-storm harness.
void BM_AcceptOne(benchmark::State &state)
{
	event_base *base = event_base_new();
	int port = 0;
	int fd = micro::listen_socket(true, &port);
	long accepted = 0;
	evconnlistener *lev = evconnlistener_new(base, on_accept_close, &accepted, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (!lev) {
		state.SkipWithError("evconnlistener_new failed");
		event_base_free(base);
		return;
	}
	for (auto _ : state) {
		long before = accepted;
		int c = micro::connect_to(port);
		while (accepted == before)
			event_base_loop(base, EVLOOP_ONCE);
		close(c);
	}
	state.SetLabel(implementation(lev));
	state.SetItemsProcessed(accepted);
	state.counters["conn_per_s"] = benchmark::Counter(static_cast<double>(accepted),
							   benchmark::Counter::kIsRate);
	evconnlistener_free(lev);
	event_base_free(base);
}
BENCHMARK(BM_AcceptOne)->MeasureProcessCPUTime()->UseRealTime();

} // namespace

BENCHMARK_MAIN();
