/* peer_ipv6: see peer_inet.h (::1; skips if IPv6 loopback is unusable). */
#define PEER_V6 1
#include "peer_inet.h"
