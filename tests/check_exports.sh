#!/bin/sh
# check_exports.sh LIB: the shared library exports exactly libevent's nine
# evconnlistener_* functions and evuring's extension API, nothing internal;
# and epoll_wait, epoll_pwait, epoll_pwait2, one of which libevent's loop calls
# (where it sleeps, uring/wait.c).
lib=$1
got=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sort)
want=$(printf '%s\n' evconnlistener_new evconnlistener_new_bind evconnlistener_free \
  evconnlistener_enable evconnlistener_disable evconnlistener_get_base \
  evconnlistener_get_fd evconnlistener_set_cb evconnlistener_set_error_cb \
  evuring_backend_name evuring_base_sleeps_in_ring evuring_listener_backend evuring_listener_get_stats \
  evuring_set_backend evuring_uring_available evuring_version \
  epoll_wait epoll_pwait epoll_pwait2 | sort)
if [ "$got" != "$want" ]; then
  echo "exported symbols differ from the public API:"
  diff -u /dev/fd/3 /dev/fd/4 3<<EOF3 4<<EOF4
$want
EOF3
$got
EOF4
  exit 1
fi
echo "exports: $(echo "$got" | wc -l) symbols, exactly the public API"
readelf -d "$lib" | grep -q 'SONAME.*libevuring\.so\.0' || { echo "SONAME is not libevuring.so.0"; exit 1; }
if readelf -d "$lib" | grep NEEDED | grep -q libevent; then
  echo "libevuring.so must not record a dependency on libevent"; exit 1
fi
echo "SONAME libevuring.so.0, no DT_NEEDED on libevent"
