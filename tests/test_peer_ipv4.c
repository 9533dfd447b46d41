/* peer_ipv4: see peer_inet.h. */
#define PEER_V6 0
#include "peer_inet.h"
