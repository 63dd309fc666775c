/*
 * loopback-bind.c -- LD_PRELOAD shim that forces wildcard binds onto loopback.
 *
 * Orthanc 1.10 (Debian bookworm) has no option for the HTTP/DICOM bind address:
 * CivetWeb is given only the port number and listens on 0.0.0.0.  Loaded with
 * LD_PRELOAD, this shim rewrites bind(0.0.0.0:p) -> bind(127.0.0.1:p) and
 * bind([::]:p) -> bind([::1]:p), so the server is reachable from loopback only.
 *
 * Built on demand by tests/support/procs.py (compile_shim):
 *   gcc -shared -fPIC -O2 -o loopback-bind.so loopback-bind.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    static bind_fn real_bind = 0;
    if (!real_bind)
        real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");

    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;
        memcpy(&a, addr, sizeof a);
        if (a.sin_addr.s_addr == htonl(INADDR_ANY)) {
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
        }
    } else if (addr && addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a;
        memcpy(&a, addr, sizeof a);
        if (memcmp(&a.sin6_addr, &in6addr_any, sizeof(struct in6_addr)) == 0) {
            a.sin6_addr = in6addr_loopback;
            return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
        }
    }
    return real_bind(fd, addr, len);
}
