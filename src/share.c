/*
 * Who else accepts from a listener's socket. Several loops on one listening
 * socket (threads, prefork children) are served as libevent serves them:
 * every loop is woken by the socket and whichever is free takes the
 * connection. io_uring's accept cannot do that (a connection wakes one armed
 * accept, which runs only when its own loop enters its ring), so the io_uring
 * backend uses multishot accept only where its listener is the socket's sole
 * accepter, and needs to know:
 * - this process's listeners per socket, exactly (the registry below);
 * - whether the socket may be accepted from in another process: a listener
 *   made in a forked process on a socket it was handed may be a prefork
 *   child's (evu_share_handed_after_fork).
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evu-internal.h"

struct evu_share {
	dev_t dev;
	ino_t ino;
	int users;               /* listeners of this process on it (atomic) */
	struct evu_share *next;
};

static pthread_mutex_t evu_share_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t evu_share_once = PTHREAD_ONCE_INIT;
static struct evu_share *evu_shares;
static pid_t evu_load_pid;
static unsigned evu_share_gen; /* atomic: bumped when a socket gains a listener */

/* The pid that loaded the library: a process with another one was forked
 * since, from a process that had evuring. */
__attribute__((constructor)) static void evu_share_note_pid(void)
{
	evu_load_pid = getpid();
}

/* A child must not wait for a lock a thread of its parent held at fork. */
static void evu_share_atfork_child(void)
{
	pthread_mutex_init(&evu_share_mu, NULL);
}

static void evu_share_init(void)
{
	pthread_atfork(NULL, NULL, evu_share_atfork_child);
}

int evu_share_join(struct evconnlistener *lev)
{
	struct stat st;
	struct evu_share *s;

	if (fstat(lev->fd, &st) < 0)
		return -errno;
	pthread_once(&evu_share_once, evu_share_init);
	pthread_mutex_lock(&evu_share_mu);
	for (s = evu_shares; s; s = s->next)
		if (s->dev == st.st_dev && s->ino == st.st_ino)
			break;
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s) {
			pthread_mutex_unlock(&evu_share_mu);
			return -ENOMEM;
		}
		s->dev = st.st_dev;
		s->ino = st.st_ino;
		s->next = evu_shares;
		evu_shares = s;
	}
	if (__atomic_add_fetch(&s->users, 1, __ATOMIC_RELEASE) > 1)
		__atomic_add_fetch(&evu_share_gen, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&evu_share_mu);
	lev->share = s;
	return 0;
}

void evu_share_leave(struct evconnlistener *lev)
{
	struct evu_share *s = lev->share;

	if (!s)
		return;
	lev->share = NULL;
	pthread_mutex_lock(&evu_share_mu);
	if (__atomic_sub_fetch(&s->users, 1, __ATOMIC_RELEASE) == 0) {
		for (struct evu_share **pp = &evu_shares; *pp; pp = &(*pp)->next) {
			if (*pp == s) {
				*pp = s->next;
				break;
			}
		}
		free(s);
	}
	pthread_mutex_unlock(&evu_share_mu);
}

bool evu_share_alone(const struct evconnlistener *lev)
{
	return !lev->share || __atomic_load_n(&lev->share->users, __ATOMIC_ACQUIRE) <= 1;
}

unsigned evu_share_generation(void)
{
	return __atomic_load_n(&evu_share_gen, __ATOMIC_ACQUIRE);
}

bool evu_share_handed_after_fork(const struct evconnlistener *lev)
{
	return !lev->own_socket && evu_load_pid && getpid() != evu_load_pid;
}
